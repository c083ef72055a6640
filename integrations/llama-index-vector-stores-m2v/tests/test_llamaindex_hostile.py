"""Careless and hostile use of the LlamaIndex store: a tampered persisted folder is refused with
IndexCorruptError, a node id given twice in one add keeps its last node, nesting and filters beyond the
limits get clear errors, and a URL persist path without fs goes to its own filesystem."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery
from llama_index.vector_stores.m2v import M2VVectorStore
from m2v_search.index import IndexCorruptError
from m2v_search.index.filters import FilterError


@pytest.fixture
def store(m2v_model) -> M2VVectorStore:
    store = M2VVectorStore(model=m2v_model)
    store.add([TextNode(text="the violin has four strings", id_="a", metadata={"kind": "music"}),
               TextNode(text="bread rises with yeast", id_="b", metadata={"kind": "food"})])
    return store


@pytest.mark.parametrize("tamper", ["data", "manifest"])
def test_a_tampered_persisted_folder_is_index_corrupt(store: M2VVectorStore, tmp_path: Path, tamper: str) -> None:
    folder = tmp_path / "persisted"
    store.persist(str(folder))
    manifest = json.loads((folder / "manifest.json").read_text())
    if tamper == "data":
        target = folder / manifest["docstore"]["file"]
        target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    else:
        manifest["files"] = {"../../etc/passwd": manifest["files"][manifest["index"]["file"]]}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError):
        M2VVectorStore.from_persist_path(str(folder))


def test_a_node_id_given_twice_in_one_add_keeps_its_last_node(store: M2VVectorStore) -> None:
    """As SimpleVectorStore does (this store refused the add before)."""
    from llama_index.core.vector_stores import SimpleVectorStore

    twice = [TextNode(text="one", id_="c", embedding=[1.0] * 256), TextNode(text="two", id_="c", embedding=[0.5] * 256)]
    reference = SimpleVectorStore()
    assert store.add(twice) == reference.add(twice) == ["c", "c"]
    assert reference.get("c") == [0.5] * 256
    assert sorted(node.node_id for node in store.get_nodes()) == ["a", "b", "c"]
    assert store.get_nodes(node_ids=["c"])[0].get_content() == "two"


def test_metadata_nested_too_deeply_is_a_value_error_naming_the_node(store: M2VVectorStore) -> None:
    deep: dict = {"leaf": 1}
    for _ in range(100):
        deep = {"level": deep}
    with pytest.raises(ValueError, match=r"nodes\[0\] \(id 'deep'\) metadata.*nested more than"):
        store.add([TextNode(text="deep", id_="deep", metadata={"outer": deep})])


def test_filters_beyond_the_limits_are_filter_errors(store: M2VVectorStore) -> None:
    nested = MetadataFilters(filters=[MetadataFilter(key="kind", value="music")])
    for _ in range(40):
        nested = MetadataFilters(filters=[nested, MetadataFilter(key="kind", value="food")], condition="or")
    with pytest.raises(FilterError, match="nested more than"):
        store.query(VectorStoreQuery(query_str="violin", similarity_top_k=1, filters=nested))
    many = MetadataFilters(filters=[MetadataFilter(key="kind", value=[f"k{n}" for n in range(300_000)] + ["music"],
                                                   operator="in")])
    assert store.query(VectorStoreQuery(query_str="violin", similarity_top_k=2, filters=many)).ids == ["a"]


def test_persist_to_a_url_without_fs_writes_there(store: M2VVectorStore, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"memory://li-{tmp_path.name}/store"
    store.persist(url)
    assert list(tmp_path.iterdir()) == []
    loaded = M2VVectorStore.from_persist_path(url)
    assert sorted(node.node_id for node in loaded.get_nodes()) == ["a", "b"]
    fsspec.filesystem("memory").rm(f"/li-{tmp_path.name}", recursive=True)


def test_a_bad_filter_fails_on_a_store_with_nothing_yet(m2v_model) -> None:
    empty = M2VVectorStore(model=m2v_model)
    bad = MetadataFilters(filters=[MetadataFilter(key="", value="x")])
    with pytest.raises(FilterError, match="non-empty"):
        empty.query(VectorStoreQuery(query_str="violin", similarity_top_k=1, filters=bad))
    assert M2VVectorStore().query(VectorStoreQuery(query_str="violin", similarity_top_k=1)).ids == []


def test_metadata_llamaindex_cannot_serialise_is_refused_naming_the_key(store: M2VVectorStore) -> None:
    """LlamaIndex cannot serialise a node holding numpy values; the error names the node and key."""
    import numpy as np

    node = TextNode(text="violins", id_="np", metadata={"kind": "music", "year": np.int64(2001)})
    named = r"nodes\[0\] \(id 'np'\) metadata\['year'\] is of type int64 \(a numpy value"
    with pytest.raises(ValueError, match=named):
        store.add([node])
    fine = TextNode(text="violins", id_="plain",
                    metadata={"none": None, "list": [1, "a"], "nested": {"x": [None]}})
    store.add([fine])
    assert store.get_nodes(["plain"])[0].metadata == fine.metadata


def test_metadata_llamaindex_serialises_itself_is_kept(store: M2VVectorStore) -> None:
    """Dates and the like are LlamaIndex's to serialise (as ISO text), as in its other stores."""
    import datetime

    node = TextNode(text="violins", id_="dated", metadata={"when": datetime.date(2020, 1, 2), "tags": {"x"}})
    store.add([node])
    assert store.get_nodes(["dated"])[0].metadata == {"when": "2020-01-02", "tags": ["x"]}


def test_pickling_or_copying_the_store_is_refused_not_emptied(store: M2VVectorStore) -> None:
    """Before: LlamaIndex's pickling dropped the index and gave back an empty store; deepcopy failed on a lock."""
    import copy
    import pickle

    for attempt in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled or copied: save it .*persist"):
            attempt(store)
