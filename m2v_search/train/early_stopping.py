"""Early stopping: keep the best-scoring state, stop after ``patience`` epochs without progress."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class EarlyStopping:
    """Tracks a held-out score (higher is better) epoch by epoch.

    Args:
        patience: epochs in a row without a better score after which ``update`` says stop.
        initial_score: the score before training (epoch 0).
        snapshot: returns a copy of what produced the current score; called at the start and
            at every improvement only.

    Raises:
        ValueError: patience is below 1.
    """

    def __init__(self, patience: int, initial_score: float, snapshot: Callable[[], Any]) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self._snapshot = snapshot
        self.initial_score = initial_score
        self.best_score = initial_score
        self.best_epoch = 0
        self.best_state = snapshot()
        self.stale = 0

    def update(self, epoch: int, score: float) -> bool:
        """Record ``epoch``'s score; snapshot the state when it is the best so far.

        Args:
            epoch: the epoch just finished (1-based).
            score: its held-out score; NaN never counts as progress.

        Returns:
            True when ``patience`` epochs in a row brought no better score.
        """
        if self.improves(score):
            self.best_score, self.best_epoch, self.best_state = score, epoch, self._snapshot()
            self.stale = 0
        else:
            self.stale += 1
        return self.should_stop

    def improves(self, score: float) -> bool:
        """Whether ``score`` beats the best so far (any number beats a NaN best)."""
        if math.isnan(score):
            return False
        return math.isnan(self.best_score) or score > self.best_score

    @property
    def should_stop(self) -> bool:
        """Whether the last ``patience`` epochs brought no better score."""
        return self.stale >= self.patience
