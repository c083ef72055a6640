"""StaticModel: a token-vector table plus a tokenizer; encode = tokenize, then mean-pool."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, overload

import numpy as np
from tokenizers import Tokenizer

from m2v_search.errors import InvalidInputError
from m2v_search.fingerprint import table_fingerprint
from m2v_search.model_io import DEFAULT_MAX_LENGTH, UNSET, StaticModelIO, check_normalize
from m2v_search.pooling import l2_normalize, mean_pool, token_vectors
from m2v_search.quantization import normalize_dtype_name
from m2v_search.tokenization import TokenizerBackend, select_backend, unknown_token_id

DEFAULT_BATCH_SIZE = 4096
_TOKENIZE_THREADS = max(1, min(2, os.cpu_count() or 1))
_UNSET: Any = UNSET


class StaticModel(StaticModelIO):
    """A static embedding model.

    ``encode`` tokenizes texts (no special tokens), drops unknown tokens, and averages the
    token vectors (each scaled by its optional per-token weight). A text with no known
    token gets a zero vector, also when ``normalize`` is on.

    The arguments up to ``max_length`` are Model2Vec's, in its positional order.

    Args:
        vectors: the embedding table, one row per token (or per cluster with ``token_mapping``).
        tokenizer: a Hugging Face ``tokenizers.Tokenizer``.
        config: metadata kept in ``config.json``.
        normalize: default for ``encode``: unit-length output vectors.
        base_model_name: the teacher this model came from, for the model card.
        language: language codes, for the model card.
        weights: optional per-token weights (length = vocabulary size).
        token_mapping: optional token id -> table row (vocabulary-quantised models).
        max_length: default token limit per text (None: no limit).
        tokenizer_backend: "auto", "hf" or "nanotoken" (see ``m2v_search.tokenization``).

    Loading, saving, hub and ONNX methods come from ``StaticModelIO`` (``m2v_search.model_io``).
    """

    def __init__(
        self,
        vectors: np.ndarray,
        tokenizer: Tokenizer,
        config: dict[str, Any] | None = None,
        normalize: bool = False,
        base_model_name: str | None = None,
        language: list[str] | None = None,
        weights: np.ndarray | None = None,
        token_mapping: np.ndarray | None = None,
        max_length: int | None = DEFAULT_MAX_LENGTH,
        *,
        tokenizer_backend: str | None = None,
    ) -> None:
        vocabulary_size = tokenizer.get_vocab_size()
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D (tokens x dim), got shape {vectors.shape}")
        if token_mapping is None and vectors.shape[0] != vocabulary_size:
            raise ValueError(f"{vectors.shape[0]} vectors for a tokenizer of {vocabulary_size} tokens")
        if vectors.shape[1] == 0:
            raise ValueError(f"vectors have no dimensions (shape {vectors.shape})")
        vocabulary = tokenizer.get_vocab(with_added_tokens=True)
        rows = vectors.shape[0] if token_mapping is None else len(token_mapping)
        largest_id = max(vocabulary.values(), default=-1)
        if largest_id >= rows:  # pooling would read past the table
            raise ValueError(f"the tokenizer has token id {largest_id}, but there are only {rows} "
                             f"{'vectors' if token_mapping is None else 'token_mapping entries'}")
        normalize_dtype_name(vectors.dtype)
        self.embedding = vectors
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        self.token_mapping = None if token_mapping is None else np.asarray(token_mapping, dtype=np.int64)
        self.tokenizer = tokenizer
        self.config: dict[str, Any] = dict(config or {})
        self.normalize = bool(normalize)
        self.base_model_name = base_model_name
        self.language = language
        self.max_length = _check_max_length(max_length)
        self._table = np.ascontiguousarray(vectors, dtype=np.float32)
        self._backend: TokenizerBackend = select_backend(tokenizer, tokenizer_backend)
        self.unk_token_id = unknown_token_id(tokenizer)
        self._median_token_length = int(np.median([len(token) for token in vocabulary])) if vocabulary else 1
        self._fingerprint_cache: tuple[tuple[Any, ...], str] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Number of dimensions of the output vectors."""
        return int(self.embedding.shape[1])

    @property
    def vocabulary_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def embedding_dtype(self) -> str:
        """Storage dtype of the table: float32, float16 or int8."""
        return self.embedding.dtype.name

    @property
    def tokenizer_backend(self) -> str:
        """Name of the tokenizer backend in use ("hf" or a fast exact one)."""
        return self._backend.name

    @property
    def fingerprint(self) -> str:
        """sha256 of what ``encode`` reads: identifies the vectors produced (cached per set of parts)."""
        parts = (self.embedding, self.weights, self.token_mapping, self.tokenizer)
        cached = self._fingerprint_cache
        if cached is None or not all(now is then for now, then in zip(parts, cached[0])):
            digest = table_fingerprint(*parts, unknown=self.unk_token_id, canonical=True)
            self._fingerprint_cache = cached = (parts, digest)
        return cached[1]

    @property
    def tokens(self) -> list[str]:
        """The vocabulary, in id order (as Model2Vec's ``StaticModel.tokens``)."""
        vocabulary = self.tokenizer.get_vocab(with_added_tokens=True)
        return [token for token, _ in sorted(vocabulary.items(), key=lambda item: item[1])]

    @property
    def median_token_length(self) -> int:
        """Median length in characters of the vocabulary's tokens (texts are cut at max_length times this)."""
        return self._median_token_length

    @property
    def vocabulary_quantization(self) -> int | None:
        """Number of table rows when tokens share rows through ``token_mapping``, else None."""
        return int(self.embedding.shape[0]) if self.token_mapping is not None else None

    # ------------------------------------------------------------------ encoding
    def tokenize(self, texts: list[str], max_length: int | None = _UNSET) -> list[list[int]]:
        """Token ids per text, as ``encode`` sees them (truncated, unknown tokens dropped)."""
        ids, offsets = self.tokenize_flat(texts, max_length)
        return [chunk.tolist() for chunk in np.split(ids, offsets[1:-1])]

    def tokenize_flat(self, texts: Sequence[str], max_length: int | None = _UNSET) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of ``texts`` as ``encode`` sees them, in CSR layout: ``ids`` of every text one
        after another, and ``offsets`` (len(texts) + 1) so that text i has ``ids[offsets[i]:offsets[i+1]]``."""
        return self._tokenize_flat(list(texts), self.max_length if max_length is _UNSET else max_length)

    def _tokenize_flat(self, texts: list[str], max_length: int | None,
                       start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of ``texts`` (the batch that starts at position ``start`` of the caller's texts).

        Raises:
            InvalidInputError: a text is not valid Unicode (a lone surrogate); names its position.
        """
        originals = texts
        if max_length is not None:
            _check_max_length(max_length)
            # Like Model2Vec: cut very long texts before tokenizing (the tokens kept are the same
            # whenever the cut text still has max_length tokens).
            limit = max_length * self._median_token_length
            texts = [text[:limit] if len(text) > limit else text for text in texts]
        try:
            ids, offsets = self._backend.encode_flat(texts, max_length)
        except UnicodeError:  # looked for only now: valid texts pay nothing
            raise _not_unicode(originals, start) from None
        if self.unk_token_id is not None:
            keep = ids != self.unk_token_id
            if not keep.all():
                kept_before = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
                ids, offsets = ids[keep], kept_before[offsets]
        return ids, offsets

    @overload
    def encode(self, sentences: str, *args: Any, **kwargs: Any) -> np.ndarray: ...
    @overload
    def encode(self, sentences: Iterable[str], *args: Any, **kwargs: Any) -> np.ndarray: ...

    def encode(
        self,
        sentences: str | Iterable[str],
        show_progress_bar: bool = False,
        max_length: int | None = _UNSET,
        batch_size: int = DEFAULT_BATCH_SIZE,
        use_multiprocessing: bool = True,
        multiprocessing_threshold: int = 10_000,
        *,
        normalize: bool | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed texts: contiguous float32 of shape (n, dim), or (dim,) for a single str.

        The arguments and their positional order are Model2Vec's. Empty texts, and texts with
        only unknown tokens, give zero vectors.

        Args:
            sentences: a str, or any iterable of str (a generator is consumed in batches).
            show_progress_bar: a tqdm bar on stderr.
            max_length: token limit per text (None: no limit; unset: the model's ``max_length``).
            batch_size: texts per batch (memory stays per batch).
            use_multiprocessing: True (default) tokenizes upcoming batches in worker threads while
                the current one is pooled; False keeps all work on the calling thread.
            multiprocessing_threshold: accepted for Model2Vec compatibility; no effect (threads
                are used whenever there is more than one batch).
            normalize: unit-length vectors (None: the model's ``normalize``).
            **kwargs: other keywords are accepted and ignored, as in Model2Vec (a warning names them).

        Returns:
            The vectors.

        Raises:
            TypeError: an item is not a str (the message gives its position).
        """
        if kwargs:
            _warn_ignored(kwargs)
        if isinstance(sentences, str):
            return self.encode([sentences], max_length=max_length, batch_size=batch_size, normalize=normalize)[0]
        chunks = self.iter_encode(sentences, batch_size=batch_size, max_length=max_length, normalize=normalize,
                                  show_progress_bar=show_progress_bar, threads=use_multiprocessing)
        if hasattr(sentences, "__len__"):  # write batches straight into the result: no second copy
            return _filled(chunks, sentences, self.dim)
        collected = list(chunks)
        if not collected:
            return np.zeros((0, self.dim), dtype=np.float32)
        return collected[0] if len(collected) == 1 else np.concatenate(collected)

    def iter_encode(
        self,
        texts: Iterable[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int | None = _UNSET,
        normalize: bool | None = None,
        show_progress_bar: bool = False,
        threads: bool = True,
    ) -> Iterator[np.ndarray]:
        """Yield one (batch, dim) float32 array per batch of ``texts``; memory stays per batch.

        Upcoming batches are tokenized in worker threads (the tokenizers release the GIL)
        while the current one is pooled; at most a few batches are in memory at once.
        ``threads=False`` does all the work on the calling thread.
        """
        max_length = self.max_length if max_length is _UNSET else max_length
        normalize = self.normalize if check_normalize(normalize) is None else normalize
        total = len(texts) if hasattr(texts, "__len__") else None  # type: ignore[arg-type]
        progress = _progress(total, show_progress_bar)
        batches = _checked_batches(texts, batch_size)

        def pooled(ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
            if progress is not None:
                progress.update(len(offsets) - 1)
            return self.pool(ids, offsets, normalize)

        if not threads or (total is not None and total <= batch_size):  # nothing to overlap
            start = 0
            for batch in batches:
                yield pooled(*self._tokenize_flat(batch, max_length, start))
                start += len(batch)
            if progress is not None:
                progress.close()
            return
        with ThreadPoolExecutor(max_workers=_TOKENIZE_THREADS, thread_name_prefix="m2v-tokenize") as pool:
            pending: deque[Future[tuple[np.ndarray, np.ndarray]]] = deque()
            start = 0
            for batch in batches:
                pending.append(pool.submit(self._tokenize_flat, batch, max_length, start))
                start += len(batch)
                if len(pending) > _TOKENIZE_THREADS:
                    yield pooled(*pending.popleft().result())
            while pending:
                yield pooled(*pending.popleft().result())
        if progress is not None:
            progress.close()

    def pool(self, ids: np.ndarray, offsets: np.ndarray, normalize: bool | None = None) -> np.ndarray:
        """``encode``'s vectors of texts already tokenized by ``tokenize_flat`` (for a caller that needs
        the token ids too and should not tokenize twice).

        Args:
            ids: ``tokenize_flat``'s ids.
            offsets: ``tokenize_flat``'s offsets.
            normalize: unit-length vectors (None: the model's default).

        Returns:
            A (len(offsets) - 1, dim) float32 array.
        """
        vectors = mean_pool(ids, offsets, self._table, self.weights, self.token_mapping)
        if self.normalize if normalize is None else normalize:
            l2_normalize(vectors)
        return vectors

    def encode_as_sequence(
        self,
        sentences: str | Iterable[str],
        *,
        max_length: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress_bar: bool = False,
        use_multiprocessing: bool = True,
        multiprocessing_threshold: int = 10_000,
    ) -> list[np.ndarray] | np.ndarray:
        """Per-token vectors (``(n_tokens, dim)`` float32) of each text, e.g. for chunkers.

        Model2Vec's signature. Truncates only when ``max_length`` is given (the model's own
        ``max_length`` does not apply, as in Model2Vec).

        Args:
            sentences: a str (gives one array) or an iterable of str (gives a list).
            max_length: token limit per text (None: no limit).
            batch_size: texts tokenized at once.
            show_progress_bar: a tqdm bar on stderr.
            use_multiprocessing: accepted for Model2Vec compatibility; no effect.
            multiprocessing_threshold: accepted for Model2Vec compatibility; no effect.

        Returns:
            One array per text; texts without known tokens give ``(0, dim)`` arrays.
        """
        if isinstance(sentences, str):
            return self.encode_as_sequence([sentences], max_length=max_length)[0]  # type: ignore[return-value]
        return _token_vector_lists(self, sentences, max_length, batch_size, show_progress_bar)

    def __repr__(self) -> str:
        return (f"StaticModel(name={self.name!r}, dim={self.dim}, vocabulary={self.vocabulary_size}, "
                f"dtype={self.embedding_dtype}, normalize={self.normalize}, tokenizer={self.tokenizer_backend})")


def _filled(chunks: Iterator[np.ndarray], sentences: Any, dim: int) -> np.ndarray:
    """The batches written into one (len(sentences), dim) array.

    Raises:
        TypeError: iterating ``sentences`` gave more or fewer items than its ``len()`` (a pandas
            DataFrame iterates over its column names): rows would be left unwritten or dropped.
    """
    expected = len(sentences)
    out = np.empty((expected, dim), dtype=np.float32)
    start = 0
    for chunk in chunks:
        if start + len(chunk) > expected:  # more items than len() said
            start = -1
            break
        out[start : start + len(chunk)] = chunk
        start += len(chunk)
    if start == expected:
        return out
    hint = (" (iterating a pandas DataFrame gives its column names: pass one column, df['text'])"
            if hasattr(sentences, "columns") else "")
    raise TypeError(f"sentences: len() says {expected} items, but iterating it gave a different number{hint}; "
                    "pass a list of str")


def _warn_ignored(kwargs: dict[str, Any]) -> None:
    import warnings

    warnings.warn(f"StaticModel.encode ignores the keyword arguments {sorted(kwargs)} (accepted for "
                  "Model2Vec compatibility)", UserWarning, stacklevel=3)


def _check_max_length(max_length: Any) -> Any:
    """``max_length`` itself when it is None or a positive int; ValueError otherwise."""
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer))
                                   or max_length < 1):
        raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
    return max_length


def _checked_batches(texts: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    """Batches of ``texts``; a non-str item raises TypeError naming its position. A ``batch_size``
    that is not a positive int, bytes or a mapping raise at once, before any text is read (and
    before the caller compares ``batch_size`` with the count of texts)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError("texts must be str or an iterable of str, got bytes; decode it first")
    if isinstance(texts, Mapping):  # iterating would encode the keys and drop the values silently
        raise TypeError(f"texts must be str or an iterable of str, got a mapping ({type(texts).__name__}); "
                        "pass its values or keys as a list")
    return _batches_of(iter(texts), batch_size)


def _batches_of(iterator: Iterator[Any], batch_size: int) -> Iterator[list[str]]:
    start = 0
    while True:
        batch = list(islice(iterator, batch_size))
        if not batch:
            return
        if not all(type(text) is str for text in batch):
            for position, text in enumerate(batch, start):
                if not isinstance(text, str):
                    raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
        yield batch
        start += len(batch)


def _not_unicode(texts: list[str], start: int) -> InvalidInputError:
    """The error for a batch the tokenizer could not take: the first text holding a lone surrogate."""
    for position, text in enumerate(texts, start):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            return InvalidInputError(f"texts[{position}] holds a lone surrogate (U+{ord(text[error.start]):04X} at "
                                     f"character {error.start}), which is not valid Unicode text")
    return InvalidInputError(f"texts[{start}:{start + len(texts)}] could not be tokenized: not valid Unicode text")


def _token_vector_lists(model: StaticModel, texts: Iterable[str], max_length: int | None, batch_size: int,
                        show_progress_bar: bool) -> list[np.ndarray]:
    """``encode_as_sequence`` for an iterable of texts: one (n_tokens, dim) array per text."""
    result: list[np.ndarray] = []
    total = len(texts) if hasattr(texts, "__len__") else None  # type: ignore[arg-type]
    progress = _progress(total, show_progress_bar)
    for batch in _checked_batches(texts, batch_size):
        ids, offsets = model._tokenize_flat(batch, max_length, len(result))
        result.extend(token_vectors(ids, offsets, model._table, model.weights, model.token_mapping))
        if progress is not None:
            progress.update(len(batch))
    if progress is not None:
        progress.close()
    return result


def _progress(total: int | None, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="texts", desc="Encoding", smoothing=0.1)
