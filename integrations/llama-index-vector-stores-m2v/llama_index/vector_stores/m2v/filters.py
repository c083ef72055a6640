"""LlamaIndex ``MetadataFilters`` -> an m2v-search filter dict (run as SQL inside the search).

The meaning is the one of LlamaIndex's own ``build_metadata_filter_fn``: AND, OR and NOT (none
of the filters match) conditions, nested to any depth; a missing or null value matches only
NE and NIN. Operators: EQ, NE, GT, GTE, LT, LTE, IN, NIN, CONTAINS (a list holding the value,
or a string holding it as a substring), TEXT_MATCH (case-sensitive substring),
TEXT_MATCH_INSENSITIVE (substring, case folded for ASCII letters only), ANY and ALL (a list
holding any / all of the values; ANY of [] matches nothing, ALL of [] every present value), IS_EMPTY (missing, null, "" or an empty list; its value is
ignored). A value of None is refused for every other operator. The two TEXT_MATCH operators match
text values only: where LlamaIndex raises TypeError on a node whose value is a list or a number,
that node does not match here (a search cannot fail on one node's metadata).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

_COMPARISONS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.CONTAINS: "$contains",
}
_LIST_OPERATORS = (FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY, FilterOperator.ALL)


def metadata_filters_to_dict(filters: Optional[MetadataFilters]) -> Optional[Dict[str, Any]]:
    """Translate LlamaIndex ``MetadataFilters`` into an ``m2v_search`` filter dict.

    Args:
        filters: the filters (None or no filters: no restriction).

    Returns:
        The filter dict, or None for no restriction.

    Raises:
        ValueError: an operator without a translation, or a value of the wrong shape (the message
            names the filter's position, e.g. ``filters[1][0]``).
    """
    if filters is None or not filters.filters:
        return None
    return _group(filters, "filters")


def to_filter_dict(filters: Any) -> Optional[Dict[str, Any]]:
    """The store's filter hook: LlamaIndex ``MetadataFilters``, or a filter dict made by the store."""
    if filters is None or isinstance(filters, dict):
        return filters or None
    return metadata_filters_to_dict(filters)


def _group(filters: MetadataFilters, where: str) -> Optional[Dict[str, Any]]:
    """One group of filters; None when it holds none (empty nested groups are left out)."""
    parts: List[Dict[str, Any]] = []
    for position, item in enumerate(filters.filters):
        here = f"{where}[{position}]"
        if isinstance(item, MetadataFilters):
            nested = _group(item, here)
            if nested is not None:
                parts.append(nested)
        elif isinstance(item, MetadataFilter):
            parts.append(_one(item, here))
        else:
            raise TypeError(f"{here} is {type(item).__name__}; expected a MetadataFilter or MetadataFilters")
    if not parts:
        return None
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition == FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$or": parts}}
    if len(parts) == 1:
        return parts[0]
    return {"$or" if condition == FilterCondition.OR else "$and": parts}


def _one(item: MetadataFilter, where: str) -> Dict[str, Any]:
    operator = FilterOperator(item.operator)
    key, value = item.key, item.value
    if operator == FilterOperator.IS_EMPTY:  # LlamaIndex ignores its value
        return {"$or": [{key: {"$exists": False}}, {key: None}, {key: ""}, {key: {"$eq": []}}]}
    if value is None:
        raise ValueError(f"{operator.name} filter on key {key!r} ({where}) has no value (None); LlamaIndex "
                         "compares nothing with None (EQ None matches no node, NE None every node): use "
                         "IS_EMPTY for a missing or null value, inside a NOT group for a present one")
    if operator in _LIST_OPERATORS and not isinstance(value, list):
        raise ValueError(f"{operator.name} filter on key {key!r} ({where}) needs a list, "
                         f"got {type(value).__name__}")
    if operator not in _LIST_OPERATORS and isinstance(value, list):
        raise ValueError(f"{operator.name} filter on key {key!r} ({where}) needs a single value, got a list "
                         "(use IN)")
    text_match = (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE)
    if operator in text_match and not isinstance(value, str):
        raise ValueError(f"{operator.name} filter on key {key!r} ({where}) needs a string")
    if operator in _COMPARISONS:
        return {key: {_COMPARISONS[operator]: value}}
    if operator == FilterOperator.TEXT_MATCH:  # a text value holding it; "$contains" alone also takes list items
        return {"$and": [{key: {"$like": "%"}}, {key: {"$contains": value}}]}
    if operator == FilterOperator.TEXT_MATCH_INSENSITIVE:
        pattern = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return {key: {"$like": f"%{pattern}%"}}
    if operator in (FilterOperator.ANY, FilterOperator.ALL):
        word = "$or" if operator == FilterOperator.ANY else "$and"
        if not value:  # as LlamaIndex: any of none is false; all of none holds for every present, non-null value
            missing = [{key: {"$exists": False}}, {key: None}]
            return ({"$and": [{key: {"$exists": False}}, {key: {"$exists": True}}]} if operator == FilterOperator.ANY
                    else {"$not": {"$or": missing}})
        return {word: [{key: {"$contains": v}} for v in value]}
    raise ValueError(f"M2VVectorStore does not support filter operator {operator.name} on key {key!r} "
                     f"({where})")
