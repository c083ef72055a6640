"""SIF weights a / (a + p(token)): frequent tokens count for less in a text's mean.

``p`` is either guessed from the token's rank (Zipf's law, assuming ids are sorted by
frequency, as in most subword vocabularies) or counted on a real corpus tokenized with the
model's own tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import numpy as np
from tokenizers import Tokenizer

_CHUNK = 4096


def zipf_probabilities(vocabulary_size: int) -> np.ndarray:
    """p(token with id i) ~ 1 / (i + 2), normalised (float64)."""
    inverse_rank = 1.0 / np.arange(2, vocabulary_size + 2, dtype=np.float64)
    return inverse_rank / inverse_rank.sum()


def token_counts(tokenizer: Tokenizer, corpus: Iterable[str], vocabulary_size: int | None = None,
                 show_progress_bar: bool = False) -> tuple[np.ndarray, int]:
    """(count of each token id over ``corpus``, number of texts), no special tokens added."""
    if tokenizer.padding or tokenizer.truncation:  # count every token, and no padding
        tokenizer = Tokenizer.from_str(tokenizer.to_str())
        tokenizer.no_padding()
        tokenizer.no_truncation()
    size = vocabulary_size or tokenizer.get_vocab_size()
    counts = np.zeros(size, dtype=np.int64)
    texts_seen = 0
    iterator = iter(corpus)
    progress = None
    if show_progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(desc="Counting tokens", unit="texts")
    while True:
        chunk = list(islice(iterator, _CHUNK))
        if not chunk:
            break
        for position, text in enumerate(chunk, texts_seen):
            if not isinstance(text, str):
                raise TypeError(f"sif_corpus[{position}] is {type(text).__name__}, expected str")
        encodings = tokenizer.encode_batch(chunk, add_special_tokens=False)
        ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64)
        counts += np.bincount(ids, minlength=size)[:size]
        texts_seen += len(chunk)
        if progress is not None:
            progress.update(len(chunk))
    if progress is not None:
        progress.close()
    return counts, texts_seen


def corpus_probabilities(counts: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """p(token) from counts, add-``smoothing`` so unseen tokens get a small, non-zero p."""
    smoothed = counts.astype(np.float64) + smoothing
    return smoothed / smoothed.sum()


def sif_weights(probabilities: np.ndarray, coefficient: float) -> np.ndarray:
    """a / (a + p) as float32."""
    if not 0.0 < coefficient < 1.0:
        raise ValueError(f"sif_coefficient must be > 0 and < 1 (or None for no weighting), got {coefficient}")
    return (coefficient / (coefficient + probabilities)).astype(np.float32)
