"""What the fine-tuning terms after the fit share: the table as a trainable student, and the
token anchor that keeps every row near where it started.

A term (``m2v_search.train.contrastive``, ``m2v_search.train.similarity``) starts from a
trained static model, moves its table (or one square map of it) on its own loss, and adds::

    anchor_weight * sum_t |E_t - E0_t|^2 / |E0_t|^2 / (distinct tokens in the batch)

The anchor is over the whole table (a row moved by an earlier batch is still pulled back) and
divided by the tokens the batch touches, so ``anchor_weight`` reads as "relative drift of a
token the batch moves, against one unit of the term's loss".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from m2v_search.model import StaticModel
from m2v_search.train.early_stopping import EarlyStopping
from m2v_search.train.student import StudentModel
from m2v_search.train.tokens import TokenizedCorpus

logger = logging.getLogger(__name__)

TRAIN_PARTS = ("table", "map")


class TuningOptions(Protocol):
    """What ``tune`` reads of a term's options (``ContrastiveOptions``, ``SimilarityOptions``)."""

    epochs: int
    batch_size: int
    anchor_weight: float
    patience: int
    time_budget: float | None
    seed: int


@dataclass
class TuningRun:
    """What happened in ``tune``: the early stopper (best epoch, score, state), epochs run, history."""

    stopper: EarlyStopping
    epochs_run: int
    history: list[dict[str, float]]
    seconds: float


def anchor_loss(table: torch.Tensor, start: torch.Tensor, start_norms: torch.Tensor, touched: int) -> torch.Tensor:
    """Relative squared drift of every row from ``start``, summed, per token the batch touches."""
    return (((table - start) ** 2).sum(1) / start_norms).sum() / max(touched, 1)


class AnchoredTable:
    """A static model's table as a trainable student over ``corpus``, with its anchor.

    Args:
        model: the starting model (its table and token weights).
        corpus: the tokenized texts the term trains on.
        learning_rate: Adam's step, relative to the table's mean absolute entry ("table") or to
            the map's scale ("map").
        train: "table" (every row moves) or "map" (one square linear map applied to every row,
            folded into the table at the end: few parameters, so it cannot memorise tokens).

    Raises:
        ValueError: ``train`` is not one of ``TRAIN_PARTS``.
    """

    def __init__(self, model: StaticModel, corpus: TokenizedCorpus, learning_rate: float, train: str = "table"
                 ) -> None:
        if train not in TRAIN_PARTS:
            raise ValueError(f"train must be 'table' or 'map', got {train!r}")
        table = np.asarray(model.embedding, dtype=np.float32)
        self.model, self.corpus, self.train = model, corpus, train
        self.student = StudentModel(table, corpus, table.shape[1], token_weights=model.weights)
        with torch.no_grad():
            self.student.head.weight.copy_(torch.eye(table.shape[1]))
        if train == "table":  # Adam's steps in the table's units (tables differ in scale by orders of magnitude)
            self.student.head.weight.requires_grad_(False)
            self.optimizer = torch.optim.Adam(self.student.bag.parameters(),
                                              lr=learning_rate * float(np.abs(table).mean()))
        else:
            self.student.bag.weight.requires_grad_(False)
            self.optimizer = torch.optim.Adam(self.student.head.parameters(), lr=learning_rate / table.shape[1] ** 0.5)
        self.start = torch.from_numpy(table.copy())
        self.start_norms = (self.start ** 2).sum(1).clamp_min(1e-8)
        # map mode: every row is start_t @ W^T, so the anchor is tr((W - I) G (W - I)^T) with this
        # dim x dim Gram matrix of the rows scaled by their norms (no table-sized product per step)
        self.gram = (self.start / self.start_norms[:, None]).T @ self.start if train == "map" else None
        self.identity = torch.eye(table.shape[1])

    def outputs(self, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Mean-pooled outputs (map applied) of the corpus texts ``rows``."""
        return self.student(rows)

    def anchor(self, rows: np.ndarray) -> torch.Tensor:
        """The anchor term for a batch over the corpus texts ``rows``."""
        touched = self.distinct_tokens(rows)
        if self.gram is None:
            return anchor_loss(self.student.bag.weight, self.start, self.start_norms, touched)
        drift = self.student.head.weight - self.identity
        return ((drift @ self.gram) * drift).sum() / max(touched, 1)

    def step(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss``."""
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def distinct_tokens(self, rows: np.ndarray) -> int:
        """Distinct token ids in the texts ``rows``."""
        ids, offsets = self.corpus.ids, self.corpus.offsets
        return len(np.unique(np.concatenate([ids[offsets[r]:offsets[r + 1]] for r in np.asarray(rows)])))

    def tuned_model(self, state: dict[str, Any] | None, config_key: str, config_value: dict[str, Any]) -> StaticModel:
        """The model with the tuned table (``state``: a snapshot to restore first), stored in the
        starting table's float dtype, its own token weights kept; ``config[config_key]`` records the term."""
        if state is not None:
            self.student.restore(state)
        with torch.no_grad():  # the head folded in, not the token weights (the model keeps them)
            table = (self.student.bag.weight @ self.student.head.weight.T).numpy().astype(np.float32)
        model = self.model
        if np.issubdtype(model.embedding.dtype, np.floating):  # float16 keeps the shipped size
            table = table.astype(model.embedding.dtype)
        return StaticModel(table, model.tokenizer, config={**model.config, config_key: config_value},
                           normalize=model.normalize, base_model_name=model.base_model_name, language=model.language,
                           weights=model.weights, max_length=model.max_length)


def tune(tuning: AnchoredTable, train_rows: np.ndarray, term_loss: Callable[[np.ndarray], tuple[torch.Tensor, np.ndarray]],
         held_out: Callable[[], float], options: TuningOptions, *, min_batch: int, score_name: str, loss_name: str
         ) -> TuningRun:
    """Epochs of shuffled batches of ``train_rows``: each step minimises the term's loss plus the
    anchor, and each epoch ends with the held-out score (early stopping on it, and a time budget).

    Args:
        tuning: the table and its anchor.
        train_rows: the training items (pairs) of the term.
        term_loss: batch rows -> (the term's loss, the corpus texts the batch pools, for the anchor).
        held_out: the held-out score (higher is better), also taken before training.
        options: epochs, batch size, anchor weight, patience, time budget, seed.
        min_batch: the smallest batch the term can use (a last, smaller one is dropped).
        score_name: the held-out score's name in the history.
        loss_name: the term's loss's name in the history.
    """
    stopper = EarlyStopping(options.patience, held_out(), tuning.student.snapshot)
    rng = np.random.default_rng(options.seed)
    started, epoch, history = time.perf_counter(), 0, []
    for epoch in range(1, options.epochs + 1):
        order = rng.permutation(train_rows)
        totals = np.zeros(2)
        for first in range(0, len(order) - min_batch + 1, options.batch_size):
            loss, texts = term_loss(order[first:first + options.batch_size])
            anchor = tuning.anchor(texts)
            tuning.step(loss + options.anchor_weight * anchor)
            totals += (loss.item(), anchor.item())
        score = held_out()
        history.append({"epoch": epoch, score_name: round(score, 2), loss_name: round(float(totals[0]), 4),
                        "anchor": round(float(totals[1]), 6)})
        logger.info("epoch %d: %s %.2f, %s %.3f, anchor %.5f", epoch, score_name, score, loss_name, *totals)
        if stopper.update(epoch, score):
            break
        if options.time_budget is not None and time.perf_counter() - started > options.time_budget:
            logger.info("time budget reached after epoch %d", epoch)
            break
    return TuningRun(stopper, epoch, history, time.perf_counter() - started)
