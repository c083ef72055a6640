"""Metadata filters -> a SQL WHERE clause over the docstore's JSON metadata column.

A filter is a dict; its entries are ANDed. An entry is either a key condition or a logical one:

- ``{"key": value}`` equality, ``{"key": [v1, v2]}`` membership;
- ``{"key": {"$op": operand, ...}}`` (numbers compare with numbers, strings with strings) with
  ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``,
  ``$in``, ``$nin`` (a list), ``$exists`` (a bool: the key is present, even with a null value),
  ``$contains`` (the value is a list holding the operand, or a string holding the operand as a
  case-sensitive substring) and ``$like`` (the value is a string
  matching an SQL LIKE pattern: ``%`` any run, ``_`` one character, case-insensitive for ASCII);
- ``{"$and": [filter, ...]}``, ``{"$or": [filter, ...]}`` and ``{"$not": filter}``.

A document without the key (or with a null value) matches ``$ne`` and ``$nin`` of any other
value; a missing key also matches ``$exists: False``. Keys are the
top-level metadata labels, compared as exact text (any characters, quotes included). Every
mistake raises :class:`FilterError` naming where in the filter it is.
"""

from __future__ import annotations

import math
from typing import Any

from m2v_search.index.errors import IndexError_

_COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
FIELD_OPERATORS = frozenset({*_COMPARISONS, "$in", "$nin", "$exists", "$contains", "$like"})
LOGICAL_OPERATORS = frozenset({"$and", "$or", "$not"})
_INT64 = 2**63 - 1
# Keys made only of these characters are written the same, escaped or not, in any JSON text, so a
# JSON path finds them; any other key is looked up by its decoded label through json_each().
_PLAIN_KEY_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


class FilterError(IndexError_, ValueError):
    """A metadata filter is malformed; the message says where in the filter."""


def filter_to_sql(filter: dict[str, Any] | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """Translate a metadata filter into SQL.

    Args:
        filter: the filter (see the module docstring); None or ``{}`` matches everything.
        column: the column holding each document's metadata as JSON text.

    Returns:
        A WHERE clause without ``WHERE`` (``"1"`` for no filter) and its parameters.

    Raises:
        FilterError: the filter is malformed (unknown operator, wrong nesting, bad operand).
    """
    if filter is None:
        return "1", []
    if not isinstance(filter, dict):
        raise FilterError(f"a filter must be a dict such as {{'topic': 'biology'}} or "
                          f"{{'year': {{'$gte': 2000}}}}, got {type(filter).__name__}")
    if not filter:
        return "1", []
    return _Translator(column).filter(filter, "filter")


class _Field:
    """SQL that reads one metadata key of the current row: its value, its JSON type, its array items."""

    def __init__(self, column: str, key: str) -> None:
        if all(c in _PLAIN_KEY_CHARS for c in key):
            path = f'$."{key}"'
            self.value = (f"json_extract({column}, ?)", [path])
            self.type = (f"json_type({column}, ?)", [path])
            self.items = (f"json_each({column}, ?)", [path])
        else:
            lookup = f"FROM json_each({column}) AS field WHERE field.key = ?"
            self.value = (f"(SELECT field.value {lookup})", [key])
            self.type = (f"(SELECT field.type {lookup})", [key])
            self.items = (f"(SELECT item.value AS value FROM json_each({column}) AS field, "
                          "json_each(field.value) AS item WHERE field.key = ? AND field.type = 'array')",
                          [key])


class _Translator:
    def __init__(self, column: str) -> None:
        self.column = column

    def filter(self, filter: Any, where: str) -> tuple[str, list[Any]]:
        """AND of the entries of one filter dict."""
        if not isinstance(filter, dict):
            raise FilterError(f"{where} must be a dict (a filter), got {type(filter).__name__}")
        if not filter:
            raise FilterError(f"{where} is an empty filter; leave it out instead")
        clauses: list[str] = []
        params: list[Any] = []
        for key, condition in filter.items():
            here = f"{where}[{key!r}]"
            if not isinstance(key, str) or not key:
                raise FilterError(f"{where} has the key {key!r}; keys must be non-empty strings")
            if key in LOGICAL_OPERATORS:
                sql, extra = self.logical(key, condition, here)
            elif key.startswith("$"):
                raise FilterError(f"{here}: {key!r} is not a logical operator ($and, $or, $not); field "
                                  f"operators go inside a key, as in {{'year': {{{key!r}: ...}}}}")
            else:
                sql, extra = self.field(_Field(self.column, key), condition, here)
            clauses.append(sql)
            params.extend(extra)
        return _join(clauses, "AND"), params

    def logical(self, op: str, operand: Any, where: str) -> tuple[str, list[Any]]:
        if op == "$not":
            sql, params = self.filter(operand, where)
            return f"NOT COALESCE({sql}, 0)", params
        if not isinstance(operand, (list, tuple)) or not operand:
            raise FilterError(f"{where} needs a non-empty list of filters, got {operand!r}")
        parts = [self.filter(item, f"{where}[{i}]") for i, item in enumerate(operand)]
        return _join([sql for sql, _ in parts], op[1:].upper()), [p for _, extra in parts for p in extra]

    def field(self, field: _Field, condition: Any, where: str) -> tuple[str, list[Any]]:
        if isinstance(condition, dict):
            if not condition:
                raise FilterError(f"{where} is an empty condition; use a value or {{'$op': value}}")
            plain = [op for op in condition if not (isinstance(op, str) and op.startswith("$"))]
            if plain:
                raise FilterError(f"{where} mixes operators with the key {plain[0]!r}: metadata values are "
                                  "compared as a whole, write {'$op': value} conditions only")
            parts = [self.operator(field, op, operand, f"{where}[{op!r}]")
                     for op, operand in condition.items()]
            return _join([sql for sql, _ in parts], "AND"), [p for _, extra in parts for p in extra]
        if isinstance(condition, (list, tuple, set, frozenset)):
            return self.operator(field, "$in", list(condition), where)
        return self.operator(field, "$eq", condition, where)

    def operator(self, field: _Field, op: str, operand: Any, where: str) -> tuple[str, list[Any]]:
        if op not in FIELD_OPERATORS:
            hint = " (logical operators go at the top of a filter)" if op in LOGICAL_OPERATORS else ""
            raise FilterError(f"{where}: unknown filter operator {op!r}{hint}; use one of "
                              f"{sorted(FIELD_OPERATORS)}")
        value_sql, value_params = field.value
        type_sql, type_params = field.type
        if op in ("$in", "$nin"):
            inside, params = self.membership(field, operand, where)
            if op == "$in":
                return inside, params
            return f"NOT COALESCE({inside}, 0)", params
        if op == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(f"{where} needs true or false, got {operand!r}")
            return f"{type_sql} IS {'NOT ' if operand else ''}NULL", list(type_params)
        if op == "$contains":
            value = _scalar(operand, where)
            if value is None:
                raise FilterError(f"{where} needs a string, number or bool, got null")
            items_sql, items_params = field.items
            sql = f"({type_sql} = 'array' AND EXISTS (SELECT 1 FROM {items_sql} WHERE value = ?))"
            params = [*type_params, *items_params, value]
            if isinstance(value, str):  # a text value contains a substring (case-sensitive)
                sql = f"({sql} OR ({type_sql} = 'text' AND instr({value_sql}, ?) > 0))"
                params += [*type_params, *value_params, value]
            return sql, params
        if op == "$like":
            if not isinstance(operand, str):
                raise FilterError(f"{where} needs a LIKE pattern string, got {type(operand).__name__}")
            return (f"({type_sql} = 'text' AND {value_sql} LIKE ? ESCAPE '\\')",
                    [*type_params, *value_params, operand])
        value = _scalar(operand, where)
        if value is None:
            if op == "$eq":
                return f"{type_sql} = 'null'", list(type_params)
            if op == "$ne":
                return f"({type_sql} IS NOT 'null' OR {type_sql} IS NULL)", [*type_params, *type_params]
            raise FilterError(f"{where} cannot compare with null")
        # Compare like with like: numbers (and bools) with numbers, strings with strings, never lists.
        kinds = "('text')" if isinstance(value, str) else "('integer', 'real', 'true', 'false')"
        compare = _COMPARISONS["$eq" if op == "$ne" else op]
        sql = f"({type_sql} IN {kinds} AND {value_sql} {compare} ?)"
        params = [*type_params, *value_params, value]
        return (f"NOT COALESCE({sql}, 0)", params) if op == "$ne" else (sql, params)

    def membership(self, field: _Field, operand: Any, where: str) -> tuple[str, list[Any]]:
        if not isinstance(operand, (list, tuple, set, frozenset)):
            raise FilterError(f"{where} needs a list of values, got {type(operand).__name__} {operand!r}")
        values = [_scalar(v, f"{where}[{i}]") for i, v in enumerate(operand)]
        non_null = [v for v in values if v is not None]
        value_sql, value_params = field.value
        type_sql, type_params = field.type
        parts: list[str] = []
        params: list[Any] = []
        if non_null:
            marks = ", ".join("?" * len(non_null))
            parts.append(f"({type_sql} NOT IN ('array', 'object') AND {value_sql} IN ({marks}))")
            params.extend([*type_params, *value_params, *non_null])
        if len(non_null) != len(values):
            parts.append(f"{type_sql} = 'null'")
            params.extend(type_params)
        return (f"({' OR '.join(parts)})" if parts else "0"), params


def _join(clauses: list[str], word: str) -> str:
    return clauses[0] if len(clauses) == 1 else "(" + f" {word} ".join(f"({c})" for c in clauses) + ")"


def _scalar(value: Any, where: str) -> Any:
    """A value SQLite can compare with JSON metadata: str, int (bools as 0/1), finite float or None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if abs(value) > _INT64:
            raise FilterError(f"{where}: the integer {value} is outside the 64-bit range metadata can hold")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{where}: {value!r} is not a finite number")
        return value
    if value is None or isinstance(value, str):
        return value
    raise FilterError(f"{where} must be a string, number, bool or null, got {type(value).__name__}")
