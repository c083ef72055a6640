"""Partitioned indexes: one index directory per partition key, searched together.

For corpora that come in natural parts (a language, a tenant, a month), as autofaiss'
``build_partitioned_indexes`` does: each part gets its own index under ``ROOT/<key>/`` (local
folder or fsspec URL), and ``ROOT/partitions.json``, written last, lists them. A search asks
every partition (or the ones named) for its ``k`` best hits and keeps the ``k`` best overall:
all partitions share one model and cosine scores, so their scores compare directly, and with
exact (flat) partitions the result is the one a single index over the whole corpus gives.

Each partition is an ordinary index: open, update or rebuild it alone with ``VectorIndex`` and
the ``m2v-index`` commands; ``partitions.json`` only records which keys exist.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2v_search.index.errors import IndexCorruptError, IndexNotFoundError, OutputDirectoryError
from m2v_search.index.manifest import MAX_MANIFEST_BYTES, fsync_dir, read_plain_file
from m2v_search.index.remote import RemoteStorageError
from m2v_search.index.sources import expand_sources
from m2v_search.index.urls import filesystem, is_url, local_path, redact, storage_errors
from m2v_search.index.records import Hit
from m2v_search.index.store import VectorIndex

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index.build import BuildReport

PARTITIONS_NAME = "partitions.json"
FORMAT_NAME = "m2v-search-partitioned-index"
FORMAT_VERSION = 1
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._=-]{0,127}")  # fullmatch: `$` would let a trailing newline in


@dataclasses.dataclass
class PartitionHit(Hit):
    """A ``Hit`` and the key of the partition it came from."""

    partition: str = ""


def hive_partitions(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], key: str
                    ) -> dict[str, list[str]]:
    """Group corpus files by the ``key=value`` folder in their path (Hive layout), by value.

    Args:
        inputs: paths, URLs or globs (``s3://bucket/corpus/*/*.parquet``).
        key: the folder key (``lang`` for ``.../lang=en/part-0.parquet``).

    Returns:
        value -> the files of that partition, in name order.

    Raises:
        CorpusError: an input names no file.
        ValueError: a file has no ``key=value`` folder.
    """
    groups: dict[str, list[str]] = {}
    for source in expand_sources(inputs):
        values = [part.split("=", 1)[1] for part in re.split(r"[/\\]", source) if part.startswith(f"{key}=")]
        if not values:
            raise ValueError(f"{redact(source)} has no {key}=VALUE folder in its path")
        groups.setdefault(values[-1], []).append(source)
    return groups


def build_partitioned_indexes(partitions: Mapping[str, Any], output_dir: str | os.PathLike[str], *,
                              engine: str = "local", **build_options: Any) -> dict[str, BuildReport]:
    """Build one index per partition under ``output_dir/<key>``, then write ``partitions.json``.

    Args:
        partitions: key -> corpus inputs (paths, URLs, globs, or a list of them).
        output_dir: the root folder or fsspec URL.
        engine: ``local`` (``build_index`` in this process) or ``dask`` (``build_index_dask``).
        **build_options: passed to the builder (``model``, ``index``, ``text_field``, ``client``...).

    Returns:
        key -> the build report of that partition.

    Raises:
        ValueError: no partitions, a key unfit for a folder name, or an unknown engine.
        OutputDirectoryError: ``output_dir`` holds a ``partitions.json`` of another format.
    """
    if not partitions:
        raise ValueError("no partitions given")
    for key in partitions:
        if not _KEY.fullmatch(str(key)):
            raise ValueError(f"partition key {key!r} cannot name a folder (use letters, digits, '.', '_', '-', '=')")
        if str(key) == PARTITIONS_NAME:
            raise ValueError(f"partition key {key!r} is the name of the listing file; choose another")
    if engine not in ("local", "dask"):
        raise ValueError(f"engine must be 'local' or 'dask', got {engine!r}")
    root = os.fspath(output_dir).rstrip("/")
    _refuse_foreign_listing(root)
    reports = {str(key): _build_one(inputs, _join(root, str(key)), engine, build_options)
               for key, inputs in partitions.items()}
    listing = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
               "partitions": {key: {"path": key, "documents": report.documents} for key, report in reports.items()}}
    _write_listing(root, listing)
    return reports


def _build_one(inputs: Any, output: str, engine: str, options: dict[str, Any]) -> BuildReport:
    if engine == "dask":
        from m2v_search.distributed import build_index_dask

        return build_index_dask(inputs, output, **options)
    from m2v_search.index.build import build_index
    from m2v_search.index.corpus import CorpusOptions
    from m2v_search.index.sources import open_corpus

    options = dict(options)  # shared by every partition: take the corpus fields out of a copy
    fields = {name: options.pop(name) for name in ("id_field", "text_field", "metadata_fields", "skip_invalid")
              if name in options}
    from m2v_search.index.remote import build_target

    corpus = open_corpus(inputs, CorpusOptions(**fields))
    with build_target(output) as local:
        report = build_index(corpus, local, **options)
    report.directory = redact(output)
    return report


class PartitionedIndex:
    """Several partition indexes searched as one (see the module docstring)."""

    def __init__(self, indexes: dict[str, VectorIndex], root: str) -> None:
        self.indexes = indexes
        self.root = root

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, model: Any = None, partitions: Sequence[str] | None = None,
             cache_dir: str | os.PathLike[str] | None = None, allow_model_mismatch: bool = False
             ) -> PartitionedIndex:
        """Open every partition listed in ``path/partitions.json`` (or only ``partitions``).

        Args:
            path: the root folder or fsspec URL (URL partitions are mirrored into ``cache_dir``).
            model: as in ``VectorIndex.open``; by default the model of the first partition, which
                every other partition must share (else ModelMismatchError).
            partitions: the keys to open (default all).
            cache_dir: the local cache of URL partitions (default ``remote.default_cache_dir()``).
            allow_model_mismatch: as in ``VectorIndex.open``: accept ``model`` though a partition
                was built with another one.

        Returns:
            The opened partitioned index.

        Raises:
            IndexNotFoundError: no ``partitions.json`` at ``path``, or an unknown key.
        """
        root = local_path(os.fspath(path)).rstrip("/")  # file:///x is the folder /x
        listed = _read_listing(root)["partitions"]
        keys = list(listed) if partitions is None else list(partitions)
        unknown = [key for key in keys if key not in listed]
        if unknown:
            raise IndexNotFoundError(f"{redact(root)} has no partition {', '.join(map(repr, unknown))} "
                                     f"(it has {', '.join(listed)})")
        indexes: dict[str, VectorIndex] = {}
        try:
            for key in keys:
                location = _partition_location(root, key, listed[key]["path"])
                if is_url(location):
                    from m2v_search.index.remote import download_index

                    location = str(download_index(location, cache_dir))
                try:
                    indexes[key] = VectorIndex.open(location, model=model,
                                                    allow_model_mismatch=allow_model_mismatch)
                except (IndexNotFoundError, IndexCorruptError) as error:  # say which listed partition it is
                    raise type(error)(f"partition {key!r} of {redact(root)}/{PARTITIONS_NAME}: {error}") from None
                model = model if model is not None else indexes[key].model  # one model for all partitions
        except BaseException:
            for index in indexes.values():
                index.close()
            raise
        return cls(indexes, root)

    def __len__(self) -> int:
        return sum(len(index) for index in self.indexes.values())

    def __enter__(self) -> PartitionedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def keys(self) -> list[str]:
        """The keys of the open partitions."""
        return list(self.indexes)

    def close(self) -> None:
        """Close every partition."""
        for index in self.indexes.values():
            index.close()

    def search(self, query: str, k: int = 10, *, partitions: Sequence[str] | None = None,
               **search_options: Any) -> list[PartitionHit]:
        """The ``k`` best hits over the partitions (default all open ones), best first.

        Args:
            query: the query text.
            k: hits to return.
            partitions: keys to search (default every open partition).
            **search_options: passed to ``VectorIndex.search_batch`` (``filter``, ``nprobe``...).
                ``mode`` defaults to ``dense``: cosine scores merge exactly across partitions, the
                per-partition scores of lexical and hybrid search only approximately.

        Returns:
            The hits, each with the key of its partition.
        """
        return self.search_batch([query], k, partitions=partitions, **search_options)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, *, partitions: Sequence[str] | None = None,
                     **search_options: Any) -> list[list[PartitionHit]]:
        """``search`` for several queries at once: one list of hits per query."""
        keys = self.keys if partitions is None else list(dict.fromkeys(partitions))  # a key named twice: once
        if not keys:
            raise ValueError("partitions=[] names no partition to search (None searches every open one)")
        missing = [key for key in keys if key not in self.indexes]
        if missing:
            raise KeyError(f"partition(s) not open: {', '.join(missing)}")
        search_options.setdefault("mode", "dense")
        per_partition = {key: self.indexes[key].search_batch(list(queries), k, **search_options) for key in keys}
        merged = []
        for number in range(len(queries)):
            candidates = [_tagged(hit, key) for key in keys for hit in per_partition[key][number]]
            merged.append(heapq.nlargest(k, candidates, key=lambda hit: hit.score))  # stable: partition order on ties
        return merged


def _tagged(hit: Hit, key: str) -> PartitionHit:
    values = {field.name: getattr(hit, field.name) for field in dataclasses.fields(hit)}
    return PartitionHit(**values, partition=key)


def _join(root: str, name: str) -> str:
    return f"{root}/{name}" if is_url(root) else str(Path(root) / name)


def _partition_location(root: str, key: str, name: str) -> str:
    """Where partition ``key`` lies: ``root/name``; a local one must be a folder there, not a link
    (which could lead anywhere outside the root)."""
    location = _join(root, name)
    if not is_url(location) and os.path.islink(location):
        raise IndexCorruptError(f"partition {key!r} of {redact(root)}/{PARTITIONS_NAME} is a symbolic link "
                                f"({location}); a partitioned index reads only folders inside its root")
    return location


def _write_listing(root: str, listing: dict[str, Any]) -> None:
    """Write ``partitions.json`` after every partition is committed (one atomic PUT or rename)."""
    data = (json.dumps(listing, indent=2) + "\n").encode("utf-8")
    if is_url(root):
        fs, path = filesystem(root)
        try:
            fs.pipe_file(f"{path}/{PARTITIONS_NAME}", data)
        except storage_errors() as error:
            raise RemoteStorageError(f"cannot write {redact(root)}/{PARTITIONS_NAME}: {error}") from None
        return
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{PARTITIONS_NAME}.tmp-{os.getpid()}"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())  # durable before the rename makes it the listing
    os.replace(temporary, folder / PARTITIONS_NAME)
    fsync_dir(folder)


def _listing_bytes(root: str) -> bytes:
    """The bytes of ``root/partitions.json``.

    Raises:
        IndexNotFoundError: there is none.
        RemoteStorageError: a URL's cannot be read.
    """
    try:
        if is_url(root):
            fs, path = filesystem(root)
            return fs.cat_file(f"{path}/{PARTITIONS_NAME}")
        # a plain file: a link could point anywhere, and a FIFO would block
        return read_plain_file(Path(root) / PARTITIONS_NAME, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise IndexNotFoundError(f"{redact(root)} is not a partitioned index: {PARTITIONS_NAME} is missing") from None
    except storage_errors() as error:
        if not is_url(root):
            raise
        raise RemoteStorageError(f"cannot read {redact(root)}/{PARTITIONS_NAME}: {error}") from None


def _refuse_foreign_listing(root: str) -> None:
    """OutputDirectoryError when ``root/partitions.json`` is a JSON object of another format (an
    application's file, which a build would replace); a missing or damaged listing is fine."""
    try:
        listing = json.loads(_listing_bytes(root))
    except (IndexNotFoundError, IndexCorruptError, OSError, ValueError, RecursionError):
        return
    if isinstance(listing, dict) and listing.get("format") != FORMAT_NAME:
        raise OutputDirectoryError(f"{redact(root)}/{PARTITIONS_NAME} is not an m2v-search partition listing; give "
                                   "the partitioned index a folder of its own (a build would replace that file)")


def _read_listing(root: str) -> dict[str, Any]:
    if not is_url(root) and Path(root).exists() and not Path(root).is_dir():
        raise IndexNotFoundError(f"{root} is a file, not a partitioned index folder")
    try:
        listing = json.loads(_listing_bytes(root))
    except (ValueError, RecursionError) as error:
        raise IndexCorruptError(f"{redact(root)}/{PARTITIONS_NAME} is not valid JSON: {error}") from None
    if (not isinstance(listing, dict) or listing.get("format") != FORMAT_NAME
            or not isinstance(listing.get("partitions"), dict) or not listing["partitions"]):
        raise IndexCorruptError(f"{redact(root)}/{PARTITIONS_NAME} is not an m2v-search partition listing")
    version = listing.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise IndexCorruptError(f"{redact(root)}/{PARTITIONS_NAME} has format version {version!r}; this m2v-search "
                                f"reads version {FORMAT_VERSION}")
    for key, entry in listing["partitions"].items():
        path = entry.get("path") if isinstance(entry, dict) else None
        if not (_KEY.fullmatch(key) and isinstance(path, str) and _KEY.fullmatch(path)):
            raise IndexCorruptError(f"{redact(root)}/{PARTITIONS_NAME} names an unsafe partition {key!r}")
    return listing
