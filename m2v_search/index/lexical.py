"""The lexical (BM25) part of an index: a word-level analyzer and a bm25s index kept up to date.

BM25 scoring is bm25s's (Lucene variant); this module owns what bm25s does not do:

- **Analysis**: lowercase words of two or more characters, stopwords removed, Snowball
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
import re
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from m2v_search.index.errors import IndexCorruptError

FORMAT = "m2v-search/lexical"
FORMAT_VERSION = 1
HEADER_FILE = "lexical.json"
ARRAYS_FILE = "lexical.npz"
DEFAULT_LANGUAGE = "english"
_WORD = re.compile(r"(?u)\b\w\w+\b")
_ARRAY_NAMES = ("doc_iids", "doc_offsets", "doc_tokens", "score_data", "score_indices", "score_indptr")


def _stopword_lists() -> dict[str, Sequence[str]]:
    from bm25s import stopwords as lists

    return {"english": lists.STOPWORDS_EN, "german": lists.STOPWORDS_GERMAN, "dutch": lists.STOPWORDS_DUTCH,
            "french": lists.STOPWORDS_FRENCH, "spanish": lists.STOPWORDS_SPANISH,
            "portuguese": lists.STOPWORDS_PORTUGUESE, "italian": lists.STOPWORDS_ITALIAN,
            "russian": lists.STOPWORDS_RUSSIAN, "swedish": lists.STOPWORDS_SWEDISH,
            "norwegian": lists.STOPWORDS_NORWEGIAN, "turkish": lists.STOPWORDS_TURKISH,
            "danish": lists.STOPWORDS_DANISH}


def _stemmer_module() -> Any:
    try:
        import bm25s  # noqa: F401 - checked here so that a missing package fails before any work
        import Stemmer
    except ImportError as error:
        raise ImportError(f"the lexical (BM25) part of an index needs bm25s and PyStemmer ({error}): "
                          "pip install 'm2v-search[index]', or create the index without one "
                          "(lexical=False, m2v-index build --no-lexical)") from None
    return Stemmer


def languages() -> list[str]:
    """Languages the analyzer can stem (PyStemmer's Snowball algorithms)."""
    return sorted(_stemmer_module().algorithms())


class Analyzer:
    """Text -> search terms: lowercase words, minus stopwords, Snowball-stemmed.

    Args:
        language: a PyStemmer algorithm name (``english``, ``german``, ``french``, ...).
        stem: stem the words (False keeps them whole).
        stopwords: drop the language's stopwords (bm25s's lists; languages without one keep all words).

    Raises:
        ValueError: ``language`` is not a Snowball language PyStemmer knows.
        ImportError: bm25s or PyStemmer is not installed (the message says how to install them).
    """

    def __init__(self, language: str = DEFAULT_LANGUAGE, *, stem: bool = True, stopwords: bool = True) -> None:
        Stemmer = _stemmer_module()  # noqa: N806 - the module's own name
        if not isinstance(language, str) or language not in Stemmer.algorithms():
            raise ValueError(f"unknown analyzer language {language!r}; use one of {', '.join(languages())}")
        self.language = language
        self.stem = bool(stem)
        self.stopwords = bool(stopwords)
        self._stemmer = Stemmer.Stemmer(language) if stem else None
        self._stopwords = frozenset(_stopword_lists().get(language, ())) if stopwords else frozenset()

    def config(self) -> dict[str, Any]:
        """The settings that :meth:`from_config` turns back into the same analyzer."""
        return {"language": self.language, "stem": self.stem, "stopwords": self.stopwords}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Analyzer:
        """The analyzer described by :meth:`config`'s output."""
        return cls(config.get("language", DEFAULT_LANGUAGE), stem=bool(config.get("stem", True)),
                   stopwords=bool(config.get("stopwords", True)))

    def words(self, text: str) -> list[str]:
        """The words of one text before stemming: lowercased, stopwords dropped, in order."""
        stopwords = self._stopwords
        return [word for word in _WORD.findall(text.lower()) if word not in stopwords]

    def stems(self, words: list[str]) -> list[str]:
        """The terms of ``words`` (their stems, or the words themselves without stemming)."""
        return self._stemmer.stemWords(words) if self._stemmer is not None else words

    def analyze(self, text: str) -> list[str]:
        """The terms of one text, in order (repeats kept: they are term frequencies)."""
        return self.stems(self.words(text))


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
        self._word_ids: dict[str, int] = {}  # word -> term id of its stem (a cache, not saved)
        # merged segment (sorted by iid); its BM25 matrix lives in self._scores
        self._doc_iids = np.zeros(0, dtype=np.int64)
        self._doc_offsets = np.zeros(1, dtype=np.int64)
        self._doc_tokens = np.zeros(0, dtype=np.int32)
        self._live = np.zeros(0, dtype=bool)
        self._retriever: Any = None
        self._pending: dict[int, np.ndarray] = {}  # iid -> token ids, waiting for the next merge
        self._terms_in_matrix = 0  # vocabulary size the merged segment was built with

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        return int(self._live.sum()) + len(self._pending)

    @property
    def dirty(self) -> bool:
        """True when additions wait, tombstones are set, or terms were added since the last merge
        (also by a text deleted before any merge): a merge would change the index."""
        return bool(self._pending) or not bool(self._live.all()) or len(self._vocab) != self._terms_in_matrix

    def iids(self) -> np.ndarray:
        """Sorted int ids of the documents indexed (what ``verify`` compares with the docstore)."""
        merged = self._doc_iids[self._live]
        pending = np.fromiter(self._pending, dtype=np.int64, count=len(self._pending))
        return np.unique(np.concatenate([merged, pending]))

    # ------------------------------------------------------------------ writes
    def add(self, iids: Sequence[int] | np.ndarray, texts: Sequence[str]) -> None:
        """Index ``texts`` under ``iids``; an iid already indexed is replaced.

        Raises:
            ValueError: ``iids`` and ``texts`` differ in length.
        """
        iids = np.asarray(iids, dtype=np.int64).reshape(-1)
        if len(iids) != len(texts):
            raise ValueError(f"{len(iids)} ids but {len(texts)} texts")
        self.delete(iids)
        for iid, term_ids in zip(iids.tolist(), self._term_ids(texts)):
            self._pending[iid] = term_ids

    def delete(self, iids: Sequence[int] | np.ndarray) -> int:
        """Remove documents (unknown ids are ignored); returns how many were indexed."""
        iids = np.asarray(iids, dtype=np.int64).reshape(-1)
        removed = sum(self._pending.pop(iid, None) is not None for iid in iids.tolist())
        if len(self._doc_iids) and len(iids):
            positions = np.searchsorted(self._doc_iids, iids)
            positions = positions[positions < len(self._doc_iids)]
            positions = positions[np.isin(self._doc_iids[positions], iids)]
            removed += int(self._live[positions].sum())
            self._live[positions] = False
        return removed

    def clear(self) -> None:
        """Forget every document (the analyzer and BM25 parameters stay)."""
        self.__init__(self.analyzer, k1=self.k1, b=self.b)  # type: ignore[misc]

    def _term_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Term ids of each text; each distinct word is stemmed once (a word -> term id cache)."""
        documents = [self.analyzer.words(text) for text in texts]
        cache, vocab = self._word_ids, self._vocab
        unseen = list({word for words in documents for word in words if word not in cache})
        for word, term in zip(unseen, self.analyzer.stems(unseen)):
            cache[word] = vocab.setdefault(term, len(vocab))
        return [np.array([cache[word] for word in words], dtype=np.int32) for words in documents]

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
        lengths = np.diff(self._doc_offsets)[self._live]
        kept = [self._doc_tokens[self._doc_offsets[i]:self._doc_offsets[i + 1]] for i in np.flatnonzero(self._live)]
        iids = np.concatenate([self._doc_iids[self._live],
                               np.fromiter(self._pending, dtype=np.int64, count=len(self._pending))])
        documents = kept + list(self._pending.values())
        lengths = np.concatenate([lengths, [len(d) for d in self._pending.values()]]).astype(np.int64)
        order = np.argsort(iids, kind="stable")
        flat = np.concatenate([documents[i] for i in order]) if documents else np.zeros(0, dtype=np.int32)
        used, remapped = np.unique(flat, return_inverse=True)
        terms = list(self._vocab)
        self._vocab = {terms[old]: new for new, old in enumerate(used.tolist())}
        renumbered = np.full(len(terms), -1, dtype=np.int64)
        renumbered[used] = np.arange(len(used))
        self._word_ids = {word: int(renumbered[old]) for word, old in self._word_ids.items() if renumbered[old] >= 0}
        self._doc_iids = iids[order]
        self._doc_offsets = np.concatenate([[0], np.cumsum(lengths[order])]).astype(np.int64)
        self._doc_tokens = remapped.astype(np.int32).reshape(-1)
        self._live = np.ones(len(self._doc_iids), dtype=bool)
        self._pending = {}
        self._terms_in_matrix = len(self._vocab)
        if build_scores:
            self._build_retriever()
        else:
            self._retriever = None

    def _build_retriever(self) -> None:
        import bm25s

        self._retriever = None
        if not len(self._doc_iids) or not self._vocab:
            return
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        documents = [self._doc_tokens[self._doc_offsets[i]:self._doc_offsets[i + 1]].tolist()
                     for i in range(len(self._doc_iids))]
        retriever.scores = retriever.build_index_from_ids(unique_token_ids=list(range(len(self._vocab))),
                                                          corpus_token_ids=documents, show_progress=False)
        self._retriever = retriever

    def _attach_scores(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> None:
        import bm25s

        retriever = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        retriever.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": len(self._doc_iids)}
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
            return None if self._live.all() else self._live.astype(np.float32)
        allowed = np.asarray(allowed, dtype=np.int64)
        return (self._live & np.isin(self._doc_iids, allowed, assume_unique=True)).astype(np.float32)

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
                  "bm25": {"k1": self.k1, "b": self.b, "method": "lucene"}, "documents": len(self._doc_iids),
                  "terms": list(self._vocab), "scores": self._retriever is not None}
        retriever_scores = self._retriever.scores if self._retriever is not None else {
            "data": np.zeros(0, np.float32), "indices": np.zeros(0, np.int32),
            "indptr": np.zeros(len(self._vocab) + 1, np.int32)}
        buffer = io.BytesIO()
        np.savez(buffer, doc_iids=self._doc_iids, doc_offsets=self._doc_offsets, doc_tokens=self._doc_tokens,
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
        self._doc_iids = iids.astype(np.int64)
        self._doc_offsets = offsets.astype(np.int64)
        self._doc_tokens = tokens.astype(np.int32)
        self._live = np.ones(len(iids), dtype=bool)
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
