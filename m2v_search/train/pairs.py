"""Query -> document training pairs for the retrieval term (``m2v_search.train.contrastive``).

All pairs come from the standard library's docstrings of the *training* modules: the modules
``heldout.is_dev_module`` holds out (the docstring dev task) never give a pair. Kinds:

- ``summary-body``: a docstring's first paragraph -> the rest (``dev_tasks.docstring_pairs``).
- ``paragraphs``: the first paragraph -> each later paragraph on its own (8+ words).
- ``names``: an object's dotted name as keywords (``gzip.GzipFile.peek`` -> ``gzip gzip file
  peek``) -> its first paragraph: a short keyword query, like a headword -> definition.

Debian descriptions, manual pages, GCIDE, WordNet, SimLex and WordSim are never used as pairs:
they are kept for evaluation.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

from m2v_search.train import dev_tasks
from m2v_search.train.corpus import stdlib_object_docstrings
from m2v_search.train.heldout import is_dev_module

if TYPE_CHECKING:
    from m2v_search.model import StaticModel

PAIR_KINDS = ("summary-body", "paragraphs", "names")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


class TrainingPairs(NamedTuple):
    """Parallel lists: ``documents[i]`` is the one relevant document of ``queries[i]``; ``groups[i]``
    is its top-level module (early stopping holds out whole groups)."""

    queries: list[str]
    documents: list[str]
    groups: list[str]


def name_query(name: str) -> str:
    """Keywords of a dotted object name: ``'zipfile.ZipFile.namelist'`` -> ``'zipfile zip file namelist'``."""
    spaced = _CAMEL.sub(r"\1 \2", name.replace(".", " ").replace("_", " "))
    return " ".join(spaced.lower().split())


def training_pairs(kinds: tuple[str, ...] | list[str] = PAIR_KINDS) -> TrainingPairs:
    """The pairs of ``kinds`` (see the module docstring), each distinct pair once.

    Raises:
        ValueError: an unknown kind.
    """
    unknown = sorted(set(kinds) - set(PAIR_KINDS))
    if unknown:
        raise ValueError(f"unknown pair kind {unknown[0]!r}; use some of {', '.join(PAIR_KINDS)}")
    candidates: list[tuple[str, str, str]] = []
    if "summary-body" in kinds:
        candidates += [(p.summary, p.body, p.module) for p in dev_tasks.docstring_pairs("train")]
    if "paragraphs" in kinds or "names" in kinds:
        candidates += _paragraph_and_name_pairs(kinds)
    pairs = TrainingPairs([], [], [])
    seen: set[tuple[str, str]] = set()
    for query, document, group in candidates:
        if (query, document) not in seen:
            seen.add((query, document))
            pairs.queries.append(query)
            pairs.documents.append(document)
            pairs.groups.append(group)
    return pairs


def usable_pairs(model: StaticModel, pairs: TrainingPairs) -> TrainingPairs:
    """``pairs`` without those whose query or document has no token ``model`` knows (a model of a
    corpus-only vocabulary cannot pool them)."""
    from m2v_search.train.tokens import tokenize_corpus

    lengths = tokenize_corpus(model, pairs.queries + pairs.documents, max_length=model.max_length).lengths
    count = len(pairs.queries)
    keep = ((lengths[:count] > 0) & (lengths[count:] > 0)).tolist()
    return TrainingPairs(*([value for value, kept in zip(column, keep) if kept] for column in pairs))


def _paragraph_and_name_pairs(kinds: tuple[str, ...] | list[str]) -> list[tuple[str, str, str]]:
    pairs = []
    for item in stdlib_object_docstrings():
        module = item.module.split(".")[0]
        if not item.defined_here or is_dev_module(module):
            continue
        paragraphs = dev_tasks.docstring_paragraphs(item.doc)
        if not paragraphs or len(paragraphs[0].split()) < 3:
            continue
        if "paragraphs" in kinds:
            pairs += [(paragraphs[0], " ".join(p.split()[:200]), module) for p in paragraphs[1:] if len(p.split()) >= 8]
        if "names" in kinds and "." in item.name:
            pairs.append((name_query(item.name), paragraphs[0], module))
    return pairs
