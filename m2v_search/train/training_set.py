"""The rows a recipe trains on: the corpus, its random crops, a held-out split, in-domain rows."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

import numpy as np

from m2v_search.train.recipe import CorpusSpec, VariantSpec


@dataclass
class TrainingSet:
    """The corpus plus crops, and which rows each variant trains on.

    Attributes:
        texts: the corpus texts (rows ``0 .. len(texts) - 1``).
        all_texts: ``texts`` followed by the random crops (the rows the teacher embeds).
        validation: held-out rows of ``texts`` (their crops are dropped from training).
        train_texts: rows of ``texts`` not held out.
        train_crops: rows of the crops of texts not held out.
        in_domain: rows (texts and crops, not held out) of in-domain sentences (STS-B train).
        train_words: rows of single vocabulary words (after the crops), trained on by every variant:
            the token-level term that keeps word meaning (``CorpusSpec.vocabulary_words``).
    """

    texts: list[str]
    all_texts: list[str]
    validation: np.ndarray
    train_texts: np.ndarray
    train_crops: np.ndarray
    in_domain: np.ndarray
    train_words: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def crop_count(self) -> int:
        """Number of random crops added."""
        return len(self.all_texts) - len(self.texts) - len(self.train_words)

    def rows(self, variant: VariantSpec) -> np.ndarray:
        """The rows ``variant`` trains on each epoch (in-domain rows repeated as it says)."""
        rows = np.concatenate([self.train_texts, self.train_crops]) if variant.crops else self.train_texts
        if variant.words:
            rows = np.concatenate([rows, self.train_words])
        if variant.in_domain_repeat > 1:
            rows = np.concatenate([rows] + [self.in_domain] * (variant.in_domain_repeat - 1))
        return rows


def make_training_set(texts: list[str], spec: CorpusSpec, in_domain: Set[str] = frozenset(),
                      words: list[str] | None = None) -> TrainingSet:
    """Hold out ``spec.held_out`` of the texts, add ``spec.crops_per_text`` crops of each.

    Args:
        texts: the corpus.
        spec: the recipe's corpus settings (split share and seed, crops and their seed).
        in_domain: sentences whose rows a variant may repeat (``VariantSpec.in_domain_repeat``).
        words: single words trained on as texts of their own (never held out).

    Returns:
        The training set; the same inputs always give the same rows.
    """
    from m2v_search.train.corpus import random_crops

    rng = np.random.default_rng(spec.split_seed)
    held_out = np.zeros(len(texts), dtype=bool)
    held_out[rng.choice(len(texts), int(spec.held_out * len(texts)), replace=False)] = True
    if spec.crops_per_text:
        crops, crop_source = random_crops(texts, per_text=spec.crops_per_text, seed=spec.crop_seed)
    else:
        crops, crop_source = [], np.zeros(0, dtype=np.int64)
    crop_rows = len(texts) + np.flatnonzero(~held_out[crop_source])
    focus = np.fromiter((text in in_domain for text in texts), dtype=bool, count=len(texts)) & ~held_out
    in_domain_rows = np.concatenate([np.flatnonzero(focus), len(texts) + np.flatnonzero(focus[crop_source])])
    words = list(words or [])
    word_rows = len(texts) + len(crops) + np.arange(len(words), dtype=np.int64)
    return TrainingSet(texts, texts + crops + words, np.flatnonzero(held_out), np.flatnonzero(~held_out), crop_rows,
                       in_domain_rows, word_rows)
