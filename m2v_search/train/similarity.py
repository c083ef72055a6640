"""A sentence-similarity term: the table tuned so that its cosines on sentence pairs follow a teacher's.

Starting from a trained static model, each step takes a batch of sentence pairs and moves the
table so that the Pearson correlation, across the batch, between the model's cosine of each
pair and the teacher's cosine of the same pair rises, with the token anchor of
``m2v_search.train.anchor``::

    loss = 1 - pearson(cos_model(a_i, b_i), cos_teacher(a_i, b_i))  over the batch's pairs i
           + anchor_weight * (relative drift of the rows the batch touches)

Only the pairing of the sentences and the teacher's cosines are used, never human similarity
scores: with the STS-B *train* pairs (``m2v_search.train.corpus.stsb_train_pairs``) this
distils how a (stronger) transformer grades related sentences, which the fit to single
sentence embeddings does not target directly. A correlation, not a squared error, is
matched, because a static model's cosines live on another scale than a transformer's.

Early stopping uses the Spearman correlation between model and teacher cosines on held-out
pairs (split by a hash of the first sentence), never the dev tasks that judge the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from m2v_search.model import StaticModel
from m2v_search.train.anchor import TRAIN_PARTS, AnchoredTable, tune
from m2v_search.train.heldout import hash_bucket
from m2v_search.train.tokens import tokenize_corpus


@dataclass(frozen=True)
class SimilarityOptions:
    """Settings of one similarity fine-tune.

    Attributes:
        epochs: at most this many passes over the training pairs.
        batch_size: pairs per step (the correlation is taken across them).
        learning_rate: Adam's step size, relative to the table's mean absolute entry.
        anchor_weight: weight of the token anchor (0: none).
        train: "table" (every row) or "map" (one square map folded into the table).
        validation_buckets: 1 in this many pairs (by first sentence) is held out for early stopping.
        patience: epochs without a better held-out correlation before stopping.
        time_budget: seconds of training at most (None: no limit).
        seed: batch order.
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.01
    anchor_weight: float = 1.0
    train: str = "table"
    validation_buckets: int = 10
    patience: int = 3
    time_budget: float | None = 600.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.train not in TRAIN_PARTS:
            raise ValueError(f"train must be one of {TRAIN_PARTS}, got {self.train!r}")
        if self.batch_size < 3:
            raise ValueError(f"batch_size must be >= 3 (a correlation over the batch), got {self.batch_size}")
        if self.epochs < 1 or self.patience < 1 or self.validation_buckets < 2:
            raise ValueError("epochs and patience must be >= 1, validation_buckets >= 2")


def pearson_loss(model_cosines: torch.Tensor, teacher_cosines: torch.Tensor) -> torch.Tensor:
    """1 - the Pearson correlation of two vectors (0 when they agree up to scale and shift)."""
    x = model_cosines - model_cosines.mean()
    y = teacher_cosines - teacher_cosines.mean()
    return 1 - (x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-12)


def pair_cosines(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Row-wise cosines of two equally long batches of vectors."""
    return torch.nn.functional.cosine_similarity(first, second, dim=1)


def similarity_finetune(model: StaticModel, first: Sequence[str], second: Sequence[str],
                        teacher_cosines: Sequence[float] | np.ndarray, options: SimilarityOptions | None = None,
                        *, record_as: str = "similarity") -> tuple[StaticModel, dict[str, Any]]:
    """Tune a static model's table so that its cosines on ``(first[i], second[i])`` follow ``teacher_cosines``.

    Args:
        model: the starting model (its table, tokenizer and token weights).
        first: the pairs' first sentences.
        second: the pairs' second sentences.
        teacher_cosines: the teacher's cosine of each pair.
        options: the settings (default ``SimilarityOptions()``).
        record_as: the key of the tuned model's config that records the term's settings.

    Returns:
        The tuned model (the best held-out epoch's, in the starting table's float dtype) and a
        report: options, pairs, epochs, held-out Spearman before / best, seconds.

    Raises:
        ValueError: the three sequences differ in length, a sentence has no known token, or the
            held-out split leaves a side with fewer than 3 pairs.
    """
    from scipy.stats import spearmanr

    options = options or SimilarityOptions()
    targets = torch.as_tensor(np.asarray(teacher_cosines, dtype=np.float32))
    n = len(first)
    if not n == len(second) == len(targets):
        raise ValueError(f"{n} first sentences, {len(second)} second sentences and {len(targets)} teacher "
                         "cosines differ")
    held = np.array([hash_bucket("similarity-validation", text, options.validation_buckets) == 0 for text in first],
                    dtype=bool)
    train_rows, validation_rows = np.flatnonzero(~held), np.flatnonzero(held)
    if min(len(train_rows), len(validation_rows)) < 3:
        raise ValueError(f"splitting {n} pairs left {len(train_rows)} to train on and {len(validation_rows)} held "
                         "out; at least 3 each are needed")
    corpus = tokenize_corpus(model, list(first) + list(second), max_length=model.max_length)
    if (corpus.lengths == 0).any():
        raise ValueError("a sentence has no known token; drop its pair first")
    torch.manual_seed(options.seed)
    tuning = AnchoredTable(model, corpus, options.learning_rate, options.train)

    def held_out_spearman() -> float:
        with torch.no_grad():
            cosines = pair_cosines(tuning.outputs(validation_rows), tuning.outputs(validation_rows + n))
        return float(spearmanr(cosines.numpy(), targets[validation_rows].numpy()).correlation * 100)

    def term_loss(rows: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        cosines = pair_cosines(tuning.outputs(rows), tuning.outputs(rows + n))
        return pearson_loss(cosines, targets[rows]), np.concatenate([rows, rows + n])

    run = tune(tuning, train_rows, term_loss, held_out_spearman, options, min_batch=3,
               score_name="held_out_spearman", loss_name="correlation_loss")
    stopper = run.stopper
    tuned = tuning.tuned_model(stopper.best_state, record_as,
                               {"options": asdict(options), "best_epoch": stopper.best_epoch})
    report = {"options": asdict(options), "train_pairs": int(len(train_rows)),
              "validation_pairs": int(len(validation_rows)), "epochs_run": run.epochs_run,
              "best_epoch": stopper.best_epoch, "held_out_spearman_before": round(stopper.initial_score, 2),
              "held_out_spearman_best": round(stopper.best_score, 2), "seconds": round(run.seconds, 1),
              "history": run.history}
    return tuned, report
