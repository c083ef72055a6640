"""A corpus as the static model tokenizes it: flat token ids and per-text offsets (no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from m2v_search.model import StaticModel


class TokenizedCorpus(NamedTuple):
    """Flat token ids of a corpus and the offsets where each text's ids start (``n + 1`` of them)."""

    ids: np.ndarray
    offsets: np.ndarray

    @property
    def text_count(self) -> int:
        """Number of texts."""
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Known tokens per text."""
        return np.diff(self.offsets)


def tokenize_corpus(model: StaticModel, texts: Sequence[str], max_length: int | None = 256,
                    batch_size: int = 20_000) -> TokenizedCorpus:
    """Token ids of ``texts`` as ``model.encode`` sees them (unknown tokens dropped, truncated).

    Args:
        model: the static model whose tokenizer is used.
        texts: the corpus.
        max_length: token limit per text.
        batch_size: texts tokenized per call (bounds the memory of one call).

    Returns:
        The flat ids (int64) and offsets (int64, ``len(texts) + 1``).
    """
    ids_parts, lengths_parts = [], []
    for start in range(0, len(texts), batch_size):
        ids, offsets = model.tokenize_flat(texts[start:start + batch_size], max_length)
        ids_parts.append(ids.astype(np.int64))
        lengths_parts.append(np.diff(offsets))
    lengths = np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return TokenizedCorpus(np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64), offsets)
