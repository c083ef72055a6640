"""The lexical (BM25) part of an index: a word-level analyzer and a bm25s index kept up to date.

BM25 scoring is bm25s's (Lucene variant); this module owns what bm25s does not do:

- **Analysis** (:mod:`m2v_search.index.analyzer`): lowercase words, stopwords removed, Snowball
  stemming through PyStemmer; the language is configurable (any PyStemmer algorithm).
- **Changes**: bm25s builds an index in one go. Deletions here are tombstones (a document's
  weight is zeroed at query time, as Lucene keeps deleted documents in its statistics until a
  merge); additions wait in a pending list, and the next search or save *merges*: it rebuilds
  the score matrix from the stored token ids (no re-analysis of old texts), so the index
  written to disk never carries tombstones or pending documents.
- **Files**: :meth:`LexicalIndex.to_files` returns plain bytes (a JSON header with the vocabulary
  and an ``.npz`` of arrays; nothing pickled) for the caller to write, checksum and commit in
  the same generation as the rest of the index; :meth:`LexicalIndex.from_files` parses the bytes
  that were verified.
- **Filters**: :meth:`LexicalIndex.search` takes the sorted int ids allowed (the documents a
  metadata filter matched) and scores only those.

Documents are keyed by the docstore's int ids (``iid``), the same ids FAISS holds.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from m2v_search.index.analyzer import DEFAULT_LANGUAGE, SEPARATOR_WORD, Analyzer
from m2v_search.index.bm25_matrix import METHOD, score_matrix
from m2v_search.index.errors import IndexCorruptError

FORMAT = "m2v-search/lexical"
FORMAT_VERSION = 1
HEADER_FILE = "lexical.json"
ARRAYS_FILE = "lexical.npz"
_ROWS = 1 << 40  # pending positions are stored as segment * _ROWS + row
_MOST_PENDING_SEGMENTS = 1024  # pending segments joined into one past this (bounds a merge's per-segment work)
_STOPWORD_CODE = -1
_SEPARATOR_CODE = -2
_ARRAY_NAMES = ("doc_iids", "doc_offsets", "doc_tokens", "score_data", "score_indices", "score_indptr")


@dataclass
class _Segment:
    """Documents as flat arrays: document ``i`` (int id ``iids[i]``) has the term ids
    ``tokens[offsets[i]:offsets[i + 1]]``; ``live[i]`` is False once it is deleted or replaced."""

    iids: np.ndarray
    offsets: np.ndarray
    tokens: np.ndarray
    live: np.ndarray

    @classmethod
    def empty(cls) -> _Segment:
        return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, bool))

    @classmethod
    def concatenate(cls, segments: list[_Segment]) -> _Segment:
        """One segment holding the documents of ``segments`` (tombstones included)."""
        bases = np.cumsum([0] + [len(segment.tokens) for segment in segments])
        offsets = np.concatenate([[0]] + [segment.offsets[1:] + base for segment, base in zip(segments, bases)])
        return cls(np.concatenate([segment.iids for segment in segments]), offsets.astype(np.int64),
                   np.concatenate([segment.tokens for segment in segments]),
                   np.concatenate([segment.live for segment in segments]))

    def delete(self, iids: np.ndarray) -> int:
        """Tombstone the live documents among ``iids`` (sorted, unique; this segment's iids must be
        sorted too, as the merged segment's are); returns how many there were."""
        positions = np.searchsorted(self.iids, iids)
        positions = positions[positions < len(self.iids)]
        positions = positions[self.iids[positions] == iids[:len(positions)]]
        hit = positions[self.live[positions]]
        self.live[hit] = False
        return len(hit)

    def live_documents(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(iids, starts, lengths)`` of the live documents (starts index ``tokens``)."""
        kept = np.flatnonzero(self.live)
        return self.iids[kept], self.offsets[kept], self.offsets[kept + 1] - self.offsets[kept]


def _offsets(counts: np.ndarray) -> np.ndarray:
    """Offsets of documents of ``counts`` terms each: ``[0, c0, c0 + c1, ...]``."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _positions(segment: _Segment, number: int) -> dict[int, int]:
    """``{iid: number * _ROWS + row}`` of the live documents of ``segment``, the ``number``-th
    pending one (one int per document: no tuple per document on a build's path)."""
    rows = np.flatnonzero(segment.live)
    return dict(zip(segment.iids[rows].tolist(), (rows + number * _ROWS).tolist()))


def _gather(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([tokens[s:s + n] for s, n in zip(starts, lengths)])`` without the Python loop."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=tokens.dtype)
    ends = np.cumsum(lengths)
    positions = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)
    return tokens[positions]


class LexicalIndex:
    """BM25 over the analyzed texts of the documents, keyed by int ids.

    Args:
        analyzer: the analyzer of documents and queries (default: English).
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
    """

    def __init__(self, analyzer: Analyzer | None = None, *, k1: float = 1.5, b: float = 0.75) -> None:
        self.analyzer = analyzer or Analyzer()
        self.k1 = float(k1)
        self.b = float(b)
        self._vocab: dict[str, int] = {}  # term -> term id, in id order (dicts keep insertion order)
        # word -> term id of its stem, or a negative code for a stopword or the separator (a cache, not saved)
        self._word_codes: dict[str, int] = {SEPARATOR_WORD: _SEPARATOR_CODE}
        self._merged = _Segment.empty()  # sorted by iid; its BM25 matrix lives in self._retriever
        self._retriever: Any = None
        self._pending: list[_Segment] = []  # additions waiting for the next merge
        self._pending_at: dict[int, int] = {}  # iid -> its pending segment * _ROWS + row, for each live one
        self._terms_in_matrix = 0  # vocabulary size the merged segment was built with

    @property
    def _doc_iids(self) -> np.ndarray:
        """Int ids of the merged documents: row ``i`` of the BM25 matrix is document ``_doc_iids[i]``."""
        return self._merged.iids

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        return int(self._merged.live.sum()) + len(self._pending_at)

    @property
    def dirty(self) -> bool:
        """True when additions wait, tombstones are set, or terms were added since the last merge
        (also by a text deleted before any merge): a merge would change the index."""
        return bool(self._pending) or not bool(self._merged.live.all()) or len(self._vocab) != self._terms_in_matrix

    def iids(self) -> np.ndarray:
        """Sorted int ids of the documents indexed (what ``verify`` compares with the docstore)."""
        pending = np.fromiter(self._pending_at, dtype=np.int64, count=len(self._pending_at))
        return np.unique(np.concatenate([self._merged.iids[self._merged.live], pending]))

    # ------------------------------------------------------------------ writes
    def add(self, iids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        """Index ``texts`` under ``iids``; an iid already indexed is replaced (and an iid given
        twice keeps its last text).

        Raises:
            ValueError: ``iids`` and ``texts`` differ in length.
        """
        iids = np.array(iids, dtype=np.int64).reshape(-1)  # a copy: the pending segment keeps it
        if len(iids) != len(texts):
            raise ValueError(f"{len(iids)} ids but {len(texts)} texts")
        if not len(iids):
            return
        offsets, tokens = self._term_ids(texts)  # first: a text it refuses leaves the old documents
        self.delete(iids)
        live = np.zeros(len(iids), dtype=bool)
        _, last = np.unique(iids[::-1], return_index=True)
        live[len(iids) - 1 - last] = True
        if len(self._pending) >= _MOST_PENDING_SEGMENTS:  # many small adds (a server's): fewer, larger segments
            self._pending = [_Segment.concatenate(self._pending)]
            self._pending_at = _positions(self._pending[0], 0)
        self._pending.append(_Segment(iids, offsets, tokens, live))
        self._pending_at.update(_positions(self._pending[-1], len(self._pending) - 1))

    def delete(self, iids: Sequence[int] | np.ndarray) -> int:
        """Remove documents (unknown ids are ignored); returns how many were indexed."""
        iids = np.unique(np.asarray(iids, dtype=np.int64).reshape(-1))
        if not len(iids):
            return 0
        removed = self._merged.delete(iids)
        for iid in self._pending_at.keys() & iids.tolist():  # a set operation: a build's fresh ids cost no loop
            segment, row = divmod(self._pending_at.pop(iid), _ROWS)
            self._pending[segment].live[row] = False
            removed += 1
        return removed

    def clear(self) -> None:
        """Forget every document (the analyzer and BM25 parameters stay)."""
        self.__init__(self.analyzer, k1=self.k1, b=self.b)  # type: ignore[misc]

    def _term_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets, tokens)``: the term ids of each text (see :class:`_Segment`), adding new terms
        to the vocabulary. Whole-batch: one regular-expression pass, one dictionary lookup per
        word, and each distinct new word stemmed once."""
        found = self.analyzer.joined_words(texts) if len(texts) else []
        if found is None:
            return self._term_ids_one_by_one(texts)
        codes = self._word_codes
        self._learn(set(found).difference(codes))
        ids = np.fromiter(map(codes.__getitem__, found), dtype=np.int64, count=len(found))
        text_of = np.cumsum(ids == _SEPARATOR_CODE)
        kept = ids >= 0
        return _offsets(np.bincount(text_of[kept], minlength=len(texts))), ids[kept].astype(np.int32)

    def _term_ids_one_by_one(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_term_ids` for texts that hold the separator word (so it is a real word here)."""
        documents = [self.analyzer.words(text) for text in texts]
        words = [word for document in documents for word in document]
        self._learn(set(words).difference(self._word_codes))
        codes = self._word_codes
        if SEPARATOR_WORD in words:  # its code marks text boundaries: here it is a real word with a term
            separator_term = self._vocab.setdefault(self.analyzer.stems([SEPARATOR_WORD])[0], len(self._vocab))
            codes = {**codes, SEPARATOR_WORD: separator_term}
        tokens = np.array([codes[word] for word in words], np.int32)
        return _offsets(np.array([len(document) for document in documents])), tokens

    def _learn(self, words: set[str]) -> None:
        """Give each new word its code: the term id of its stem, or :data:`_STOPWORD_CODE`."""
        codes, vocab = self._word_codes, self._vocab
        stopwords = self.analyzer.stopwords_among(words)
        codes.update(dict.fromkeys(stopwords, _STOPWORD_CODE))
        new = list(words - stopwords)
        for word, term in zip(new, self.analyzer.stems(new)):
            codes[word] = vocab.setdefault(term, len(vocab))

    def merge(self, build_scores: bool = True) -> None:
        """Fold pending additions in and drop tombstoned documents: rebuild the BM25 matrix.

        Term ids are renumbered to the terms still in use, so the vocabulary never grows with
        deleted documents.

        Args:
            build_scores: Build the BM25 matrix too (False: only fold the documents in, as a
                build's checkpoints do; the next search or save builds it once).
        """
        if not self.dirty:
            if build_scores and self._retriever is None:
                self._build_retriever()  # folded already (a checkpoint's merge): only the matrix is missing
            return
        everything = _Segment.concatenate([self._merged, *self._pending])
        iids, starts, lengths = everything.live_documents()
        order = np.argsort(iids, kind="stable")
        flat = _gather(everything.tokens, starts[order], lengths[order])
        used = np.flatnonzero(np.bincount(flat, minlength=len(self._vocab)))
        if len(used) < len(self._vocab):
            flat = self._drop_unused_terms(used)[flat]
        self._merged = _Segment(iids[order], _offsets(lengths[order]), flat.astype(np.int32),
                                np.ones(len(iids), dtype=bool))
        self._pending, self._pending_at = [], {}
        self._terms_in_matrix = len(self._vocab)
        if build_scores:
            self._build_retriever()
        else:
            self._retriever = None

    def _drop_unused_terms(self, used: np.ndarray) -> np.ndarray:
        """Keep only the terms ``used`` (sorted term ids), renumbered from 0 in the same order;
        returns old term id -> new term id (-1 for a dropped term)."""
        terms = list(self._vocab)
        self._vocab = {terms[old]: new for new, old in enumerate(used.tolist())}
        renumbered = np.full(len(terms), -1, dtype=np.int64)
        renumbered[used] = np.arange(len(used))
        self._word_codes = {word: old if old < 0 else int(renumbered[old])
                            for word, old in self._word_codes.items() if old < 0 or renumbered[old] >= 0}
        return renumbered

    def _build_retriever(self) -> None:
        self._retriever = None
        if len(self._merged.iids) and self._vocab:
            matrix = score_matrix(self._merged.offsets, self._merged.tokens, len(self._vocab), k1=self.k1, b=self.b)
            self._attach_scores(matrix["data"], matrix["indices"], matrix["indptr"])

    def _attach_scores(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> None:
        import bm25s

        retriever = bm25s.BM25(k1=self.k1, b=self.b, method=METHOD)
        retriever.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": len(self._merged.iids)}
        retriever.nonoccurrence_array = None
        self._retriever = retriever

    # ------------------------------------------------------------------ search
    def search(self, query: str, k: int = 10, *, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents for ``query`` by BM25, best first.

        Args:
            query: the query text (analyzed like the documents).
            k: how many results at most.
            allowed: sorted int ids the results must come from (a metadata filter's matches);
                None allows every document.

        Returns:
            ``(iids, scores)``: int64 ids and float32 BM25 scores; only documents sharing a
            term with the query (a query of only stopwords or unknown words returns none).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self._pending or (self._retriever is None and len(self._doc_iids)):
            self.merge()  # also builds the matrix of a part loaded without one (a build's checkpoint)
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        if self._retriever is None:
            return empty
        term_ids = sorted({self._vocab[t] for t in self.analyzer.analyze(query) if t in self._vocab})
        if not term_ids:
            return empty
        mask = self._weight_mask(allowed)
        if mask is not None and not mask.any():
            return empty
        scores = self._retriever.get_scores_from_ids(term_ids, weight_mask=mask)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            matched = matched[np.argpartition(-scores[matched], k - 1)[:k]]
        order = np.lexsort((self._doc_iids[matched], -scores[matched]))
        best = matched[order]
        return self._doc_iids[best], scores[best].astype(np.float32)

    def _weight_mask(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None if self._merged.live.all() else self._merged.live.astype(np.float32)
        allowed = np.asarray(allowed, dtype=np.int64)
        return (self._merged.live & np.isin(self._doc_iids, allowed, assume_unique=True)).astype(np.float32)

    # ------------------------------------------------------------------ files
    def to_files(self, scores: bool = True) -> dict[str, bytes]:
        """The index as ``{file name: bytes}`` (merged first): a JSON header and an ``.npz``.

        Args:
            scores: Include the BM25 matrix (False: the documents' terms only, for a build's
                checkpoints: building the matrix at every checkpoint made a build quadratic; a
                part loaded without it builds it on its first search).
        """
        self.merge(build_scores=scores)
        header = {"format": FORMAT, "version": FORMAT_VERSION, "analyzer": self.analyzer.config(),
                  "bm25": {"k1": self.k1, "b": self.b, "method": METHOD}, "documents": len(self._doc_iids),
                  "terms": list(self._vocab), "scores": self._retriever is not None}
        retriever_scores = self._retriever.scores if self._retriever is not None else {
            "data": np.zeros(0, np.float32), "indices": np.zeros(0, np.int32),
            "indptr": np.zeros(len(self._vocab) + 1, np.int32)}
        buffer = io.BytesIO()
        np.savez(buffer, doc_iids=self._merged.iids, doc_offsets=self._merged.offsets, doc_tokens=self._merged.tokens,
                 score_data=retriever_scores["data"], score_indices=retriever_scores["indices"],
                 score_indptr=retriever_scores["indptr"])
        encoded = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
        return {HEADER_FILE: encoded, ARRAYS_FILE: buffer.getvalue()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], source: str = "lexical index") -> LexicalIndex:
        """Parse what :meth:`to_files` wrote (the caller verified the bytes' checksums).

        Raises:
            IndexCorruptError: a file is missing, not this format, or inconsistent (``source`` names it).
        """
        try:
            header = json.loads(files[HEADER_FILE].decode("utf-8", "surrogatepass"))
            with np.load(io.BytesIO(files[ARRAYS_FILE]), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in _ARRAY_NAMES}
        except KeyError as error:
            raise IndexCorruptError(f"{source}: missing {error.args[0]}") from None
        except (ValueError, OSError, UnicodeDecodeError, zipfile.BadZipFile, RecursionError) as error:
            raise IndexCorruptError(f"{source}: unreadable ({error})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
            raise IndexCorruptError(f"{source}: not a {FORMAT} v{FORMAT_VERSION} file")
        try:
            analyzer = Analyzer.from_config(header["analyzer"])
            index = cls(analyzer, k1=header["bm25"]["k1"], b=header["bm25"]["b"])
            terms = [str(t) for t in header["terms"]]
        except (KeyError, TypeError, ValueError) as error:
            raise IndexCorruptError(f"{source}: bad header ({error})") from None
        index._load_arrays(arrays, terms, source, scores=header.get("scores", True) is not False)
        return index

    def _load_arrays(self, arrays: dict[str, np.ndarray], terms: list[str], source: str, *,
                     scores: bool = True) -> None:
        iids, offsets, tokens = arrays["doc_iids"], arrays["doc_offsets"], arrays["doc_tokens"]
        data, indices, indptr = arrays["score_data"], arrays["score_indices"], arrays["score_indptr"]
        consistent = (iids.ndim == offsets.ndim == tokens.ndim == 1 and len(offsets) == len(iids) + 1
                      and (not len(offsets) or (offsets[0] == 0 and offsets[-1] == len(tokens)))
                      and bool(np.all(np.diff(offsets) >= 0)) and bool(np.all(np.diff(iids) > 0))
                      and (not len(tokens) or (0 <= tokens.min() and tokens.max() < len(terms)))
                      and len(indptr) == len(terms) + 1 and len(data) == len(indices)
                      and (not len(indices) or (0 <= indices.min() and indices.max() < len(iids))))
        if not consistent:
            raise IndexCorruptError(f"{source}: inconsistent arrays")
        self._vocab = {term: i for i, term in enumerate(terms)}
        if len(self._vocab) != len(terms):
            raise IndexCorruptError(f"{source}: repeated terms in the vocabulary")
        self._merged = _Segment(iids.astype(np.int64), offsets.astype(np.int64), tokens.astype(np.int32),
                                np.ones(len(iids), dtype=bool))
        self._terms_in_matrix = len(self._vocab)
        if len(iids) and scores:
            self._attach_scores(data.astype(np.float32), indices.astype(np.int32), indptr)


# ---------------------------------------------------------------------- in an index directory
MANIFEST_KEY = "lexical"
FILE_PATTERNS = ("lexical.*.json", "lexical.*.npz")


def generation_files(generation: str) -> dict[str, str]:
    """The file names of the lexical part of a generation: ``{HEADER_FILE: name, ARRAYS_FILE: name}``."""
    return {HEADER_FILE: f"lexical.{generation}.json", ARRAYS_FILE: f"lexical.{generation}.npz"}


def manifest_entry(index: LexicalIndex, names: dict[str, str]) -> dict[str, Any]:
    """What the manifest records of the lexical part (its files are listed, with checksums, in ``files``)."""
    return {"engine": "bm25s", "header": names[HEADER_FILE], "arrays": names[ARRAYS_FILE],
            "analyzer": index.analyzer.config(), "documents": len(index)}


def from_manifest(manifest: dict[str, Any], contents: dict[str, bytes], directory: Any) -> LexicalIndex | None:
    """The lexical part of an index directory from its verified file contents; None when it has none.

    Args:
        manifest: The index's manifest (an index saved without a lexical part has no ``lexical`` key).
        contents: ``{file name: verified bytes}`` of the files the manifest lists.
        directory: The index directory (for messages).

    Raises:
        IndexCorruptError: the entry is malformed, names a file not listed (so not verified), or
            the files do not parse.
    """
    entry = manifest.get(MANIFEST_KEY)
    if entry is None:
        orphans = sorted(name for name in contents if name.startswith(f"{MANIFEST_KEY}."))
        if orphans:  # a damaged manifest must not quietly turn hybrid search into dense search
            raise IndexCorruptError(f"{directory}: the manifest lists the lexical files {', '.join(orphans)} but has "
                                    f"no '{MANIFEST_KEY}' section")
        return None
    if not isinstance(entry, dict):
        raise IndexCorruptError(f"{directory}: manifest field 'lexical' must be an object")
    files: dict[str, bytes] = {}
    for role, key in ((HEADER_FILE, "header"), (ARRAYS_FILE, "arrays")):
        name = entry.get(key)
        if not isinstance(name, str) or name not in contents:
            raise IndexCorruptError(f"{directory}: manifest field 'lexical.{key}' names {name!r}, which is not "
                                    "listed (and so not verified) in files")
        files[role] = contents[name]
    index = LexicalIndex.from_files(files, source=f"{directory}/{entry['arrays']}")
    documents = (manifest.get("counts") or {}).get("documents")
    if isinstance(documents, int) and len(index) != documents:
        raise IndexCorruptError(f"{directory}: the lexical part indexes {len(index)} documents, the manifest "
                                f"counts {documents}")
    return index


def from_rows(rows: Any, analyzer: Analyzer | None = None) -> LexicalIndex:
    """A lexical index over ``(iid, text)`` pairs (e.g. every row of a docstore), merged.

    Args:
        rows: An iterable of ``(iid, text)``.
        analyzer: The analyzer (default: English).
    """
    index = LexicalIndex(analyzer)
    batch_iids: list[int] = []
    batch_texts: list[str] = []
    for iid, text in rows:
        batch_iids.append(int(iid))
        batch_texts.append(text)
        if len(batch_iids) >= 10_000:
            index.add(batch_iids, batch_texts)
            batch_iids, batch_texts = [], []
    if batch_iids:
        index.add(batch_iids, batch_texts)
    index.merge()
    return index


def new_part(setting: bool | str) -> LexicalIndex | None:
    """The empty lexical part a new index gets.

    Args:
        setting: True (English), a Snowball language name, or False (no lexical part).

    Raises:
        ValueError: An unknown language.
    """
    if setting is False:
        return None
    return LexicalIndex(Analyzer(DEFAULT_LANGUAGE if setting is True else setting))


def generation_contents(index: LexicalIndex | None, generation: str, scores: bool = True) -> dict[str, bytes]:
    """``{file name: bytes}`` of the lexical part in ``generation`` (empty without a lexical part;
    ``scores=False``: without the BM25 matrix, see :meth:`LexicalIndex.to_files`)."""
    if index is None:
        return {}
    names = generation_files(generation)
    return {names[role]: data for role, data in index.to_files(scores).items()}


def add_to_manifest(manifest: dict[str, Any], index: LexicalIndex | None, generation: str,
                    file_entry: Any, directory: Any) -> dict[str, Any]:
    """``manifest`` with the lexical part's entry and its files (checksummed by ``file_entry(path)``)."""
    if index is not None:
        names = generation_files(generation)
        manifest[MANIFEST_KEY] = manifest_entry(index, names)
        manifest["files"].update({name: file_entry(directory / name) for name in names.values()})
    return manifest
