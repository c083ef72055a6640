"""Fingerprints of static models: a sha256 of what ``encode`` reads, identifying the vectors a
model produces (index manifests record it; an index opens only with a model that has it)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from tokenizers import Tokenizer

EQUIVALENT_FINGERPRINTS = "equivalent_fingerprints"  # config key: earlier identities of a saved model


def table_fingerprint(table: np.ndarray, weights: np.ndarray | None, mapping: np.ndarray | None,
                      tokenizer: Tokenizer, unknown: int | None = None, canonical: bool = False) -> str:
    """sha256 of the parts. ``canonical`` leaves out what ``encode`` never reads and a save writes
    for other readers: the weight of the ``unknown`` token counts as 0, and the tokenizer's
    truncation and padding as none."""
    if canonical and weights is not None and unknown is not None and 0 <= unknown < len(weights) \
            and weights[unknown] != 0:
        weights = weights.copy()
        weights[unknown] = 0
    if canonical and (tokenizer.truncation or tokenizer.padding):
        tokenizer = Tokenizer.from_str(tokenizer.to_str())
        tokenizer.no_truncation()
        tokenizer.no_padding()
    digest = hashlib.sha256()
    for array in (table, weights, mapping):
        if array is not None:
            digest.update(str((array.dtype.name, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(tokenizer.to_str().encode())
    return digest.hexdigest()


def legacy_fingerprint(model: Any) -> str:
    """``model``'s fingerprint as earlier versions of this library computed it (the unknown token's
    weight and the tokenizer's truncation, which ``encode`` never reads and a save now writes for
    other readers, included): manifests of indexes built with them record it."""
    return table_fingerprint(model.embedding, model.weights, model.token_mapping, model.tokenizer)


def has_fingerprint(model: Any, fingerprint: str | None) -> bool:
    """Whether ``fingerprint`` (e.g. an index manifest's) is ``model``'s: its own, one its saved
    config lists as the same vectors' (``equivalent_fingerprints``: what earlier versions computed
    before a save rewrote the never-read parts), or its legacy one (computed only when needed)."""
    if fingerprint is None:
        return False
    if fingerprint == model.fingerprint or fingerprint in (model.config.get(EQUIVALENT_FINGERPRINTS) or []):
        return True
    return fingerprint == legacy_fingerprint(model)
