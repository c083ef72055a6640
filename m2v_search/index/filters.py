"""Metadata filters -> a SQL WHERE clause over the docstore's JSON metadata column.

``{"key": value}`` equality, ``{"key": [v1, v2]}`` membership, several keys = AND, and
``{"key": {"$eq"|"$ne"|"$in"|"$nin"|"$gt"|"$gte"|"$lt"|"$lte": value}}``. A document without
the key matches ``$ne`` and ``$nin`` only.
"""

from __future__ import annotations

import json
from typing import Any

_COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPERATORS = set(_COMPARISONS) | {"$in", "$nin"}


def filter_to_sql(filter: dict[str, Any] | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """A WHERE clause (without ``WHERE``; ``"1"`` for no filter) and its parameters."""
    if not filter:
        return "1", []
    if not isinstance(filter, dict):
        raise TypeError(f"filter must be a dict, got {type(filter).__name__}")
    clauses: list[str] = []
    params: list[Any] = []
    for key, condition in filter.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"filter keys must be non-empty strings, got {key!r}")
        path = "$." + json.dumps(key)  # quoted JSON path: any key text is safe
        value_sql = f"json_extract({column}, ?)"
        type_sql = f"json_type({column}, ?)"
        if isinstance(condition, dict) and condition and all(str(op).startswith("$") for op in condition):
            for op, operand in condition.items():
                if op not in _OPERATORS:
                    raise ValueError(f"unknown filter operator {op!r} for key {key!r}; use one of "
                                     f"{sorted(_OPERATORS)}")
                clause, extra = _condition(op, operand, value_sql, type_sql, path, key)
                clauses.append(clause)
                params.extend(extra)
        elif isinstance(condition, (list, tuple, set, frozenset)):
            clause, extra = _condition("$in", list(condition), value_sql, type_sql, path, key)
            clauses.append(clause)
            params.extend(extra)
        else:
            clause, extra = _condition("$eq", condition, value_sql, type_sql, path, key)
            clauses.append(clause)
            params.extend(extra)
    return " AND ".join(f"({c})" for c in clauses), params


def _condition(op: str, operand: Any, value_sql: str, type_sql: str, path: str, key: str
               ) -> tuple[str, list[Any]]:
    if op in ("$in", "$nin"):
        if not isinstance(operand, (list, tuple, set, frozenset)):
            raise ValueError(f"{op} for key {key!r} needs a list, got {type(operand).__name__}")
        values = [_scalar(v, key) for v in operand]
        non_null = [v for v in values if v is not None]
        parts = []
        params: list[Any] = []
        if non_null:
            parts.append(f"{value_sql} IN ({', '.join('?' * len(non_null))})")
            params.extend([path, *non_null])
        if len(non_null) != len(values):
            parts.append(f"{type_sql} = 'null'")
            params.append(path)
        inside = " OR ".join(parts) if parts else "0"
        if op == "$in":
            return inside, params
        return f"NOT ({inside}) OR {type_sql} IS NULL", [*params, path]
    value = _scalar(operand, key)
    if value is None:
        if op == "$eq":
            return f"{type_sql} = 'null'", [path]
        if op == "$ne":
            return f"{type_sql} IS NOT 'null' OR {type_sql} IS NULL", [path, path]
        raise ValueError(f"{op} for key {key!r} cannot compare with null")
    sql = _COMPARISONS[op]
    if op == "$ne":
        return f"{value_sql} != ? OR {type_sql} IS NULL", [path, value, path]
    return f"{value_sql} {sql} ?", [path, value]


def _scalar(value: Any, key: str) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return int(value) if isinstance(value, bool) else value
    raise ValueError(f"filter value for key {key!r} must be a string, number, bool or null, "
                     f"got {type(value).__name__}")
