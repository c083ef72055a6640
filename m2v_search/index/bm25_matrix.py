"""bm25s's score matrix, built with whole-array numpy operations.

``bm25s.BM25.build_index_from_ids`` counts each document's terms with a ``Counter`` and scores
it in a Python loop over the documents: on 172k short definitions that loop was half of the
time a hybrid index took to build. bm25s invites overriding that step; this module does it
with the same scoring functions (bm25s's own idf and term-frequency formulas, called on whole
arrays instead of one document at a time) and returns the matrix in bm25s's layout (a CSC
matrix of documents x terms as ``data`` / ``indices`` / ``indptr``), so bm25s's query code
reads it unchanged. ``tests/test_lexical.py`` checks it against ``build_index_from_ids``.
"""

from __future__ import annotations

import numpy as np

METHOD = "lucene"


def score_matrix(offsets: np.ndarray, tokens: np.ndarray, terms: int, *, k1: float, b: float) -> dict:
    """The BM25 (Lucene variant) score matrix of a corpus of term ids, as bm25s stores it.

    Args:
        offsets: (documents + 1,) int offsets into ``tokens``: document ``i`` is
            ``tokens[offsets[i]:offsets[i + 1]]``.
        tokens: int term ids in ``[0, terms)``, repeats counting as term frequency.
        terms: size of the vocabulary (the matrix's number of columns).
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.

    Returns:
        ``{"data", "indices", "indptr", "num_docs"}``: for term ``t``, the documents containing it
        are ``indices[indptr[t]:indptr[t + 1]]`` (ascending) with their scores in ``data``.
    """
    # bm25s's own formulas (private names: pyproject keeps bm25s below 0.4, and a test compares the
    # matrix with build_index_from_ids, so a change there fails loudly)
    from bm25s.scoring import _build_idf_array, _select_idf_scorer, _select_tfc_scorer

    offsets = np.asarray(offsets, dtype=np.int64)
    tokens = np.asarray(tokens, dtype=np.int64)
    documents = len(offsets) - 1
    lengths = np.diff(offsets)
    document_of = np.repeat(np.arange(documents, dtype=np.int64), lengths)
    pairs, frequency = np.unique(tokens * max(documents, 1) + document_of, return_counts=True)  # by term, then document
    term, document = np.divmod(pairs, max(documents, 1))
    document_frequency = np.bincount(term, minlength=terms)
    idf = _build_idf_array(dict(enumerate(document_frequency.tolist())), n_docs=documents,
                           compute_idf_fn=_select_idf_scorer(METHOD), dtype="float32")
    tfc = _select_tfc_scorer(METHOD)(tf_array=frequency.astype(np.float32), l_d=lengths[document],
                                     l_avg=float(lengths.mean()) if documents else 1.0, k1=k1, b=b)
    index_type = np.int32 if len(pairs) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(terms + 1, dtype=index_type)
    np.cumsum(document_frequency, out=indptr[1:])
    return {"data": (idf[term] * tfc).astype(np.float32), "indices": document.astype(np.int32), "indptr": indptr,
            "num_docs": documents}
