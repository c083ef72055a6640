"""IndexBinding, the core both adapters map their types onto: index creation rules, checks on what
is added, queries, host filter hooks, MMR through a host selection, and fsspec persistence."""

from __future__ import annotations

import warnings
from pathlib import Path

import fsspec
import numpy as np
import pytest

from m2v_search.binding import (
    IndexBinding,
    all_of,
    check_finite_metadata,
    complete_vectors,
    model_source,
    pop_index_kind,
    resolve_model,
)
from m2v_search.index import IndexNotFoundError, ModelMismatchError, NoLexicalPartError, VectorIndex

TEXTS = ["the violin has four strings", "bread rises with yeast", "rivers flow to the sea",
         "a cello is a string"]


def test_created_for_a_model_now(tiny_model) -> None:
    binding = IndexBinding(model=tiny_model, index_kind="hnsw")
    assert binding.index is not None and binding.index.model is tiny_model and binding.index.kind == "hnsw"
    assert binding.embeds_text
    ids = binding.add(TEXTS, ids=["v", None, "r", "c"], metadatas=[{"n": 1}, None, {"n": 3}, {}])
    assert ids[0] == "v" and len(ids[1]) == 32 and ids[2:] == ["r", "c"]
    assert [h.id for h in binding.search("violin strings", k=1)] == ["v"]


def test_created_for_external_vectors_now_or_on_the_first_add() -> None:
    now = IndexBinding(dim=3)
    assert now.index is not None and now.index.external_vectors and not now.embeds_text
    lazy = IndexBinding()
    assert lazy.index is None and len(lazy) == 0 and lazy.search(np.ones(3), k=2) == []
    with pytest.raises(ValueError, match="size of the index is unknown"):
        lazy.require(None)
    lazy.add(["a", "b"], vectors=np.eye(2, 5, dtype=np.float32))
    assert lazy.index is not None and lazy.index.dim == 5
    with pytest.raises(ValueError, match="made for 5-dimensional vectors .* 4-dimensional"):
        lazy.add(["c"], vectors=np.ones((1, 4)))
    with pytest.raises(ValueError, match="cannot embed text"):
        lazy.search("a text query", k=1)


def test_threads_adding_first_share_one_index() -> None:
    from concurrent.futures import ThreadPoolExecutor

    binding = IndexBinding()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: binding.add([f"t{i}"], ids=[f"d{i}"], vectors=np.ones((1, 3))), range(32)))
    assert len(binding) == 32 and sorted(binding.ids()) == sorted(f"d{i}" for i in range(32))


def test_fallback_model_unless_the_first_vectors_have_another_size(tiny_model) -> None:
    same = IndexBinding(fallback_model=tiny_model)
    assert same.embeds_text and same.index is None
    same.add(["a"], vectors=np.ones((1, tiny_model.dim)))
    assert same.index.model is tiny_model
    other = IndexBinding(fallback_model=tiny_model)
    assert other.require(None).model is tiny_model  # made for the model before any vector was seen...
    other.add(["a"], vectors=np.ones((1, tiny_model.dim + 1)))  # ...and remade, still empty, for these
    assert other.index.external_vectors and other.index.dim == tiny_model.dim + 1


def test_index_is_the_one_place_that_normalises(tiny_model) -> None:
    binding = IndexBinding(dim=4)
    raw = np.array([[3.0, 4.0, 0, 0], [0, 0, 10.0, 0]], dtype=np.float32)
    binding.add(["x", "y"], ids=["x", "y"], vectors=raw)
    hit = binding.search(np.array([6.0, 8.0, 0, 0]), k=1, include_vectors=True)[0]
    assert hit.id == "x" and hit.score == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(hit.vector, [0.6, 0.8, 0, 0], atol=1e-6)
    model_binding = IndexBinding(model=tiny_model)
    encoded = model_binding.encode(["bread rises"])
    np.testing.assert_allclose(encoded, tiny_model.encode(["bread rises"], normalize=False), atol=1e-6)


def test_inputs_are_checked_and_named() -> None:
    binding = IndexBinding(dim=2)
    with pytest.raises(ValueError, match="2 texts but 1 ids"):
        binding.add(["a", "b"], ids=["x"])
    with pytest.raises(ValueError, match="2 texts but 3 metadatas"):
        binding.add(["a", "b"], metadatas=[{}, {}, {}])
    with pytest.raises(ValueError, match=r"metadatas\[1\]\['deep'\]\['x'\]\[2\] is nan"):
        binding.add(["a", "b"], metadatas=[{}, {"deep": {"x": [1.0, 2.0, float("nan")]}}],
                    vectors=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"vectors\[1\] holds NaN or infinite values"):
        binding.add(["a", "b"], vectors=np.array([[1.0, 0.0], [np.inf, 1.0]]))
    with pytest.raises(ValueError, match=r"vectors must have shape \(2, dim\)"):
        binding.add(["a", "b"], vectors=np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        binding.search(np.array([np.nan, 1.0]), k=1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        binding.search(np.ones(2), k=0)
    assert len(binding) == 0
    check_finite_metadata({"fine": [1, 2.5, None, "x"]}, "m")


def test_complete_vectors_encodes_only_the_missing_ones(tiny_model) -> None:
    binding = IndexBinding(model=tiny_model)
    given = np.arange(tiny_model.dim, dtype=np.float32)
    matrix = complete_vectors(binding, [given, None], lambda i: "bread rises", lambda i: f"doc {i}")
    np.testing.assert_allclose(matrix[0], given)
    np.testing.assert_allclose(matrix[1], tiny_model.encode(["bread rises"], normalize=False)[0], atol=1e-6)
    external = IndexBinding(dim=3)
    with pytest.raises(ValueError, match="doc 1 has no embedding"):
        complete_vectors(external, [[1.0, 0, 0], None], lambda i: "t", lambda i: f"doc {i}")
    with pytest.raises(ValueError, match="different sizes"):
        complete_vectors(external, [[1.0, 0, 0], [1.0]], lambda i: "t", lambda i: f"doc {i}")


def test_filters_go_through_the_host_hook(tiny_model) -> None:
    seen = []

    def hook(host_filter):
        seen.append(host_filter)
        return None if host_filter is None else {"n": {"$gte": host_filter}}

    binding = IndexBinding(model=tiny_model, translate_filter=hook)
    binding.add(TEXTS, ids=["a", "b", "c", "d"], metadatas=[{"n": i} for i in range(4)])
    assert {h.id for h in binding.search("strings", k=4, filter=2)} == {"c", "d"}
    assert binding.ids(3) == ["d"] and binding.ids(None) == ["a", "b", "c", "d"]
    assert seen == [2, 3, None]
    default = IndexBinding(dim=2)
    with pytest.raises(TypeError, match="filter must be a dict"):
        default.search(np.ones(2), k=1, filter=["n"])
    assert all_of(None, {"a": 1}) == {"a": 1}
    assert all_of({"a": 1}, None, {"b": 2}) == {"$and": [{"a": 1}, {"b": 2}]} and all_of(None, {}) is None


def test_mmr_uses_the_hosts_selection(tiny_model) -> None:
    binding = IndexBinding(model=tiny_model)
    binding.add(TEXTS, ids=["a", "b", "c", "d"], metadatas=[{"n": i} for i in range(4)])
    calls = []

    def select(query, candidates, count):
        calls.append((query.shape, candidates.shape, count))
        return list(range(len(candidates)))[::-1][:count]  # least relevant first: visibly the host's order

    plain = [h.id for h in binding.search("violin strings", k=3)]
    chosen = [h.id for h in binding.search_mmr("violin strings", k=2, fetch_k=3, select=select)]
    assert chosen == plain[::-1][:2]
    assert calls == [((tiny_model.dim,), (3, tiny_model.dim), 2)]
    assert binding.search_mmr("violin", k=2, fetch_k=4, select=select, filter={"n": 99}) == []
    assert IndexBinding(dim=3).search_mmr(np.ones(3), k=2, fetch_k=4, select=select) == []


def test_search_modes_pass_through_to_the_index(tiny_model) -> None:
    binding = IndexBinding(model=tiny_model)
    binding.add(TEXTS, ids=["v", "b", "r", "c"])
    index = binding.index

    def pairs(hits):
        return [(h.id, round(h.score, 5)) for h in hits]

    # dense stays the binding's default: the cosine scores the adapters promise
    assert pairs(binding.search("violin strings", k=4)) == pairs(index.search("violin strings", k=4, mode="dense"))
    lexical = binding.search("yeast", k=4, mode="lexical")
    assert [h.id for h in lexical] == ["b"] and lexical[0].score > 0  # BM25: only the text with the word
    for options in ({}, {"alpha": 0.7}, {"alpha": 0.2, "fusion": "rrf"}, {"fusion": "dbsf"}):
        hybrid = binding.search("violin strings", k=4, mode="hybrid", **options)
        assert pairs(hybrid) == pairs(index.search("violin strings", k=4, mode="hybrid", **options))
        assert all(0.0 <= h.score <= 1.0 for h in hybrid)
    assert pairs(binding.search("violin strings", k=4, mode=None)) == pairs(index.search("violin strings", k=4))
    vector = tiny_model.encode(["bread rises"])[0]
    with_vector = binding.search("violin strings", k=4, mode="hybrid", query_vector=vector)
    assert pairs(with_vector) == pairs(index.search("violin strings", k=4, mode="hybrid", query_vector=vector))
    assert [h.id for h in binding.search("strings", k=4, mode="lexical", filter={"$not": {"n": 1}})] in (
        ["v", "c"], ["c", "v"])  # a filter applies inside the lexical leg (no text has n)


def test_search_modes_refuse_what_they_cannot_do(tiny_model) -> None:
    empty = IndexBinding(model=tiny_model)
    for options, word in (({"mode": "sparse"}, "search mode"), ({"mode": "hybrid", "alpha": 1.5}, "alpha"),
                          ({"mode": "hybrid", "fusion": "max"}, "fusion")):
        with pytest.raises(ValueError, match=word):
            empty.search("x", k=1, **options)  # refused before anything is searched
    with pytest.raises(ValueError, match="needs a text query"):
        empty.search(np.ones(tiny_model.dim), k=1, mode="hybrid")
    external = IndexBinding(dim=3)
    external.add(["the violin has strings", "bread and yeast"], ids=["v", "b"], vectors=np.eye(2, 3))
    assert [h.id for h in external.search("yeast", k=2, mode="lexical")] == ["b"]  # no model needed
    with pytest.raises(ValueError, match="query_vector="):
        external.search("yeast", k=2, mode="hybrid")
    assert external.search("yeast", k=2, mode="hybrid", alpha=0.0)[0].id == "b"  # no dense leg
    hits = external.search("yeast", k=2, mode="hybrid", query_vector=[1.0, 0.0, 0.0])
    assert {h.id for h in hits} == {"v", "b"}
    with pytest.raises(ValueError, match="cannot embed text"):
        external.search("yeast", k=2)
    with pytest.raises(ValueError, match="3"):
        external.search("yeast", k=2, mode="hybrid", query_vector=[1.0, 0.0])
    no_lexical = IndexBinding(VectorIndex.create(model=tiny_model, lexical=False))
    no_lexical.add(TEXTS)
    with pytest.raises(NoLexicalPartError, match="reindex --lexical"):
        no_lexical.search("violin", k=1, mode="hybrid")
    assert len(no_lexical.search("violin", k=1, mode=None)) == 1  # the index's default: dense here


@pytest.mark.parametrize("protocol", ["memory", "file"])
def test_save_and_open_through_fsspec(tiny_model, tiny_model_folder, tmp_path, protocol) -> None:
    fs = fsspec.filesystem(protocol)
    root = f"/binding-{tmp_path.name}" if protocol == "memory" else str(tmp_path / "remote")
    binding = IndexBinding(model=tiny_model, model_path=str(tiny_model_folder))
    binding.add(TEXTS, ids=["a", "b", "c", "d"])
    binding.save(f"{root}/idx", fs)
    opened = IndexBinding.open(f"{root}/idx", fs)
    assert opened.index.model.fingerprint == tiny_model.fingerprint  # reloaded from the recorded folder
    expected = [h.id for h in binding.search("yeast bread", k=1)]
    assert [h.id for h in opened.search("yeast bread", k=1)] == expected
    with pytest.raises(ModelMismatchError, match="cannot be searched with FakeEmbeddings vectors"):
        IndexBinding.open(f"{root}/idx", fs, external=True, embedder="FakeEmbeddings")
    external = IndexBinding(dim=3)
    external.add(["x"], vectors=np.ones((1, 3)))
    external.save(f"{root}/ext", fs)
    assert IndexBinding.open(f"{root}/ext", fs, external=True).index.external_vectors
    with pytest.raises(IndexNotFoundError):
        IndexBinding.open(f"{root}/missing", fs)
    if protocol == "memory":
        fs.rm(root, recursive=True)


def test_a_downloaded_copy_lives_as_long_as_the_binding(tiny_model, tiny_model_folder) -> None:
    import gc

    fs = fsspec.filesystem("memory")
    IndexBinding(model=tiny_model, model_path=str(tiny_model_folder)).save("/lifetime/idx", fs)
    opened = IndexBinding.open("/lifetime/idx", fs)
    local = Path(opened.index.path)
    assert local.is_dir() and "m2v-download-" in str(local)
    opened.index.close()
    del opened
    gc.collect()
    assert not local.parent.exists()
    fs.rm("/lifetime", recursive=True)


def test_option_names_and_model_resolution(tiny_model, tiny_model_folder) -> None:
    options = {"index_type": "hnsw", "other": 1}
    with pytest.warns(DeprecationWarning, match=r"Store\(index_type=...\) is deprecated; use index_kind="):
        assert pop_index_kind(options, None, "Store") == "hnsw"
    assert options == {"other": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pop_index_kind({}, None, "Store") == "auto" and pop_index_kind({}, "flat", "Store") == "flat"
    with pytest.raises(TypeError, match="index_kind only"):
        pop_index_kind({"index_type": "hnsw"}, "flat", "Store")

    class HostEmbeddings:
        client = tiny_model
        model_name = str(tiny_model_folder)

    assert resolve_model(HostEmbeddings()) == (tiny_model, str(tiny_model_folder.resolve()))
    assert resolve_model("m2v-base") == ("m2v-base", None) and resolve_model(None) == (None, None)
    with pytest.raises(TypeError, match="StaticModel"):
        resolve_model(42)
    assert model_source("no/such/folder") is None and model_source(None) is None
    assert isinstance(IndexBinding(VectorIndex.create(dim=2)).index, VectorIndex)
    with pytest.raises(ValueError, match="dim=3"):
        IndexBinding(VectorIndex.create(dim=2), dim=3)
    with pytest.raises(ValueError, match="not both"):
        IndexBinding(model=tiny_model, dim=3)
