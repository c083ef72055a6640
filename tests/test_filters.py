"""Metadata filters run inside the search as SQL: logical operators, $exists/$contains/$like, keys with
any characters, and a clear FilterError for every malformed filter."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from m2v_search.errors import M2VSearchError
from m2v_search.index import VectorIndex
from m2v_search.index.filters import FilterError, filter_to_sql

METADATA = [
    {"topic": "bio", "year": 2001, "tags": ["a", "b"], "café": 1, 'say "hi"': "x", "n": None},
    {"topic": "geo", "year": 1999, "tags": ["b"], "日本": True, "a\\b": 2},
    {"topic": "bio", "year": 2020, "tags": [], "café": 2, "title": "The Violin"},
    {"topic": "cs", "year": 2010, "tags": ["c", 3], 'say "hi"': "y", "title": "binary search"},
    {"year": 2015, "flag": False},
]


@pytest.fixture(scope="module")
def index() -> VectorIndex:
    vectors = np.random.default_rng(0).standard_normal((len(METADATA), 8)).astype(np.float32)
    index = VectorIndex.create(dim=8, index_kind="flat")
    index.add_texts([f"text {i}" for i in range(len(METADATA))], ids=[f"d{i}" for i in range(len(METADATA))],
                    metadatas=METADATA, vectors=vectors)
    return index


def matches(index: VectorIndex, filter: dict) -> list[int]:
    found = [int(doc_id[1:]) for doc_id in index.ids(filter)]
    # the same filter inside a vector search selects the same documents
    query = np.ones(8, dtype=np.float32)
    assert sorted(int(h.id[1:]) for h in index.search(query, k=10, filter=filter)) == found
    return found


@pytest.mark.parametrize(("filter", "expected"), [
    ({"café": 1}, [0]),
    ({"café": {"$gte": 1}}, [0, 2]),
    ({'say "hi"': "y"}, [3]),
    ({'say "hi"': {"$exists": True}}, [0, 3]),
    ({"日本": True}, [1]),
    ({"a\\b": 2}, [1]),
    ({"$and": [{"topic": "bio"}, {"year": {"$gt": 2010}}]}, [2]),
    ({"$or": [{"topic": "geo"}, {"year": {"$gte": 2015}}]}, [1, 2, 4]),
    ({"$not": {"topic": "bio"}}, [1, 3, 4]),
    ({"$not": {"year": {"$gt": 2005}}}, [0, 1]),
    ({"$not": {"title": {"$like": "%violin%"}}}, [0, 1, 3, 4]),
    ({"$or": [{"$and": [{"topic": "bio"}, {"tags": {"$contains": "a"}}]}, {"flag": False}]}, [0, 4]),
    ({"topic": {"$exists": False}}, [4]),
    ({"n": {"$exists": True}}, [0]),
    ({"n": None}, [0]),
    ({"tags": {"$contains": "b"}}, [0, 1]),
    ({"tags": {"$contains": 3}}, [3]),
    ({"topic": {"$contains": "io"}}, [0, 2]),  # a substring of a string value
    ({"title": {"$contains": "Violin"}}, [2]),
    ({"title": {"$contains": "violin"}}, []),  # case-sensitive
    ({"year": {"$contains": 2001}}, []),  # a number is neither a list nor a string
    ({"title": {"$like": "%search"}}, [3]),
    ({"title": {"$like": "the%"}}, [2]),
    ({"year": {"$gt": 2000, "$lt": 2015}}, [0, 3]),
    ({"topic": {"$nin": ["bio", "geo"]}}, [3, 4]),
    ({"topic": ["geo", "cs"]}, [1, 3]),
    # numpy scalars compare as their Python values (np.int64 was refused while np.float64 worked)
    ({"year": {"$gt": np.int64(2000), "$lt": np.float64(2015)}}, [0, 3]),
    ({"flag": np.bool_(False)}, [4]),
])
def test_filter_selects_documents(index: VectorIndex, filter: dict, expected: list[int]) -> None:
    assert matches(index, filter) == expected


@pytest.mark.parametrize(("filter", "message"), [
    ({"year": {"$regex": "a"}}, r"filter\['year'\]\['\$regex'\]: unknown filter operator"),
    ({"year": {"$in": 2001}}, r"filter\['year'\]\['\$in'\] needs a list"),
    ({"year": {"$nin": "ab"}}, r"\$nin'\] needs a list"),
    ({"": 1}, "keys must be non-empty"),
    ({"year": 2**63}, "outside the 64-bit range"),
    ({"year": {"$gt": -(2**64)}}, "outside the 64-bit range"),
    ({"year": math.nan}, "not a finite number"),
    ({"year": {"$lt": math.inf}}, "not a finite number"),
    ({"year": [1, -math.inf]}, r"filter\['year'\]\[1\]: -inf is not a finite number"),
    ({"$and": {"year": 1}}, r"filter\['\$and'\] needs a non-empty list"),
    ({"$or": []}, "needs a non-empty list"),
    ({"$and": [{"year": 1}, "x"]}, r"filter\['\$and'\]\[1\] must be a dict"),
    ({"$not": [{"year": 1}]}, r"filter\['\$not'\] must be a dict"),
    ({"$eq": 1}, "is not a logical operator"),
    ({"year": {"$and": [1]}}, "logical operators go at the top"),
    ({"year": {"$gt": 1, "b": 2}}, "mixes operators with the key 'b'"),
    ({"year": {}}, "empty condition"),
    ({"$not": {}}, "empty filter"),
    ({"year": {"$exists": 1}}, "needs true or false"),
    ({"tags": {"$contains": None}}, "got null"),
    ({"title": {"$like": 3}}, "needs a LIKE pattern"),
    ({"year": {"$gt": None}}, "cannot compare with null"),
    ({"year": {"$eq": {"a": 1}}}, "must be a string, number, bool or null"),
])
def test_malformed_filters_raise_filter_error(index: VectorIndex, filter: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message) as caught:
        index.search(np.ones(8, dtype=np.float32), k=2, filter=filter)
    assert isinstance(caught.value, M2VSearchError) and isinstance(caught.value, ValueError)
    with pytest.raises(FilterError, match=message):
        index.ids(filter)


def test_a_filter_must_be_a_dict() -> None:
    with pytest.raises(FilterError, match="must be a dict"):
        filter_to_sql(["year"])  # type: ignore[arg-type]
    assert filter_to_sql(None) == ("1", []) and filter_to_sql({}) == ("1", [])


# ---------------------------------------------------------------------- against a Python reference
_MISSING = object()


def reference(filter: dict, meta: dict) -> bool:
    """The documented semantics, evaluated in Python."""
    return all(_entry(key, condition, meta) for key, condition in filter.items())


def _entry(key: str, condition, meta: dict) -> bool:
    if key == "$and":
        return all(reference(f, meta) for f in condition)
    if key == "$or":
        return any(reference(f, meta) for f in condition)
    if key == "$not":
        return not reference(condition, meta)
    value = meta.get(key, _MISSING)
    if isinstance(condition, dict):
        return all(_op(op, operand, value) for op, operand in condition.items())
    if isinstance(condition, list):
        return _op("$in", condition, value)
    return _op("$eq", condition, value)


def _op(op: str, operand, value) -> bool:
    if op == "$exists":
        return (value is not _MISSING) == operand
    if op == "$contains":
        if isinstance(value, str) and isinstance(operand, str):
            return operand in value
        return isinstance(value, list) and operand in value
    if op == "$in":
        return value is not _MISSING and not isinstance(value, list) and value in operand
    if op == "$nin":
        return value is _MISSING or not _op("$in", operand, value)
    if op == "$ne":
        return value is _MISSING or value != operand
    if value is _MISSING or isinstance(value, list):
        return False
    if op == "$eq":
        return value == operand
    if value is None or isinstance(value, str) != isinstance(operand, str):
        return False  # SQLite orders numbers before text; the generator avoids mixing them
    return {"$gt": value > operand, "$gte": value >= operand, "$lt": value < operand,
            "$lte": value <= operand}[op]


def _random_condition(rng: random.Random) -> dict:
    key = rng.choice(["x", "é y", 'q"k'])
    op = rng.choice(["$eq", "$ne", "$gt", "$lte", "$in", "$nin", "$exists", "$contains", None])
    number = rng.randint(0, 4)
    if op is None:
        return {key: number}
    if op in ("$in", "$nin"):
        return {key: {op: rng.sample(range(5), 2)}}
    if op == "$exists":
        return {key: {op: rng.random() < 0.5}}
    return {key: {op: number}}


def _random_filter(rng: random.Random, depth: int = 0) -> dict:
    if depth >= 2 or rng.random() < 0.4:
        return _random_condition(rng)
    logical = rng.choice(["$and", "$or", "$not"])
    if logical == "$not":
        return {"$not": _random_filter(rng, depth + 1)}
    return {logical: [_random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}


def test_random_filters_agree_with_the_reference() -> None:
    rng = random.Random(5)
    metadata = []
    for _ in range(60):
        meta = {}
        for key in ["x", "é y", 'q"k']:
            roll = rng.random()
            if roll < 0.5:
                meta[key] = rng.randint(0, 4)
            elif roll < 0.7:
                meta[key] = [rng.randint(0, 4) for _ in range(rng.randint(0, 3))]
            elif roll < 0.8:
                meta[key] = None
        metadata.append(meta)
    index = VectorIndex.create(dim=4, index_kind="flat")
    index.add_texts(["t"] * len(metadata), ids=[str(i) for i in range(len(metadata))], metadatas=metadata,
                    vectors=np.ones((len(metadata), 4), dtype=np.float32))
    for _ in range(300):
        filter = _random_filter(rng)
        expected = [str(i) for i, meta in enumerate(metadata) if reference(filter, meta)]
        assert index.ids(filter) == expected, filter


def test_eq_and_ne_an_empty_list() -> None:
    """``{"$eq": []}`` matches a value that is an empty list (LlamaIndex's IS_EMPTY counts one);
    ``{"$ne": []}`` every other document, those without the key included."""
    metadata = [{"tags": [], "my tags": []}, {"tags": ["a"], "my tags": [1]}, {}, {"tags": "", "my tags": ""},
                {"tags": None}, {"tags": {}}]
    index = VectorIndex.create(dim=4, index_kind="flat")
    index.add_texts([f"t{i}" for i in range(len(metadata))], ids=[f"d{i}" for i in range(len(metadata))],
                    metadatas=metadata, vectors=np.eye(len(metadata), 4, dtype=np.float32) + 0.1)
    assert index.ids({"tags": {"$eq": []}}) == ["d0"]
    assert index.ids({"tags": {"$ne": []}}) == ["d1", "d2", "d3", "d4", "d5"]
    assert index.ids({"my tags": {"$eq": []}}) == ["d0"]  # a key SQLite's JSON path cannot name plainly
