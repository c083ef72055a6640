"""The documents of an index and their vectors, in memory: writes, reads and search.

:class:`DocumentCollection` keeps each document's text and metadata in the docstore and its
unit vector in an index backend, under the same int64 id; its subclass
:class:`~m2v_search.index.VectorIndex` adds the directory it is saved to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.errors import ArgumentError, ArgumentTypeError
from m2v_search.index import factory as factories
from m2v_search.index.backends import Backend, SearchOptions
from m2v_search.index.docstore import DocStore, content_hash, utf8
from m2v_search.index.errors import IndexClosedError, NoModelError
from m2v_search.index.records import Hit, Record, UpsertStats, coerce_record, id_list
from m2v_search.index.results import RERANK_FACTOR, SMALL_BATCH, Rows, omp_threads, rerank_exact, to_hits
from m2v_search.index.vectors import checked_vectors, normalize_rows, unit_vectors

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

GIVEN_VECTORS_KEY = "given_vectors"  # docstore meta: some vectors were passed in, not encoded from the text


class DocumentCollection:
    """Documents (docstore) and their unit vectors (backend), kept consistent; thread-safe.

    Args:
        model: The model that encodes texts, or None for vectors computed elsewhere.
        backend: The backend holding the vectors.
        docstore: The documents.
    """

    def __init__(self, model: StaticModel | None, backend: Backend, docstore: DocStore) -> None:
        self.model = model  # None: the vectors come from elsewhere
        self.dim = backend.dim
        self._backend = backend
        self._docs = docstore
        self._lock = threading.RLock()
        self._count = docstore.count()
        self._reranks: bool | None = None
        self.nprobe: int | None = None
        self.ef_search: int | None = None
        self.rescore: int | None = None
        self.last_upsert = UpsertStats()

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        """Release the docstore; any later use raises IndexClosedError (closing again does nothing)."""
        with self._lock:
            if not isinstance(self._docs, _ClosedDocStore):
                self._docs.close()
                self._docs = _ClosedDocStore()  # type: ignore[assignment]

    def _check_open(self) -> None:
        if isinstance(self._docs, _ClosedDocStore):
            self._docs.fail()

    @property
    def backend(self) -> Backend:
        """The backend holding the vectors."""
        return self._backend

    def embed(self, texts: list[str], hint: str = "pass vectors instead of texts", batch_size: int | None = None
              ) -> np.ndarray:
        """Unit vectors of ``texts`` from the index's model (what insert and query use).

        Args:
            texts: The texts.
            hint: What to do instead, for the error of an index without a model.
            batch_size: Texts the model encodes at a time (None: its default).

        Returns:
            (len(texts), dim) float32 unit rows.

        Raises:
            NoModelError: This index holds vectors computed elsewhere and has no model (a ValueError).
        """
        if self.model is None:
            raise NoModelError(f"this index holds vectors computed elsewhere ({self.dim} dims, no model) "
                             f"and cannot encode text: {hint}")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if batch_size is None:
            return unit_vectors(self.model.encode(texts, normalize=False))
        return unit_vectors(self.model.encode(texts, batch_size=batch_size, normalize=False))

    # ------------------------------------------------------------------ writes
    def upsert(self, records: Iterable[Record | dict[str, Any]], *, vectors: np.ndarray | None = None,
               batch_size: int = 4096) -> list[str]:
        """Add or replace documents; an id already stored is replaced (unchanged content is skipped).

        :attr:`last_upsert` tells how many were added, replaced and skipped.

        Args:
            records: Records, or dicts with ``id``, ``text`` and optional ``metadata``.
            vectors: (n, dim) vectors to store instead of encoding the texts (required for an
                index of vectors computed elsewhere); normalised to unit length.
            batch_size: Records encoded and written at a time.

        Returns:
            The ids, in order.

        Raises:
            ValueError: A bad record, ``batch_size`` < 1, or vectors of the wrong shape or count,
                or holding NaN or infinity. A list (or records given with vectors) is checked whole
                before anything is written; a stream (an iterator) is checked a batch at a time, so
                the batches before a bad record stay written.
            TypeError: A record of the wrong type.
            IndexClosedError: The index was closed.
        """
        self._check_open()
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if vectors is not None:
            vectors = checked_vectors(vectors, self.dim)
        stats = UpsertStats()
        ids: list[str] = []
        offset = 0
        for items in _checked_batches(records, batch_size, None if vectors is None else len(vectors)):
            self._upsert_batch(items, None if vectors is None else vectors[offset:offset + len(items)], stats)
            offset += len(items)
            ids.extend(item[0] for item in items)
        self.last_upsert = stats
        return ids

    def _upsert_batch(self, items: list[tuple[str, str, str]], vectors: np.ndarray | None,
                      stats: UpsertStats) -> None:
        items, vectors, firsts = _last_of_each_id(items, vectors, stats)
        # a row whose vector was given records so in its hash: the same text sent later without a
        # vector is then a change (the model's vector replaces the caller's), not a repeat
        hashes = [("given:" if vectors is not None else "") + content_hash(text, meta) for _, text, meta in items]
        with self._lock:
            existing = self._docs.lookup([item[0] for item in items])
            changed = [i for i, (item, digest) in enumerate(zip(items, hashes))  # given vectors may differ
                       if vectors is not None or existing.get(item[0], (None, None))[1] != digest]
            _count_against_stored(items, hashes, firsts, existing, vectors is not None, stats)
            if not changed:
                return
            replaced = [existing[items[i][0]][0] for i in changed if items[i][0] in existing]
            if vectors is None:
                new_vectors = self.embed([items[i][1] for i in changed], "pass the documents' vectors (vectors=)",
                                         batch_size=len(changed))
            else:
                new_vectors = vectors[changed]  # a float32 copy (checked_vectors + fancy indexing)
                normalize_rows(new_vectors)
                if self._docs.get_meta(GIVEN_VECTORS_KEY) is None:
                    self._docs.set_meta(GIVEN_VECTORS_KEY, "1")
                    self._reranks = None
            with _all_or_nothing(self, "an upsert"):
                iids = self._docs.next_iids(len(changed))
                if replaced:
                    self._remove_vectors(np.asarray(replaced, dtype=np.int64))
                self._docs.insert([(int(iid), items[i][0], items[i][1], items[i][2], hashes[i])
                                   for iid, i in zip(iids, changed)])
                self._backend.add(iids, new_vectors)
                self._docs.commit()
                self._count += len(changed) - len(replaced)

    def _remove_vectors(self, iids: np.ndarray) -> None:
        """Remove documents' vectors from the backend and their rows from the docstore (uncommitted)."""
        tombstoned = self._backend.remove(iids)
        if len(tombstoned):
            self._docs.add_tombstones(tombstoned.tolist())
        self._docs.delete_iids(iids.tolist())

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id; unknown ids are ignored.

        Args:
            ids: The ids, in a list (a single str, or no iterable, is a TypeError).

        Returns:
            How many documents were removed.
        """
        wanted = list(dict.fromkeys(id_list(ids)))
        with self._lock:
            found = self._docs.lookup(wanted)
            if not found:
                return 0
            iids = np.asarray(sorted(iid for iid, _ in found.values()), dtype=np.int64)
            with _all_or_nothing(self, "a delete"):
                self._remove_vectors(iids)
                self._docs.commit()
                self._count -= len(iids)
            return len(iids)

    def clear(self) -> None:
        """Remove every document (the index kind and model stay)."""
        with self._lock, _all_or_nothing(self, "clear()"):
            self._docs.clear()
            self._docs.delete_meta(GIVEN_VECTORS_KEY)
            self._docs.commit()
            self._backend = self._backend.reset()
            self._count = 0
            self._reranks = None

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str]) -> list[Record]:
        """The stored documents among ``ids``, in the order asked (unknown ids left out).

        Args:
            ids: The ids, in a list (a single str, or no iterable, is a TypeError).

        Returns:
            The records found.
        """
        wanted = id_list(ids)
        with self._lock:
            rows = self._docs.rows_by_id(wanted)
        return [Record(doc_id, rows[doc_id][1], json.loads(rows[doc_id][2])) for doc_id in wanted if doc_id in rows]

    def ids(self, filter: dict[str, Any] | None = None) -> list[str]:
        """The ids of the stored documents whose metadata match ``filter``, in insertion order.

        Args:
            filter: A metadata filter (see :mod:`m2v_search.index.filters`); None: every document.

        Returns:
            The ids (no vectors are searched).
        """
        with self._lock:
            return self._docs.match_ids(filter)

    def search(self, query: str | np.ndarray, k: int = 10, *, filter: dict[str, Any] | None = None,
               include_vectors: bool = False, nprobe: int | None = None, ef_search: int | None = None,
               rescore: int | None = None) -> list[Hit]:
        """The ``k`` documents closest to ``query``, best first.

        Args:
            query: A text (encoded with the index's model) or a 1-D vector of ``dim`` values
                (normalised to unit length).
            k: Most hits to return (fewer when fewer documents match).
            filter: A metadata filter, applied inside the vector search (see
                :mod:`m2v_search.index.filters`); None: every document.
            include_vectors: Attach each hit's unit vector (``Hit.vector``).
            nprobe: IVF lists to probe (default: the index's, see :attr:`search_params`).
            ef_search: HNSW candidate list size (default: the index's).
            rescore: Candidates re-scored per query by binary indexes (default: the index's).

        Returns:
            The hits; ``Hit.score`` is the cosine similarity.

        Raises:
            ValueError: ``k`` < 1, ``nprobe`` or ``ef_search`` out of range (1 to 2**20), a vector
                of the wrong shape, a bad filter, or a text query on an index without a model.
            TypeError: ``query`` is neither a str nor a numpy array.
        """
        return self.search_batch(one_query(query, self.dim), k, filter=filter, include_vectors=include_vectors,
                                 nprobe=nprobe, ef_search=ef_search, rescore=rescore)[0]

    def search_batch(self, queries: Sequence[str] | np.ndarray, k: int = 10, *, filter: dict[str, Any] | None = None,
                     include_vectors: bool = False, nprobe: int | None = None, ef_search: int | None = None,
                     rescore: int | None = None) -> list[list[Hit]]:
        """The ``k`` documents closest to each query, best first.

        Args:
            queries: A list of texts, or an (n, dim) array of vectors (normalised to unit length).
            k: Most hits per query.
            filter: A metadata filter, applied inside the vector search; None: every document.
            include_vectors: Attach each hit's unit vector (``Hit.vector``).
            nprobe: IVF lists to probe (default: the index's, see :attr:`search_params`).
            ef_search: HNSW candidate list size (default: the index's).
            rescore: Candidates re-scored per query by binary indexes (default: the index's).

        Returns:
            One list of hits per query; none for a query whose vector is all zeros (a text with no
            token the model knows, such as only emoji or zero-width characters).

        Raises:
            ValueError: ``k`` < 1, ``nprobe`` or ``ef_search`` out of range (1 to 2**20), vectors
                of the wrong shape, a bad filter, or text queries on an index without a model.
            TypeError: ``queries`` is a str, or holds something other than str.
            IndexClosedError: The index was closed.
        """
        self._check_open()
        options = self._search_options(k, nprobe, ef_search, rescore)
        matrix = _query_matrix(queries, self.dim, self.embed)
        with self._lock:
            matched, available = allowed_ids(self._docs, self._count, filter)
            if len(matrix) == 0 or available == 0:
                return [[] for _ in range(len(matrix))]
            k_eff = int(min(k, available))
            rerank = self._rerank_enabled()
            k_search = int(min(k_eff * RERANK_FACTOR, available)) if rerank else k_eff
            with omp_threads(1 if len(matrix) < SMALL_BATCH else None):
                scores, labels = self._backend.search(matrix, k_search, matched, options)
            rows = self._docs.rows_by_iid(np.unique(labels[labels >= 0]).tolist())
            if rerank:
                scores, labels = rerank_exact(matrix, labels, rows, k_eff, self.embed)
            vectors = stored_vectors_for(self._backend, rows, self.embed) if include_vectors else None
        hits = to_hits(scores, labels, rows, vectors)
        for position in np.flatnonzero(~matrix.any(axis=1)):  # no token the model knows (emoji, zero-width
            hits[position] = []  # characters) or a zero vector: no document is nearer than another
        return hits

    def _search_options(self, k: Any, nprobe: int | None, ef_search: int | None,
                        rescore: int | None) -> SearchOptions:
        """The backend's search parameters (the index's where not given), after checking k and rescore."""
        check_k(k)
        factories.check_rescore(rescore)
        return SearchOptions(nprobe=self.nprobe if nprobe is None else nprobe,
                             ef_search=self.ef_search if ef_search is None else ef_search,
                             rescore=self.rescore if rescore is None else rescore)

    def _rerank_enabled(self) -> bool:
        """Whether searches re-score candidates exactly: lossy codes (PQ, SQ) of vectors the model
        recomputes from the stored texts (a few candidates cost far less than storing them all)."""
        if self._reranks is None:
            self._reranks = (self._backend.lossy and not self._backend.rescores_internally
                             and self._vectors_from_model())
        return self._reranks

    def _vectors_from_model(self) -> bool:
        """Whether every stored vector is the model's encoding of its stored text."""
        return self.model is not None and self._docs.get_meta(GIVEN_VECTORS_KEY) is None


def one_query(query: str | np.ndarray, dim: int) -> Any:
    """A single query as a batch of one: ``[text]`` or a (1, dim) array.

    Raises:
        ValueError: a vector that is not 1-D, or an empty or white-space text.
        TypeError: neither a str nor a numpy array.
    """
    if isinstance(query, np.ndarray):
        if query.ndim != 1:
            raise ArgumentError(f"a query vector must be 1-D with {dim} values, got shape {query.shape}", "query")
        return query[None, :]
    if isinstance(query, str):
        _require_words(query, "the query", "query")
        return [query]
    raise ArgumentTypeError(f"query must be a str or a 1-D numpy array, got {type(query).__name__}", "query")


def check_k(k: Any) -> None:
    """Refuse a ``k`` (results per query) that is not a positive integer (ValueError naming it)."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ArgumentError(f"k must be a positive integer, got {k!r}", "k")


def allowed_ids(docs: DocStore, count: int, filter: dict[str, Any] | None
                ) -> tuple[np.ndarray | None, int]:
    """The sorted ids ``filter`` allows (None: all ``count`` live documents) and how many."""
    matched = docs.match_iids(filter) if filter else None
    return matched, count if matched is None else len(matched)


def _query_matrix(queries: Sequence[str] | np.ndarray, dim: int, embed: Callable[..., np.ndarray]) -> np.ndarray:
    """Unit query vectors of a list of texts or an (n, dim) array, with errors naming the bad input."""
    if isinstance(queries, np.ndarray):
        return unit_vectors(checked_vectors(queries, dim, "query vectors", param="queries"))
    texts = checked_texts(queries)
    return embed(texts, "pass query vectors") if texts else np.zeros((0, dim), np.float32)


def checked_texts(queries: Sequence[str]) -> list[str]:
    """A batch of text queries as a list, each checked to be a str.

    Raises:
        TypeError: ``queries`` is a single str or not iterable, or holds something other than str.
        ValueError: a query is empty or only white space (it has no words: every score would be 0
            and the hits an arbitrary choice).
    """
    if isinstance(queries, str):
        raise ArgumentTypeError("search_batch takes a list of queries; use search() for one", "queries")
    try:
        texts = list(queries)
    except TypeError:
        raise ArgumentTypeError(f"queries must be a list of str, got {type(queries).__name__}", "queries") from None
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise ArgumentTypeError(f"queries[{position}] is {type(text).__name__}, expected str", "queries")
        _require_words(text, f"queries[{position}]", "queries")
    return texts


def _require_words(text: str, name: str, param: str) -> None:
    """Refuse an empty or white-space query (it has no words, so every score would be 0 and the
    hits an arbitrary choice), and one holding a lone surrogate (in every search mode alike)."""
    if not text.strip():
        raise ArgumentError(f"{name} is {'empty' if not text else 'only white space'}: there is nothing to "
                            "search for", param)
    utf8(text, name)


def stored_vectors_for(backend: Backend, rows: Rows, embed: Callable[..., np.ndarray]) -> dict[int, np.ndarray]:
    """Stored vectors of ``rows``; texts of those the backend cannot reconstruct are encoded again."""
    vectors = backend.reconstruct(list(rows))
    missing = [iid for iid in rows if iid not in vectors]
    if missing:  # index without reconstruction: encode the stored texts again
        encoded = embed([rows[i][1] for i in missing],
                             f"its {backend.spec.factory!r} index cannot return the stored vectors")
        vectors.update(zip(missing, encoded))
    return vectors


def _count_against_stored(items: list[tuple[str, str, str]], hashes: list[str], firsts: dict[str, tuple[str, str]],
                          existing: dict[str, tuple[int, str]], given: bool, stats: UpsertStats) -> None:
    """Count each record of a collapsed batch against the stored document, as one upsert after
    another would: a repeated id by its first record (``firsts``), given vectors always as a change."""
    for (doc_id, _, _), digest in zip(items, hashes):
        first = ("given:" if given else "") + content_hash(*firsts[doc_id]) if doc_id in firsts else digest
        if doc_id not in existing:
            stats.added += 1
        elif given or existing[doc_id][1] != first:
            stats.replaced += 1
        else:
            stats.skipped += 1


def _last_of_each_id(items: list[tuple[str, str, str]], vectors: np.ndarray | None, stats: UpsertStats
                     ) -> tuple[list[tuple[str, str, str]], np.ndarray | None, dict[str, tuple[str, str]]]:
    """The records of a batch with duplicate ids collapsed (the last one of each id wins), and the
    (text, metadata) of the first record of each repeated id. Each record that follows another of
    its id counts in ``stats`` as one upsert after another would (replaced, or skipped when it has
    the same content); the caller counts the first one against the stored document, so the counts
    do not depend on where batches end."""
    last = {item[0]: position for position, item in enumerate(items)}
    if len(last) == len(items):
        return items, vectors, {}
    previous: dict[str, int] = {}
    firsts: dict[str, tuple[str, str]] = {}
    for position, (doc_id, text, metadata) in enumerate(items):
        if doc_id in previous:
            _, earlier_text, earlier_metadata = items[previous[doc_id]]
            firsts.setdefault(doc_id, (earlier_text, earlier_metadata))
            same = vectors is None and (earlier_text, earlier_metadata) == (text, metadata)
            stats.skipped += same
            stats.replaced += not same
        previous[doc_id] = position
    keep = sorted(last.values())
    return [items[i] for i in keep], None if vectors is None else vectors[keep], firsts


@contextmanager
def _all_or_nothing(collection: DocumentCollection, what: str) -> Iterator[None]:
    """Run the steps of one change of the docstore and the backend (under the collection's lock).

    The steps cannot be undone one by one (a backend forgets a removed vector), so a change
    interrupted midway (an exception, Ctrl-C) closes the collection: nothing half-changed can be
    searched or saved, and what was saved before stays as it was on disk.
    """
    try:
        yield
    except BaseException as error:
        with suppress(Exception):
            collection._docs.close()
        collection._docs = _ClosedDocStore(  # type: ignore[assignment]
            f"{what} failed midway ({type(error).__name__}: {error}), so this index was closed rather than "
            "left half-changed; what was saved is intact: open it again")
        raise


class _ClosedDocStore:
    """Stands in for the docstore of a closed index: every use raises IndexClosedError."""

    def __init__(self, reason: str = "this index is closed (close() was called, or its with block ended); "
                                     "open it again to use it") -> None:
        self.reason = reason

    def fail(self) -> None:
        raise IndexClosedError(self.reason)

    def __getattr__(self, name: str) -> Any:
        self.fail()

    def close(self) -> None:
        """Closing again does nothing."""


def _checked_batches(records: Iterable[Record | dict[str, Any]], batch_size: int, expected: int | None
                     ) -> Iterator[list[tuple[str, str, str]]]:
    """Coerced records in batches. A list or tuple, or records given with ``expected`` vectors, is
    coerced (and counted) whole before the first batch is yielded; an iterator one batch at a time."""
    if expected is not None or isinstance(records, (list, tuple)):
        items = [coerce_record(record, position) for position, record in enumerate(records)]
        if expected is not None and len(items) != expected:
            raise ValueError(f"{len(items)} records but {expected} vectors")
        for start in range(0, len(items), batch_size):
            yield items[start:start + batch_size]
        return
    iterator, offset = iter(records), 0
    while batch := list(islice(iterator, batch_size)):
        yield [coerce_record(record, offset + position) for position, record in enumerate(batch)]
        offset += len(batch)
