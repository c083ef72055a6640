"""Deep consistency checks of an index, beyond the checksums verified when it is opened."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from m2v_search.index.backends import Backend
from m2v_search.index.docstore import DocStore

VECTOR_SAMPLE = 64       # documents whose stored vector is compared with a fresh encoding
VECTOR_TOLERANCE = 1e-3  # largest |difference| accepted between them


def consistency_problems(docs: DocStore, backend: Backend,
                         embed: Callable[[list[str]], np.ndarray] | None) -> list[str]:
    """What is inconsistent between the docstore and the backend.

    Args:
        docs: The documents.
        backend: Their vectors.
        embed: Unit vectors of texts when every stored vector is the model's encoding of its text
            (a sample is then compared); None to skip that check.

    Returns:
        One sentence per problem (empty: consistent).
    """
    problems: list[str] = []
    status = docs.integrity_check()
    if status != "ok":
        problems.append(f"docstore integrity check: {status}")
    live, tombstones = docs.match_iids(None), docs.tombstones()
    if backend.ntotal != len(live) + len(tombstones):
        problems.append(f"FAISS holds {backend.ntotal} vectors, docstore {len(live)} documents "
                        f"+ {len(tombstones)} deleted")
    stored = backend.stored_ids()
    if stored is not None and not np.array_equal(np.sort(stored), np.sort(np.concatenate([live, tombstones]))):
        problems.append("FAISS ids and docstore ids differ")
    if len(live) and embed is not None and not backend.lossy:
        sample = live[np.linspace(0, len(live) - 1, min(len(live), VECTOR_SAMPLE)).astype(np.int64)].tolist()
        stored_vectors = backend.reconstruct(sample)
        if len(stored_vectors) == len(sample):
            rows = docs.rows_by_iid(sample)
            fresh = embed([rows[int(i)][1] for i in sample])
            worst = float(np.max(np.abs(fresh - np.stack([stored_vectors[i] for i in sample]))))
            if worst > VECTOR_TOLERANCE:
                problems.append(f"stored vectors differ from the model's encoding (max |diff| {worst:.3g})")
    return problems
