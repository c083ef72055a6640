"""The training loop: epochs of Adam steps on a ``StudentModel``, scored after each epoch.

The loop knows nothing of teachers, PCA or corpora: it gets the student, the target of
every text, the rows to train on and a ``validate`` function, and returns the history.
Early stopping (``EarlyStopping``) keeps the best epoch, which the student is left at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from m2v_search.train.early_stopping import EarlyStopping
from m2v_search.train.options import FitOptions
from m2v_search.train.student import StudentModel

MONITOR = "val_pair_spearman"


@dataclass
class LoopResult:
    """What the loop did: one history row per epoch (epoch 0: before training)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: float = float("nan")
    initial_validation: float = float("nan")
    steps: int = 0


def batch_loss(prediction: torch.Tensor, target: torch.Tensor, loss: str, temperature: float = 0.05
               ) -> torch.Tensor:
    """The loss of one batch.

    Args:
        prediction: the student's outputs (batch x dim).
        target: the targets of the same texts (batch x dim).
        loss: "cosine": mean of 1 - cosine; "contrastive": in-batch InfoNCE (each text's target
            against the other targets of the batch).
        temperature: softmax temperature of the contrastive loss.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: unknown loss.
    """
    if loss == "cosine":
        return 1.0 - torch.nn.functional.cosine_similarity(prediction, target, dim=1).mean()
    if loss == "contrastive":
        logits = (torch.nn.functional.normalize(prediction, dim=1)
                  @ torch.nn.functional.normalize(target, dim=1).T) / temperature
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(prediction), device=prediction.device))
    raise ValueError(f"unknown loss {loss!r}")


def run_epoch(student: StudentModel, optimiser: torch.optim.Optimizer, targets: torch.Tensor, order: np.ndarray,
              options: FitOptions, *, max_steps: int | None = None, description: str = "epoch") -> tuple[float, int]:
    """One pass over ``order`` (text rows, in that order) in batches of ``options.batch_size``.

    Args:
        student: the model trained in place.
        optimiser: the optimiser over the student's parameters.
        targets: the target of every text (indexed by row).
        order: rows to visit; a last batch of fewer than 2 rows is skipped.
        options: batch size, loss, temperature, progress bar.
        max_steps: stop after this many steps (None: the whole pass).
        description: the progress bar's label.

    Returns:
        The mean batch loss and the number of steps taken.
    """
    from tqdm.auto import tqdm

    rows_all = torch.as_tensor(order, device=student.device)
    total, steps = 0.0, 0
    starts = range(0, len(rows_all), options.batch_size)
    for start in tqdm(starts, desc=description, disable=not options.show_progress_bar, leave=False):
        if max_steps is not None and steps >= max_steps:
            break
        rows = rows_all[start:start + options.batch_size]
        if len(rows) < 2:
            continue
        value = batch_loss(student(rows), targets[rows], options.loss, options.temperature)
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        total += float(value.detach())
        steps += 1
    return total / max(steps, 1), steps


def train(student: StudentModel, targets: torch.Tensor, train_rows: np.ndarray,
          validate: Callable[[], dict[str, float]], options: FitOptions, *,
          rng: np.random.Generator | None = None, started: float | None = None) -> LoopResult:
    """Train ``student`` for up to ``options.epochs`` epochs and leave it at its best epoch.

    Args:
        student: the model trained in place.
        targets: the target of every text, on the student's device.
        train_rows: rows trained on each epoch, shuffled (a row given twice is seen twice).
        validate: scores the student now; must return ``MONITOR`` (higher is better) and may
            return other scores, all kept in the history.
        options: epochs, learning rate, patience, ``max_steps`` and ``time_limit``.
        rng: shuffles the rows (default: seeded with ``options.seed``).
        started: ``time.perf_counter()`` at which ``time_limit`` started (default: now).

    Returns:
        The history and the best epoch's score.
    """
    started = time.perf_counter() if started is None else started
    rng = np.random.default_rng(options.seed) if rng is None else rng
    optimiser = torch.optim.Adam(student.parameters(), lr=options.learning_rate)
    scores = validate()
    stopper = EarlyStopping(options.patience, scores[MONITOR], student.snapshot)
    history = [{"epoch": 0, "train_loss": math.nan, **scores}]
    steps = 0
    for epoch in range(1, options.epochs + 1):
        steps_left = None if options.max_steps is None else options.max_steps - steps
        mean_loss, taken = run_epoch(student, optimiser, targets, rng.permutation(train_rows), options,
                                     max_steps=steps_left, description=f"epoch {epoch}")
        steps += taken
        scores = validate()
        history.append({"epoch": epoch, "train_loss": mean_loss, **scores})
        stop = stopper.update(epoch, scores[MONITOR])
        out_of_steps = options.max_steps is not None and steps >= options.max_steps
        out_of_time = options.time_limit is not None and time.perf_counter() - started > options.time_limit
        if stop or out_of_steps or out_of_time:
            break
    student.restore(stopper.best_state)
    return LoopResult(history, stopper.best_epoch, stopper.best_score, stopper.initial_score, steps)
