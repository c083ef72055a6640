"""Careless and hostile use of the LangChain store: a tampered saved folder is refused with
IndexCorruptError before anything is parsed, an id given twice in one call is refused, and a URL
given to save_local/load_local goes to its own filesystem."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import fsspec
import numpy as np
import pytest
from langchain_core.documents import Document
from m2v_search.index import IndexCorruptError

from langchain_m2v import M2VVectorStore


def _flip_last_byte(folder: Path, manifest: dict) -> None:
    target = folder / manifest["index"]["file"]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))


def _truncate_docstore(folder: Path, manifest: dict) -> None:
    target = folder / manifest["docstore"]["file"]
    target.write_bytes(target.read_bytes()[:100])


def _drop_field(folder: Path, manifest: dict) -> None:
    del manifest["dim"]
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _point_outside(folder: Path, manifest: dict) -> None:
    (folder.parent / "outside.faiss").write_bytes((folder / manifest["index"]["file"]).read_bytes())
    manifest["index"]["file"] = "../outside.faiss"
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _not_json(folder: Path, manifest: dict) -> None:
    (folder / "manifest.json").write_text('{"format": "m2v-search-index", ')


@pytest.mark.parametrize("tamper", [_flip_last_byte, _truncate_docstore, _drop_field, _point_outside, _not_json])
def test_a_tampered_folder_is_index_corrupt(store: M2VVectorStore, tmp_path: Path,
                                            tamper: Callable[[Path, dict], None]) -> None:
    store.add_texts(["the violin has four strings", "bread rises with yeast"], ids=["a", "b"])
    folder = tmp_path / "saved"
    store.save_local(folder)
    tamper(folder, json.loads((folder / "manifest.json").read_text()))
    with pytest.raises(IndexCorruptError):
        M2VVectorStore.load_local(folder, store.embeddings)


def test_a_document_id_given_twice_in_one_call_is_refused(store: M2VVectorStore) -> None:
    before = len(store)
    documents = [Document(page_content="first", id="same"), Document(page_content="second", id="same")]
    with pytest.raises(ValueError, match="both 'same'"):
        store.add_documents(documents)
    assert len(store) == before and store.get_by_ids(["same"]) == []


def test_add_texts_refuses_a_single_string(store: M2VVectorStore) -> None:
    # Before: add_texts("hello") added five one-letter documents (delete("abc") and get_by_ids("abc")
    # already refused a lone str); InMemoryVectorStore splits it too, this project's rule refuses it.
    before = len(store)
    with pytest.raises(TypeError, match=r"texts must be a list of str, got the single str 'hello'; pass \['hello'\]"):
        store.add_texts("hello")
    assert len(store) == before


def test_save_local_to_a_url_writes_there(store: M2VVectorStore, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store.add_texts(["the violin has four strings"], ids=["a"])
    url = f"memory://lc-{tmp_path.name}/store"
    store.save_local(url)
    assert list(tmp_path.iterdir()) == []  # no local folder named "memory:"
    loaded = M2VVectorStore.load_local(url, store.embeddings)
    assert [doc.id for doc in loaded.similarity_search("violin strings", k=1)] == ["a"]
    fsspec.filesystem("memory").rm(f"/lc-{tmp_path.name}", recursive=True)


def test_a_bad_filter_fails_on_an_empty_store(m2v_embeddings) -> None:
    from m2v_search.index.filters import FilterError

    empty = M2VVectorStore(m2v_embeddings)
    for search in (empty.similarity_search, empty.max_marginal_relevance_search):
        with pytest.raises(FilterError, match="regex"):
            search("violin", filter={"topic": {"$regex": "mus.*"}})
        assert search("violin", filter={"topic": "music"}) == []


def test_ids_none_passed_through_keeps_the_documents_own_ids(m2v_embeddings) -> None:
    """A wrapper that forwards ``ids=None`` must not drop Document.id (LangChain's InMemoryVectorStore
    treats None as no ids too)."""
    import asyncio

    store = M2VVectorStore(m2v_embeddings)
    assert store.add_documents([Document(page_content="owls hunt at night", id="owl")], ids=None) == ["owl"]
    added = asyncio.run(store.aadd_documents([Document(page_content="bees make honey", id="bee")], ids=None))
    assert added == ["bee"]
    assert [doc.id for doc in store.get_by_ids(["owl", "bee"])] == ["owl", "bee"]
    again = Document(page_content="owls see in the dark", id="owl")
    assert store.add_documents([again], ids=["other"]) == ["other"]


def test_numpy_metadata_is_stored_as_plain_values(m2v_embeddings) -> None:
    """Metadata read from numpy or pandas (np.int64, np.float32, np.bool_, arrays) is stored as the
    equal JSON value, so filters match it; None, lists and nested dicts stay as given."""
    import numpy as np

    store = M2VVectorStore(m2v_embeddings)
    metadata = {"year": np.int64(2001), "score": np.float32(0.5), "ok": np.bool_(True),
                "tags": np.array([1, 2]), "nested": {"n": np.int32(3), "none": None, "list": ["a", None]}}
    store.add_texts(["the violin has four strings"], metadatas=[metadata], ids=["v"])
    stored = store.get_by_ids(["v"])[0].metadata
    assert stored == {"year": 2001, "score": 0.5, "ok": True, "tags": [1, 2],
                      "nested": {"n": 3, "none": None, "list": ["a", None]}}
    assert type(stored["year"]) is int and type(stored["ok"]) is bool
    found = store.similarity_search("violin", filter={"year": {"$gte": 2000}, "ok": True})
    assert [d.id for d in found] == ["v"]
    assert isinstance(metadata["year"], np.int64)  # the caller's dict is not changed


@pytest.mark.parametrize("value, kind", [(b"raw", "bytes"), ({1, 2}, "set"), (object(), "object"),
                                         (np.float32("nan"), "nan")])
def test_metadata_that_is_not_json_names_its_key(m2v_embeddings, value, kind) -> None:
    store = M2VVectorStore(m2v_embeddings)
    with pytest.raises(ValueError, match=rf"metadatas\[1\]\['bad'\].*{kind}"):
        store.add_texts(["a", "b"], metadatas=[{}, {"bad": value}])
    assert len(store) == 0


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "bogus"])
def test_a_vector_search_refuses_a_mode_it_cannot_run(store: M2VVectorStore, m2v_embeddings, mode: str) -> None:
    """A vector has no text for BM25: asking a vector search for another mode is an error, not a
    dense search in disguise."""
    vector = m2v_embeddings.embed_query("violin strings")
    for search in (store.similarity_search_by_vector, store.similarity_search_with_score_by_vector):
        with pytest.raises(ValueError, match=rf"mode={mode!r}"):
            search(vector, k=1, mode=mode)
    assert len(store.similarity_search_by_vector(vector, k=1, mode="dense")) == 1


def test_mmr_refuses_an_empty_query_and_finds_nothing_for_a_zero_vector():
    """Before: LangChain's maximal_marginal_relevance failed with 'NaN values found' on a zero query
    vector, while similarity_search refused the empty query with its own message. A query with no
    known token now finds nothing in MMR as in similarity_search."""
    store = M2VVectorStore.from_texts(["a cat", "a dog", "an apple pie"])
    with pytest.raises(ValueError, match="is empty"):
        store.max_marginal_relevance_search("", k=2)
    assert store.max_marginal_relevance_search("\u2603\u2603", k=2) == []  # no token the model knows
    assert store.similarity_search("\u2603\u2603", k=2) == []
    assert len(store.max_marginal_relevance_search("cat", k=2)) == 2


def test_pickling_or_copying_the_store_is_refused_clearly() -> None:
    """Before: 'cannot pickle _thread.RLock object'."""
    import copy
    import pickle

    store = M2VVectorStore.from_texts(["The Seine flows through Paris."], ids=["a"])
    for attempt in (pickle.dumps, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled or copied: save it .*save_local"):
            attempt(store)
