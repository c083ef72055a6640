"""The settings of one fit (``m2v_search.train.fit``), checked when they are made."""

from __future__ import annotations

from dataclasses import dataclass

LOSSES = ("cosine", "contrastive")


@dataclass(frozen=True)
class FitOptions:
    """How to fit a static table to teacher embeddings.

    Attributes:
        pca_dims: dimensions of the PCA-reduced targets, hence of the result (None: the model's).
        whiten_targets: scale each PCA dimension of the targets to unit variance.
        loss: "cosine" (1 - cosine to the target) or "contrastive" (in-batch InfoNCE at
            ``temperature``).
        epochs: passes over the training rows at most.
        batch_size: texts per optimiser step (Adam on the table and the head).
        learning_rate: Adam's learning rate.
        temperature: softmax temperature of the contrastive loss.
        validation_fraction: share of the texts held out when no explicit split is given.
        validation_pairs: random held-out pairs whose similarities are compared with the teacher's.
        patience: epochs without a better held-out score before stopping; the best epoch is kept.
        max_steps: stop after this many optimiser steps in all (quick runs and tests).
        time_limit: stop after the first epoch that ends past this many seconds.
        max_length: token limit per text, as ``StaticModel.encode`` applies it.
        device: "auto" (cuda, then mps, then cpu) or a torch device name.
        seed: seeds the split, the validation pairs and the batch order.
        show_progress_bar: one tqdm bar per epoch on stderr.
    """

    pca_dims: int | None = None
    whiten_targets: bool = False
    loss: str = "cosine"
    epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 1e-3
    temperature: float = 0.05
    validation_fraction: float = 0.05
    validation_pairs: int = 20_000
    patience: int = 3
    max_steps: int | None = None
    time_limit: float | None = None
    max_length: int | None = 256
    device: str = "auto"
    seed: int = 0
    show_progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        for name in ("epochs", "patience", "validation_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if not self.learning_rate > 0 or not self.temperature > 0:
            raise ValueError(f"learning_rate and temperature must be > 0, got {self.learning_rate}, "
                             f"{self.temperature}")
