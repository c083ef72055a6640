"""The contrastive query -> document term with its token anchor (m2v_search.train.contrastive)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from m2v_search import StaticModel  # noqa: E402
from m2v_search.train import dev_tasks  # noqa: E402
from m2v_search.train.contrastive import (  # noqa: E402
    ContrastiveOptions,
    anchor_loss,
    contrastive_finetune,
    contrastive_loss,
    split_by_group,
)
from m2v_search.train.evaluation import retrieval_scores  # noqa: E402


@pytest.fixture(scope="module")
def model() -> StaticModel:
    return StaticModel.from_pretrained()


@pytest.fixture(scope="module")
def pairs() -> list[dev_tasks.DocstringPair]:
    return dev_tasks.docstring_pairs("train")[:120]


def test_losses() -> None:
    aligned = torch.eye(4)
    assert contrastive_loss(aligned, aligned, 0.05) < contrastive_loss(aligned, aligned.roll(1, 0), 0.05)
    start = torch.ones(3, 2)
    assert anchor_loss(start, start, (start ** 2).sum(1), 2) == 0
    moved = start.clone()
    moved[0] = 2.0  # row 0 drifted by its own norm: relative drift 1, over 2 touched tokens
    assert anchor_loss(moved, start, (start ** 2).sum(1), 2) == pytest.approx(0.5)


def test_map_anchor_equals_the_anchor_of_the_folded_table(model: StaticModel) -> None:
    """Map mode computes the anchor from a dim x dim Gram matrix; it must equal the direct form."""
    from m2v_search.train.anchor import AnchoredTable
    from m2v_search.train.tokens import tokenize_corpus

    corpus = tokenize_corpus(model, ["a cat on a mat", "dogs bark at night"])
    tuning = AnchoredTable(model, corpus, learning_rate=0.01, train="map")
    with torch.no_grad():
        noise = torch.randn(model.dim, model.dim, generator=torch.Generator().manual_seed(0))
        tuning.student.head.weight.add_(0.01 * noise)
    rows = np.arange(2)
    folded = tuning.start @ tuning.student.head.weight.T
    direct = anchor_loss(folded, tuning.start, tuning.start_norms, tuning.distinct_tokens(rows))
    assert float(direct) > 0
    assert float(tuning.anchor(rows)) == pytest.approx(float(direct), rel=1e-4)


def test_split_by_group_keeps_groups_whole() -> None:
    groups = [f"module{i % 30}" for i in range(300)]
    train, validation = split_by_group(groups, 4)
    assert len(train) + len(validation) == 300
    assert {groups[i] for i in train}.isdisjoint({groups[i] for i in validation})
    with pytest.raises(ValueError, match="empty"):
        split_by_group(["one"] * 10, 4)


def _train_mrr(model: StaticModel, pairs: list[dev_tasks.DocstringPair]) -> float:
    return retrieval_scores(model.encode, [p.summary for p in pairs], [p.body for p in pairs])["mrr@10"]


@pytest.mark.parametrize("train", ["table", "map"])
def test_finetune_learns_its_pairs_and_the_anchor_holds_tokens(model: StaticModel, pairs, train: str,
                                                                tmp_path) -> None:
    args = ([p.summary for p in pairs], [p.body for p in pairs], [p.module for p in pairs])
    free, report = contrastive_finetune(model, *args, ContrastiveOptions(
        epochs=3, patience=3, anchor_weight=0.0, train=train, validation_buckets=3, learning_rate=0.05,
        restore_best=False))
    assert free.embedding.shape == model.embedding.shape and report["epochs_run"] >= 1
    assert free.embedding.dtype == model.embedding.dtype
    assert _train_mrr(free, pairs) > _train_mrr(model, pairs) + 2
    free.save_pretrained(tmp_path / "tuned")
    reloaded = StaticModel.from_pretrained(tmp_path / "tuned")
    assert reloaded.config["contrastive"]["options"]["train"] == train
    np.testing.assert_allclose(reloaded.encode(["open a file"]), free.encode(["open a file"]), atol=1e-6)
    held, _ = contrastive_finetune(model, *args, ContrastiveOptions(
        epochs=3, patience=3, anchor_weight=1e4, train=train, validation_buckets=3, learning_rate=0.05,
        restore_best=False))
    start = model.embedding.astype(np.float32)
    drift = lambda tuned: np.linalg.norm(tuned.embedding - start) / np.linalg.norm(start)  # noqa: E731
    assert drift(held) < drift(free)


def test_finetune_refuses_bad_input(model: StaticModel) -> None:
    with pytest.raises(ValueError, match="differ"):
        contrastive_finetune(model, ["a"], ["b", "c"], ["m"])
    with pytest.raises(ValueError, match="train must be"):
        contrastive_finetune(model, ["a b", "c d"] * 20, ["e f", "g h"] * 20, [f"m{i}" for i in range(40)],
                             ContrastiveOptions(train="rows"))
