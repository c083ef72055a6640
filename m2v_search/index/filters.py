"""Metadata filters -> a SQL WHERE clause over the docstore's JSON metadata column.

A filter is a dict; its entries are ANDed. An entry is either a key condition or a logical one:

- ``{"key": value}`` equality, ``{"key": [v1, v2]}`` membership;
- ``{"key": {"$op": operand, ...}}`` (numbers compare with numbers, strings with strings) with
  ``$eq``, ``$ne`` (also ``[]``: the value is / is not an empty list), ``$gt``, ``$gte``, ``$lt``, ``$lte``,
  ``$in``, ``$nin`` (a list), ``$exists`` (a bool: the key is present, even with a null value),
  ``$contains`` (the value is a list holding the operand, or a string holding the operand as a
  case-sensitive substring) and ``$like`` (the value is a string
  matching an SQL LIKE pattern: ``%`` any run, ``_`` one character, case-insensitive for ASCII);
- ``{"$and": [filter, ...]}``, ``{"$or": [filter, ...]}`` and ``{"$not": filter}``.

A document without the key (or with a null value) matches ``$ne`` and ``$nin`` of any other
value; a missing key also matches ``$exists: False``. Keys are the
top-level metadata labels, compared as exact text (any characters, quotes included, but not a
NUL, where SQLite's JSON functions end text; a metadata key that begins with ``$`` cannot be
filtered on, as that names an operator). Every
mistake raises :class:`FilterError` naming where in the filter it is, and so does a filter
SQLite cannot take or takes too long to compile: logical operators nested more than
``MAX_FILTER_DEPTH`` levels, or more than ``MAX_FILTER_CONDITIONS`` conditions (``$in`` takes
any number of values in one condition).
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import threading
from typing import Any

from m2v_search.index.errors import IndexError_

_COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
FIELD_OPERATORS = frozenset({*_COMPARISONS, "$in", "$nin", "$exists", "$contains", "$like"})
LOGICAL_OPERATORS = frozenset({"$and", "$or", "$not"})
_INT64 = 2**63 - 1
# Keys made only of these characters are written the same, escaped or not, in any JSON text, so a
# JSON path finds them; any other key is looked up by its decoded label through json_each().
_PLAIN_KEY_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}
MAX_FILTER_DEPTH = 32  # $and/$or/$not inside one another; SQLite's parser takes about 48 at worst
MAX_FILTER_CONDITIONS = 1000  # key conditions in one filter; SQLite's planner takes time quadratic in them
MAX_LIKE_PATTERN_BYTES = 50_000  # SQLite's SQLITE_MAX_LIKE_PATTERN_LENGTH
_CACHED_SQL_CHARS = 4096  # compile checks of longer filters are not cached (256 of them could be 100 MB)
_GROUP_SIZE = 16  # conditions ANDed/ORed flat; more are grouped, so SQLite's expression tree stays shallow


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
    where, params = _Translator(column).filter(filter, "filter")
    check = _sqlite_refuses_cached if len(where) <= _CACHED_SQL_CHARS else _sqlite_refuses
    problem = check(where, column, len(params))
    if problem:
        raise FilterError(f"filter: SQLite cannot evaluate a filter this large or this deeply nested ({problem}); "
                          "simplify it (many values of one key fit in one $in list)")
    return where, params


_checker_lock = threading.Lock()
_checker: sqlite3.Connection | None = None


def _sqlite_refuses(where: str, column: str, n_params: int) -> str | None:
    """SQLite's complaint when it compiles ``where`` (None: it compiles). Its parser stack and
    expression depth are limited; a filter within them always compiles, so the SQL text alone
    decides, and the answer for short texts is cached."""
    global _checker
    with _checker_lock:
        if _checker is None:
            _checker = sqlite3.connect(":memory:", check_same_thread=False)
        _checker.execute(f'CREATE TABLE IF NOT EXISTS "docs_{column}" (iid INTEGER PRIMARY KEY, {column} TEXT)')
        try:  # the docstore's query (a subquery in FROM would be flattened, which SQLite limits more)
            _checker.execute(f'EXPLAIN SELECT iid FROM "docs_{column}" WHERE {where} ORDER BY iid', [None] * n_params)
        except sqlite3.OperationalError as error:
            return str(error)
    return None


_sqlite_refuses_cached = functools.lru_cache(maxsize=256)(_sqlite_refuses)


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
        self.conditions = 0

    def filter(self, filter: Any, where: str, depth: int = 0) -> tuple[str, list[Any]]:
        """AND of the entries of one filter dict, ``depth`` logical operators deep."""
        if depth > MAX_FILTER_DEPTH:
            raise FilterError(f"{where}: logical operators are nested more than {MAX_FILTER_DEPTH} levels deep")
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
            _text(key, f"{where} key")
            if key in LOGICAL_OPERATORS:
                sql, extra = self.logical(key, condition, here, depth + 1)
            elif key.startswith("$"):
                raise FilterError(f"{here}: {key!r} is not a logical operator ($and, $or, $not); field "
                                  f"operators go inside a key, as in {{'year': {{{key!r}: ...}}}}")
            else:
                sql, extra = self.field(_Field(self.column, key), condition, here)
            clauses.append(sql)
            params.extend(extra)
        return _join(clauses, "AND"), params

    def logical(self, op: str, operand: Any, where: str, depth: int) -> tuple[str, list[Any]]:
        if op == "$not":
            sql, params = self.filter(operand, where, depth)
            return _negated(sql), params
        if not isinstance(operand, (list, tuple)) or not operand:
            raise FilterError(f"{where} needs a non-empty list of filters, got {operand!r}")
        parts = [self.filter(item, f"{where}[{i}]", depth) for i, item in enumerate(operand)]
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
        self.conditions += 1
        if self.conditions > MAX_FILTER_CONDITIONS:
            raise FilterError(f"{where}: the filter has more than {MAX_FILTER_CONDITIONS} conditions; "
                              "many values of one key fit in one {'$in': [...]} condition")
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
            return _negated(inside), params
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
            _text(operand, where)
            if len(operand.encode("utf-8")) > MAX_LIKE_PATTERN_BYTES:
                raise FilterError(f"{where}: a LIKE pattern of more than {MAX_LIKE_PATTERN_BYTES} bytes is more "
                                  "than SQLite takes")
            return (f"({type_sql} = 'text' AND {value_sql} LIKE ? ESCAPE '\\')",
                    [*type_params, *value_params, operand])
        if op in ("$eq", "$ne") and isinstance(operand, (list, tuple)) and not operand:  # the empty list
            items_sql, items_params = field.items  # json_each, not json_array_length: SQLite may read a
            sql = f"({type_sql} = 'array' AND NOT EXISTS (SELECT 1 FROM {items_sql}))"  # text value first
            params = [*type_params, *items_params]
            return (_negated(sql), params) if op == "$ne" else (sql, params)
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
        return (_negated(sql), params) if op == "$ne" else (sql, params)

    def membership(self, field: _Field, operand: Any, where: str) -> tuple[str, list[Any]]:
        if not isinstance(operand, (list, tuple, set, frozenset)):
            raise FilterError(f"{where} needs a list of values, got {type(operand).__name__} {operand!r}")
        values = [_scalar(v, f"{where}[{i}]") for i, v in enumerate(operand)]
        non_null = [v for v in values if v is not None]
        value_sql, value_params = field.value
        type_sql, type_params = field.type
        parts: list[str] = []
        params: list[Any] = []
        if non_null:  # one JSON array parameter, however many values (SQLite binds 32,766 at most)
            parts.append(f"({type_sql} NOT IN ('array', 'object') AND "
                         f"{value_sql} IN (SELECT value FROM json_each(?)))")
            params.extend([*type_params, *value_params, json.dumps(non_null, ensure_ascii=False)])
        if len(non_null) != len(values):
            parts.append(f"{type_sql} = 'null'")
            params.extend(type_params)
        return (f"({' OR '.join(parts)})" if parts else "0"), params


def _negated(condition: str) -> str:
    """True where ``condition`` is false or NULL (a missing key): SQL's own NOT keeps NULL."""
    return f"({condition}) IS NOT 1"


def _join(clauses: list[str], word: str) -> str:
    """``clauses`` joined by AND or OR, in one parenthesized group.

    Every clause binds tighter than AND and OR (a comparison, IS, EXISTS or a parenthesized
    group), so only the group needs parentheses: SQLite's parser stack is small. A chain of n
    clauses is n levels deep in SQLite's expression tree (at most 1000), so long ones are
    grouped by ``_GROUP_SIZE``, which keeps the depth logarithmic.
    """
    if len(clauses) == 1:
        return clauses[0]
    while len(clauses) > _GROUP_SIZE:
        clauses = [_join(clauses[start:start + _GROUP_SIZE], word) for start in range(0, len(clauses), _GROUP_SIZE)]
    return "(" + f" {word} ".join(clauses) + ")"


def _text(value: str, where: str) -> str:
    """``value`` (a key, a string operand) if SQLite can compare it with stored metadata."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise FilterError(f"{where}: {value[:40]!r} is not valid Unicode (a lone surrogate at character "
                          f"{error.start})") from None
    if "\x00" in value:
        raise FilterError(f"{where}: {value[:40]!r} holds a NUL character; SQLite's JSON functions end text "
                          "there, so no metadata could match it")
    return value


def _scalar(value: Any, where: str) -> Any:
    """A value SQLite can compare with JSON metadata: str, int (bools as 0/1), finite float or None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not -_INT64 - 1 <= value <= _INT64:
            raise FilterError(f"{where}: the integer {value} is outside the 64-bit range metadata can hold")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{where}: {value!r} is not a finite number")
        return value
    if isinstance(value, str):
        return _text(value, where)
    if value is None:
        return value
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():  # np.int64(3), np.bool_(True)
        return _scalar(value.item(), where)  # as np.float64, a float subclass, always was
    raise FilterError(f"{where} must be a string, number, bool or null, got {type(value).__name__}")
