"""What training must never see: the held-out splits of the dev tasks (``m2v_search.train.dev_tasks``).

Each split is a stable hash bucket of a fixed string (no seed, no dependence on data order), so
a corpus reader, a pair builder and the dev tasks agree on it without importing each other.
"""

from __future__ import annotations

import hashlib

HELDOUT_WORD_BUCKETS = 10  # 1 in 10 vocabulary words is held out
HELDOUT_GCIDE_BUCKETS = 10  # 1 in 10 headwords is held out
DEV_MODULE_BUCKETS = 5  # 1 in 5 top-level stdlib modules is dev


def hash_bucket(namespace: str, key: str, buckets: int) -> int:
    """A stable bucket in ``range(buckets)`` for ``key`` (SHA-1 of ``namespace:key``)."""
    digest = hashlib.sha1(f"{namespace}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def is_heldout_word(word: str) -> bool:
    """Whether a word is held out for ``word_agreement`` (a word-level training term must skip it)."""
    return hash_bucket("word", word.lower(), HELDOUT_WORD_BUCKETS) == 0


def is_heldout_headword(headword: str) -> bool:
    """Whether a GCIDE headword is held out for ``gcide_headword`` (training must skip it)."""
    return hash_bucket("gcide", headword.lower(), HELDOUT_GCIDE_BUCKETS) == 0


def is_dev_module(module: str) -> bool:
    """Whether a standard-library module (by its top-level package) belongs to the dev split."""
    return hash_bucket("stdlib", module.split(".")[0], DEV_MODULE_BUCKETS) == 0
