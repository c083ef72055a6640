"""Recall@10 of the HNSW and IVF defaults against exact search, on real text (the example corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search.index import VectorIndex  # noqa: E402

EXAMPLES = Path(__file__).parents[1] / "examples" / "corpus.jsonl"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def flat(tiny_model, records) -> tuple[VectorIndex, np.ndarray]:
    index = VectorIndex.create(model=tiny_model, index="flat")
    vectors = tiny_model.encode([r["text"] for r in records])
    index.upsert(records, vectors=vectors)
    return index, vectors


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_default_search_params_keep_recall(kind: str, tiny_model, records, flat, tmp_path: Path) -> None:
    exact, vectors = flat
    index = VectorIndex.create(tmp_path / kind, tiny_model, index=kind)
    index.upsert(records, vectors=vectors)
    index.save()  # ivf: trained here
    assert index.kind == kind, index.factory
    # queries: the first half of every 11th document (near, but not equal to, stored texts)
    queries = [r["text"][: max(8, len(r["text"]) // 2)] for r in records[::11]]
    truth = [[h.id for h in hits] for hits in exact.search_batch(queries, k=10)]
    found = [[h.id for h in hits] for hits in index.search_batch(queries, k=10)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.95, f"{kind} {index.factory} {index.search_params}: recall@10 {recall:.3f}"
    # single queries (one thread) give the same results as the batch
    assert [h.id for h in index.search(queries[3], k=10)] == found[3]
