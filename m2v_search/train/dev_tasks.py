"""The dev tasks that choose a model: cheap, offline, deterministic, all held out from training.

A model is never chosen on one score (issue 16). Four tasks, each a function returning a
score x100 (higher is better):

- ``stsb_dev``: STS-B *dev* cosine Spearman (the test split is only reported, never tuned on).
- ``word_agreement``: on held-out vocabulary words (whole-word tokens of the tokenizer whose
  hash falls in the held-out bucket, ``is_heldout_word``), the Spearman correlation between the
  model's cosines and a reference encoder's (the teacher's) cosines over all pairs of words.
  No WordNet / SimLex / WordSim data is used: those are kept for evaluation outside the project.
- ``gcide_headword``: GCIDE headword -> its first definition, MRR@10 among the definitions of
  the sampled held-out headwords (``gcide_headword_pairs``; headwords split by hash).
- ``docstring``: Python standard-library docstring summary -> body, MRR@10, on the modules of
  the dev split (``docstring_pairs("dev")``; split by top-level module, so training pairs
  from ``docstring_pairs("train")`` come from other modules).

``combined_score`` is the unweighted mean of the four (each on its own x100 scale, so a point
counts the same on every task); ``select_candidate`` first drops candidates that fall more
than ``tolerance`` points below a reference (e.g. v1) on any task, then takes the best
combined score. Splits are by a SHA-1 hash of a fixed string, so they do not depend on the
order of the data or on a random seed; the docstring pairs depend on the running Python
version's standard library.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from m2v_search.train.corpus import stdlib_object_docstrings
from m2v_search.train.evaluation import Encoder, retrieval_scores
from m2v_search.train.heldout import (  # noqa: F401 - the held-out rules are part of the dev tasks' API
    hash_bucket,
    is_dev_module,
    is_heldout_headword,
    is_heldout_word,
)

TASKS = ("stsb_dev", "word_agreement", "gcide_headword", "docstring")
# ------------------------------------------------------------------ words
def heldout_words(tokens: Sequence[str], n: int = 1000) -> list[str]:
    """Up to ``n`` held-out whole words from a tokenizer vocabulary, in a fixed order.

    Kept: lowercase alphabetic tokens of at least 4 letters (no ``##`` pieces, no special
    tokens) for which ``is_heldout_word`` holds; ordered by their hash, then the first ``n``.

    Args:
        tokens: the vocabulary (e.g. ``StaticModel.tokens``).
        n: how many words.

    Returns:
        The words.
    """
    words = sorted({t for t in tokens if len(t) >= 4 and t.isascii() and t.isalpha() and t.islower()
                    and is_heldout_word(t)}, key=lambda w: (hash_bucket("order", w, 2**61), w))
    return words[:n]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def word_agreement(encode: Encoder, words: Sequence[str], reference_vectors: np.ndarray,
                   neighbours: int = 10) -> dict[str, float]:
    """Agreement of a model's word cosines with a reference's on the same words.

    Args:
        encode: texts -> vectors, the model judged.
        words: the words (``heldout_words``).
        reference_vectors: the reference's (teacher's) vectors of ``words``, same order.
        neighbours: k of the nearest-neighbour overlap.

    Returns:
        ``{"spearman": ..., "neighbours@k": ...}`` x100: Spearman over all word pairs, and the
        mean share of each word's k nearest reference neighbours among its k nearest model ones.

    Raises:
        ValueError: the reference has a different number of rows than ``words``.
    """
    from scipy.stats import spearmanr

    if len(reference_vectors) != len(words):
        raise ValueError(f"{len(reference_vectors)} reference vectors for {len(words)} words")
    ours, theirs = _unit(encode(list(words))), _unit(reference_vectors)
    ours_cos, theirs_cos = ours @ ours.T, theirs @ theirs.T
    upper = np.triu_indices(len(words), k=1)
    spearman = float(spearmanr(ours_cos[upper], theirs_cos[upper]).statistic)
    np.fill_diagonal(ours_cos, -np.inf)
    np.fill_diagonal(theirs_cos, -np.inf)
    k = min(neighbours, len(words) - 1)
    ours_top = np.argpartition(-ours_cos, k, axis=1)[:, :k]
    theirs_top = np.argpartition(-theirs_cos, k, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ours_top, theirs_top)])
    return {"spearman": 100.0 * spearman, f"neighbours@{k}": 100.0 * float(overlap)}


# ------------------------------------------------------------------ GCIDE headwords
def gcide_headword_pairs(n: int = 2000, heldout: bool = True) -> tuple[list[str], list[str]]:
    """(headwords, first definitions) of GCIDE entries in the held-out (or training) split.

    A headword is kept when it is one lowercase alphabetic word of at least 3 letters with a
    definition of at least 3 words (source tags removed). The first ``n`` by hash order.

    Args:
        n: pairs wanted.
        heldout: the held-out split (dev); False: the other headwords (free for training).

    Returns:
        The headwords and, in the same order, their definitions.

    Raises:
        FileNotFoundError: the GCIDE package is not installed (the message says how).
    """
    from m2v_search.train.evaluation import clean_definition, gcide_folder

    pairs: dict[str, str] = {}
    for file in sorted(gcide_folder().glob("words_*.json")):
        for headword, entry in sorted(json.loads(file.read_text(encoding="utf-8")).items()):
            if (len(headword) < 3 or not headword.isascii() or not headword.isalpha() or not headword.islower()
                    or headword in pairs or is_heldout_headword(headword) != heldout):
                continue
            for pos in entry.get("pos", []):
                texts = [clean_definition(d["text"]) for d in pos.get("definitions", []) if d.get("text")]
                texts = [t for t in texts if t.count(" ") >= 2]
                if texts:
                    pairs[headword] = texts[0]
                    break
    ordered = sorted(pairs, key=lambda w: (hash_bucket("order", w, 2**61), w))[:n]
    return ordered, [pairs[w] for w in ordered]


# ------------------------------------------------------------------ stdlib docstrings
class DocstringPair(NamedTuple):
    """One documented object: its top-level module, summary paragraph and body."""

    module: str
    summary: str
    body: str


def docstring_paragraphs(doc: str) -> list[str]:
    """The paragraphs of a docstring, each on one line, doctest paragraphs dropped."""
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n")]
    return [p for p in paragraphs if p and ">>>" not in p]


def _summary_body_splits() -> Iterator[tuple[str, str, str]]:
    """(top-level module, first paragraph, the rest) of multi-paragraph docstrings of public
    objects defined in their module (doctest paragraphs dropped)."""
    for item in stdlib_object_docstrings():
        if not item.defined_here:
            continue
        paragraphs = docstring_paragraphs(item.doc)
        if len(paragraphs) >= 2:
            yield item.module.split(".")[0], paragraphs[0], " ".join(paragraphs[1:])


@functools.lru_cache(maxsize=1)
def _all_docstring_pairs() -> tuple[DocstringPair, ...]:
    seen_summaries: set[str] = set()
    seen_bodies: set[str] = set()
    pairs = []
    for module, summary, body in _summary_body_splits():
        summary_words, body_words = summary.split(), body.split()
        if not 3 <= len(summary_words) <= 60 or len(body_words) < 8:
            continue
        body = " ".join(body_words[:200])
        if summary in seen_summaries or body in seen_bodies:
            continue
        seen_summaries.add(summary)
        seen_bodies.add(body)
        pairs.append(DocstringPair(module, summary, body))
    return tuple(pairs)


def docstring_pairs(split: str = "dev") -> list[DocstringPair]:
    """Summary -> body pairs of this interpreter's standard-library docstrings, by module split.

    A docstring with at least two paragraphs gives one pair: the first paragraph (3-60 words)
    and the rest (>= 8 words, cut at 200). Pairs repeating a summary or body are dropped.

    Args:
        split: "dev" (modules where ``is_dev_module`` holds) or "train" (all others).

    Returns:
        The pairs, in module order.

    Raises:
        ValueError: an unknown split.
    """
    if split not in ("dev", "train"):
        raise ValueError(f"split must be 'dev' or 'train', got {split!r}")
    return [p for p in _all_docstring_pairs() if is_dev_module(p.module) == (split == "dev")]


# ------------------------------------------------------------------ all tasks
class DevData(NamedTuple):
    """What the dev tasks need, loaded once: the reference's word vectors are computed here."""

    words: list[str]
    word_reference: np.ndarray
    gcide: tuple[list[str], list[str]]
    docstrings: list[DocstringPair]
    stsb_limit: int | None
    stsb_dir: str | None = None


def load_dev_data(reference: Encoder, tokens: Sequence[str], *, words: int = 1000, gcide: int = 2000,
                  docstrings: int | None = None, stsb_limit: int | None = None,
                  stsb_dir: str | os.PathLike[str] | None = None) -> DevData:
    """Load the dev tasks' data (and encode the held-out words with the reference) once.

    Args:
        reference: the encoder whose word cosines ``word_agreement`` compares with (the teacher).
        tokens: the vocabulary held-out words are drawn from (e.g. v1's ``StaticModel.tokens``,
            kept fixed for every candidate so their scores compare).
        words: held-out words.
        gcide: GCIDE headword pairs.
        docstrings: at most this many dev docstring pairs (None: all).
        stsb_limit: at most this many STS-B dev pairs (None: all 1500).
        stsb_dir: a folder holding ``sts-dev.csv`` (default: the STS-B package).

    Returns:
        The data for ``evaluate``.
    """
    chosen = heldout_words(tokens, words)
    pairs = docstring_pairs("dev")
    return DevData(chosen, np.asarray(reference(chosen), dtype=np.float32), gcide_headword_pairs(gcide),
                   pairs[:docstrings] if docstrings is not None else pairs, stsb_limit,
                   None if stsb_dir is None else str(stsb_dir))


def evaluate(encode: Encoder, data: DevData) -> dict[str, float]:
    """Every dev task's score (x100) for one model, plus the secondary figures.

    Args:
        encode: texts -> vectors.
        data: from ``load_dev_data``.

    Returns:
        ``{"stsb_dev", "word_agreement", "gcide_headword", "docstring"}`` (the selection scores,
        see ``TASKS``) and ``word_neighbours@10``, ``gcide_headword_recall@10``,
        ``docstring_recall@10``.
    """
    from m2v_search.distill.stsb import stsb_spearman

    words = word_agreement(encode, data.words, data.word_reference)
    gcide = retrieval_scores(encode, *data.gcide)
    docs = retrieval_scores(encode, [p.summary for p in data.docstrings], [p.body for p in data.docstrings])
    return {"stsb_dev": stsb_spearman(encode, "dev", data.stsb_limit, folder=data.stsb_dir),
            "word_agreement": words["spearman"], "gcide_headword": gcide["mrr@10"], "docstring": docs["mrr@10"],
            "word_neighbours@10": words["neighbours@10"], "gcide_headword_recall@10": gcide["recall@10"],
            "docstring_recall@10": docs["recall@10"]}


def combined_score(scores: Mapping[str, float]) -> float:
    """The selection score: the unweighted mean of the four task scores (``TASKS``).

    Raises:
        KeyError: a task score is missing.
    """
    return float(np.mean([scores[task] for task in TASKS]))


def select_candidate(candidates: Mapping[str, Mapping[str, float]], reference: Mapping[str, float] | None = None,
                     tolerance: float = 0.5) -> str:
    """The name of the candidate to keep.

    Candidates more than ``tolerance`` points below ``reference`` on any task are dropped
    (a gain on one task may not buy a loss on another); among the rest, the best
    ``combined_score``. When every candidate is dropped, the one with the smallest worst loss.

    Args:
        candidates: name -> ``evaluate`` scores.
        reference: the scores to stay near (e.g. the shipped model's); None: no floor.
        tolerance: points a task may drop.

    Returns:
        The chosen name.

    Raises:
        ValueError: no candidates.
    """
    if not candidates:
        raise ValueError("no candidates to select from")

    def worst_loss(scores: Mapping[str, float]) -> float:
        return 0.0 if reference is None else max(reference[t] - scores[t] for t in TASKS)

    kept = {name: s for name, s in candidates.items() if worst_loss(s) <= tolerance}
    if not kept:
        return min(candidates, key=lambda name: worst_loss(candidates[name]))
    return max(kept, key=lambda name: combined_score(kept[name]))

