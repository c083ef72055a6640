"""Each index backend alone, through the backend interface: add, search, remove, filter
selector, serialise round trip, conversion; no docstore, no model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search.index import factory as factories  # noqa: E402
from m2v_search.index.backends import (  # noqa: E402
    BACKENDS,
    FlatBackend,
    HnswBackend,
    IvfBackend,
    SearchOptions,
    conversion_target,
    convert,
    create_backend,
    load_backend,
)
from m2v_search.index.errors import IndexCorruptError  # noqa: E402
from m2v_search.index.vectors import unit_vectors  # noqa: E402

DIM = 32
N = 3000
KINDS = ["flat", "hnsw", "ivf", "ivf-pq", "custom"]
EXPECTED_CLASS = {"flat": FlatBackend, "hnsw": HnswBackend, "ivf": IvfBackend, "ivf-pq": IvfBackend,
                  "custom": FlatBackend}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors (as text embeddings are) under ids that are not 0..n-1."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((40, DIM))
    vectors = centers[rng.integers(0, 40, N)] + 0.35 * rng.standard_normal((N, DIM))
    ids = np.arange(N, dtype=np.int64) * 3 + 11
    return ids, unit_vectors(vectors)


def spec_for(kind: str) -> factories.IndexSpec:
    if kind == "custom":
        return factories.custom_spec("SQ8")
    return factories.resolve(kind, N, DIM)


def filled(kind: str, ids: np.ndarray, vectors: np.ndarray):
    backend = create_backend(spec_for(kind), DIM)
    assert type(backend) is EXPECTED_CLASS[kind] and backend.dim == DIM and backend.ntotal == 0
    if not backend.is_trained:
        assert backend.min_training_vectors() >= factories.IVF_MIN_VECTORS  # IVF lists, SQ ranges
        backend.train(vectors)
    backend.add(ids, vectors)
    assert backend.ntotal == N
    return backend


def self_recall(backend, ids: np.ndarray, vectors: np.ndarray, rows: slice = slice(0, 200)) -> float:
    scores, labels = backend.search(vectors[rows], 1, None, SearchOptions())
    return float(np.mean(labels[:, 0] == ids[rows]))


@pytest.mark.parametrize("kind", KINDS)
def test_add_search_remove(kind: str, data) -> None:
    ids, vectors = data
    backend = filled(kind, ids, vectors)
    assert self_recall(backend, ids, vectors) >= (0.9 if backend.lossy else 0.99)
    scores, labels = backend.search(vectors[:5], 10, None, SearchOptions())
    assert labels.shape == (5, 10) and np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    assert set(labels.ravel().tolist()) <= set(ids.tolist())

    gone = ids[:100]
    tombstoned = backend.remove(gone)
    if kind == "hnsw":  # a graph keeps its nodes: the deletions are tombstones
        assert np.array_equal(tombstoned, gone) and backend.tombstone_count == 100 and backend.ntotal == N
    else:
        assert len(tombstoned) == 0 and backend.ntotal == N - 100
    _, labels = backend.search(vectors[:100], 5, None, SearchOptions())
    assert not np.isin(labels, gone).any()
    assert np.array_equal(np.sort(backend.live_ids()), ids[100:]) if backend.stored_ids() is not None else True


@pytest.mark.parametrize("kind", KINDS)
def test_filter_selector_keeps_results_inside(kind: str, data) -> None:
    ids, vectors = data
    backend = filled(kind, ids, vectors)
    for share in (0.5, 0.01):  # a broad filter, and a narrow one (HNSW: exact; IVF: more lists probed)
        allowed = np.sort(np.random.default_rng(1).choice(ids, int(N * share), replace=False))
        scores, labels = backend.search(vectors[:20], 10, allowed, SearchOptions(nprobe=1, ef_search=16))
        assert np.isin(labels, allowed).all()  # every query still gets k results, all allowed
        wanted = np.flatnonzero(np.isin(ids, allowed))[:20]
        _, own = backend.search(vectors[wanted], 1, allowed, SearchOptions())
        assert np.mean(own[:, 0] == ids[wanted]) >= (0.85 if backend.lossy else 0.99)


@pytest.mark.parametrize("kind", KINDS)
def test_serialise_round_trip(kind: str, data, tmp_path) -> None:
    ids, vectors = data
    backend = filled(kind, ids, vectors)
    backend.remove(ids[:10])
    expected = backend.search(vectors[:50], 5, None, SearchOptions())
    restored = load_backend(backend.to_bytes(), backend.spec, backend.tombstones)
    assert type(restored) is type(backend) and restored.ntotal == backend.ntotal
    assert restored.tombstone_count == backend.tombstone_count
    for got, want in zip(restored.search(vectors[:50], 5, None, SearchOptions()), expected):
        np.testing.assert_array_equal(got, want)
    backend.write(tmp_path / "index.faiss")  # the file holds the same bytes
    assert (tmp_path / "index.faiss").read_bytes() == backend.to_bytes()
    with pytest.raises(IndexCorruptError, match="not a readable FAISS index"):
        load_backend(b"not faiss" * 20, backend.spec)


@pytest.mark.parametrize("target_kind", ["hnsw", "ivf", "ivf-pq"])
def test_convert_from_flat(target_kind: str, data) -> None:
    ids, vectors = data
    flat = filled("flat", ids, vectors)
    flat.remove(ids[:10])
    target = spec_for(target_kind)
    assert conversion_target(flat, {"kind": target_kind}, N - 10).kind == target_kind
    if target_kind == "ivf-pq":  # too few vectors to train PQ codebooks well: stays flat unless forced
        assert convert(flat, target) is None
    converted = convert(flat, target, force=True)
    assert converted is not None and type(converted) is EXPECTED_CLASS[target_kind]
    assert converted.ntotal == N - 10 and converted.tombstone_count == 0
    assert self_recall(converted, ids[10:], vectors[10:]) >= (0.9 if converted.lossy else 0.99)


def test_hnsw_compaction_drops_tombstones(data) -> None:
    ids, vectors = data
    hnsw = filled("hnsw", ids, vectors)
    hnsw.remove(ids[:500])
    assert not hnsw.needs_compaction()
    hnsw.remove(ids[500:700])
    assert hnsw.needs_compaction() and conversion_target(hnsw, {"kind": "hnsw"}, N - 700) == hnsw.spec
    compacted = convert(hnsw, hnsw.spec)
    assert compacted is not None and compacted.ntotal == N - 700 and compacted.tombstone_count == 0
    assert np.array_equal(np.sort(compacted.stored_ids()), ids[700:])


def test_reset_keeps_ivf_training(data) -> None:
    ids, vectors = data
    ivf = filled("ivf", ids, vectors)
    emptied = ivf.reset()
    assert emptied.ntotal == 0 and emptied.is_trained
    flat = filled("flat", ids, vectors).reset()
    assert flat.ntotal == 0


def test_reconstruct_and_live_vectors(data) -> None:
    ids, vectors = data
    for kind in ("flat", "hnsw", "ivf"):
        backend = filled(kind, ids, vectors)
        got = backend.reconstruct(ids[:3].tolist())
        np.testing.assert_allclose(np.stack([got[int(i)] for i in ids[:3]]), vectors[:3], atol=1e-6)
        backend.remove(ids[:5])
        live_ids, live = backend.live_vectors()
        order = np.argsort(live_ids)
        np.testing.assert_array_equal(live_ids[order], ids[5:])
        np.testing.assert_allclose(live[order], vectors[5:], atol=1e-6)


def test_every_kind_has_a_backend() -> None:
    assert set(factories.KINDS) - {"auto"} <= set(BACKENDS)
    # a custom factory is searched by the backend its structure needs
    assert type(create_backend(factories.custom_spec("HNSW16,Flat"), DIM)) is HnswBackend
    assert type(create_backend(factories.custom_spec("IVF16,SQ8"), DIM)) is IvfBackend
