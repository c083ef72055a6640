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
    index = VectorIndex.create(model=tiny_model, index_kind="flat")
    vectors = tiny_model.encode([r["text"] for r in records])
    index.upsert(records, vectors=vectors)
    return index, vectors


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_default_search_params_keep_recall(kind: str, tiny_model, records, flat, tmp_path: Path) -> None:
    exact, vectors = flat
    index = VectorIndex.create(tmp_path / kind, tiny_model, index_kind=kind)
    index.upsert(records, vectors=vectors)
    index.save()  # ivf: trained here
    assert index.kind == kind, index.factory
    # queries: the first half of every 11th document (near, but not equal to, stored texts)
    queries = [r["text"][: max(8, len(r["text"]) // 2)] for r in records[::11]]
    truth = [[h.id for h in hits] for hits in exact.search_batch(queries, k=10, mode="dense")]
    found = [[h.id for h in hits] for hits in index.search_batch(queries, k=10, mode="dense")]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.95, f"{kind} {index.factory} {index.search_params}: recall@10 {recall:.3f}"
    # single queries (one thread) give the same results as the batch
    assert [h.id for h in index.search(queries[3], k=10, mode="dense")] == found[3]


def test_ivf_pq_reranks_exactly_with_the_model(tiny_model, records, flat, tmp_path: Path) -> None:
    """PQ codes alone lose recall; the index re-scores 4x the candidates with the model's exact
    vectors of their stored texts, unless some vectors were given rather than encoded."""
    exact, _ = flat
    index = VectorIndex.create(tmp_path / "pq", tiny_model, factory="IVF64,PQ8")
    index.upsert(records)  # encoded from the texts: re-ranking applies
    index.save()
    queries = [r["text"][: max(8, len(r["text"]) // 2)] for r in records[::11]]
    truth = exact.search_batch(queries, k=10, mode="dense")
    found = index.search_batch(queries, k=10, mode="dense")
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(found, truth)])
    assert recall >= 0.95, f"{index.factory}: recall@10 {recall:.3f} with re-ranking"
    for got, want in zip(found[:20], truth[:20]):  # exact cosines, best first, as the flat index gives them
        scores = [h.score for h in got]
        assert scores == sorted(scores, reverse=True)
        common = {h.id: h.score for h in want}
        for hit in got:
            if hit.id in common:
                assert hit.score == pytest.approx(common[hit.id], abs=1e-5)
    assert index.verify() == []  # lossy codes are not compared with fresh encodings

    without = VectorIndex.create(tmp_path / "pq-given", tiny_model, factory="IVF64,PQ8")
    without.upsert(records, vectors=tiny_model.encode([r["text"] for r in records]))
    without.save()
    lossy = without.search_batch(queries, k=10, mode="dense")
    lossy_recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(lossy, truth)])
    assert lossy_recall < recall  # given vectors: no re-ranking (the texts may not be what was embedded)
    without.clear()  # emptied: the next documents decide again whether re-ranking is possible
    without.upsert(records)
    assert without.search_batch(queries[:5], k=10, mode="dense")[0][0].score == pytest.approx(found[0][0].score, abs=1e-5)
    reopened = VectorIndex.open(tmp_path / "pq", model=tiny_model)
    assert [h.id for h in reopened.search_batch(queries[:5], k=10, mode="dense")[0]] == [h.id for h in found[0]]
