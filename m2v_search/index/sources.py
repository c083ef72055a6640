"""Corpus sources beyond one local JSONL file: fsspec URLs, globs, and Parquet.

A source is a local path or any fsspec URL (``s3://bucket/corpus/*.parquet``, ``gs://...``,
``file:///...``); globs are expanded through the source's filesystem. Files ending in
``.parquet`` / ``.pq`` are read as Parquet, one row group at a time through pyarrow (columns
named by ``CorpusOptions``: ``id_field`` / ``text_field`` / ``metadata_fields`` play the part
of ``--id-column`` / ``--text-column`` / ``--metadata-columns``); every other file is JSONL,
gzip-compressed or not (told by its first bytes).

Every reader yields the same ``Record`` objects as ``m2v_search.index.corpus.CorpusReader``,
under the same rules (ids, BEIR rows, metadata), and raises ``CorpusError`` naming the file
and line (JSONL) or the file, row group and row (Parquet; both counted from 0, as pyarrow
does). A Parquet row without an id gets its row number in the file (from 0) as id, a JSONL
line its line number; in a corpus of several files, ``FILE:NUMBER`` (ids stay distinct).

Credentials are never passed here: s3fs, gcsfs and adlfs find them the usual way
(environment, config files, instance metadata). fsspec and pyarrow are imported only when a
URL or a Parquet file is read.
"""

from __future__ import annotations

import datetime
import decimal
import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from m2v_search.index.corpus import CorpusOptions, CorpusReader, SeenIds, count_skipped, new_seen_ids
from m2v_search.index.errors import CorpusError
from m2v_search.index.records import Record
from m2v_search.index.urls import bucket_of, filesystem, is_url, local_path, redact, storage_errors

PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is read as Parquet (by its name)."""
    return os.fspath(source).lower().endswith(PARQUET_SUFFIXES)


def expand_sources(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The files named by ``inputs`` (paths, URLs, glob patterns of either), in the order given.

    A glob expands to its matches in name order. Local files stay plain paths; remote ones are
    full URLs. Raises CorpusError for a missing file, an empty glob or a directory.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise CorpusError("no corpus files given")
    files: list[str] = []
    for item in items:
        text = local_path(item)
        files.extend(_expand_url(text) if is_url(text) else _expand_local(text))
    return files


def _expand_local(text: str) -> list[str]:
    path = Path(text)
    if not path.exists() and glob.has_magic(text):
        matched = sorted(glob.glob(text))
        files = [m for m in matched if not Path(m).is_dir()]
        if not files:
            shown = ", ".join(matched[:3]) + (" ..." if len(matched) > 3 else "")
            raise CorpusError(f"no corpus file matches {text}" + (f" (only folders: {shown})" if matched else ""))
        return files
    if not path.exists():
        raise CorpusError(f"corpus file {path} does not exist")
    if path.is_dir():
        raise CorpusError(f"corpus {path} is a directory; give .jsonl, .jsonl.gz or .parquet files "
                          "(or a glob pattern)")
    return [str(path)]


def _expand_url(url: str) -> list[str]:
    fs, path = filesystem(url)
    try:
        if glob.has_magic(path):
            matched = [p for p in sorted(fs.glob(path)) if not fs.isdir(p)]
            if not matched:
                bucket = bucket_of(fs, path)
                if bucket is not None and not fs.exists(bucket):
                    raise CorpusError(f"no corpus file matches {redact(url)}: the bucket {bucket!r} does not exist "
                                      "(or these credentials cannot see it)")
                raise CorpusError(f"no corpus file matches {redact(url)}")
            return [fs.unstrip_protocol(p) for p in matched]
        if not fs.exists(path):
            raise CorpusError(f"corpus file {redact(url)} does not exist")
        if fs.isdir(path):
            raise CorpusError(f"corpus {redact(url)} is a directory; give files or a glob pattern "
                              f"(e.g. {redact(url).rstrip('/')}/*.parquet)")
    except storage_errors() as error:  # permissions, unreachable endpoint, no credentials...
        raise CorpusError(f"cannot list {redact(url)}: {error}") from None
    return [url]


def open_binary(source: str) -> IO[bytes]:
    """A binary, seekable reader of a local path or URL (the caller closes it)."""
    if not is_url(source):
        return open(source, "rb")  # noqa: SIM115 - returned to the caller
    fs, path = filesystem(source)
    try:
        return fs.open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(f"corpus file {redact(source)} does not exist") from None
    except storage_errors() as error:
        raise CorpusError(f"cannot open {redact(source)}: {error}") from None


def source_size(source: str) -> int:
    """Size of a local path or URL in bytes."""
    if not is_url(source):
        return Path(source).stat().st_size
    fs, path = filesystem(source)
    return int(fs.size(path))


@dataclass
class UrlJsonlReader(CorpusReader):
    """``CorpusReader`` for a JSONL(.gz) file at an fsspec URL (same rules and messages)."""

    @property
    def name(self) -> str:
        return redact(str(self.source))

    def _open(self) -> IO[bytes]:
        import gzip
        import io

        handle = open_binary(str(self.source))
        buffered = handle if hasattr(handle, "peek") else io.BufferedReader(handle)  # type: ignore[arg-type]
        if buffered.peek(2)[:2] == b"\x1f\x8b":  # type: ignore[attr-defined]
            return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
        return buffered  # type: ignore[return-value]


def jsonl_reader(source: str, options: CorpusOptions, seen: dict[bool, SeenIds] | None = None,
                 repeats_before: int = 0) -> CorpusReader:
    """The JSONL reader for a local path, ``-`` (stdin) or a URL (``seen`` and ``repeats_before``:
    what earlier files of the corpus read, see ``CorpusReader``)."""
    reader_class = UrlJsonlReader if is_url(source) else CorpusReader
    return reader_class(source, options, seen=seen or new_seen_ids(), repeats_before=repeats_before)


def parquet_row_groups(source: str) -> list[tuple[int, int]]:
    """(rows, uncompressed bytes) of every row group of a Parquet file (reads only its footer)."""
    with _parquet_file(source) as parquet:
        metadata = parquet.metadata
        return [(metadata.row_group(g).num_rows, metadata.row_group(g).total_byte_size)
                for g in range(metadata.num_row_groups)]


class _parquet_file:  # noqa: N801 - used as a context manager like open()
    def __init__(self, source: str) -> None:
        self.source = source
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> Any:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise CorpusError(f"{redact(self.source)}: reading Parquet needs pyarrow: "
                              "pip install 'm2v-search[parquet]'") from None

        self.handle = open_binary(self.source)
        try:
            return pq.ParquetFile(self.handle)
        except (pa.ArrowException, OSError) as error:
            self.handle.close()
            raise CorpusError(f"{redact(self.source)}: not a readable Parquet file ({error})") from None

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


@dataclass
class ParquetReader:
    """Records of a Parquet file (or of some of its row groups), one row group in memory at a time.

    ``row_groups``: the groups to read (default all); ``first_row``: the file row number of the
    first row of the first group read (the planner fills it so that ids of id-less rows and
    error messages hold across partitions).
    """

    source: str
    options: CorpusOptions = field(default_factory=CorpusOptions)
    row_groups: Sequence[int] | None = None
    first_row: int | None = None
    skipped: int = 0
    lines: int = 0      # rows read (the name matches CorpusReader's counter)
    records: int = 0
    duplicates: int = 0
    id_type_collisions: int = 0
    seen: dict[bool, SeenIds] | None = None  # ids read before (``CorpusReader.seen``; None: a new record)
    repeats_before: int = 0  # ``CorpusReader.repeats_before``

    @property
    def name(self) -> str:
        return redact(self.source)

    def __iter__(self) -> Iterator[Record]:
        parser = CorpusReader(self.name, self.options, seen=self.seen or new_seen_ids(),  # the JSONL rules and
                              repeats_before=self.repeats_before)                      # repeat counting
        try:
            yield from self._rows(parser)
        finally:
            self.duplicates, self.id_type_collisions = parser.duplicates, parser.id_type_collisions

    def _rows(self, parser: CorpusReader) -> Iterator[Record]:
        with _parquet_file(self.source) as parquet:
            metadata = parquet.metadata
            groups = range(metadata.num_row_groups) if self.row_groups is None else list(self.row_groups)
            file_row = self.first_row
            if file_row is None:
                file_row = sum(metadata.row_group(g).num_rows for g in range(groups[0] if groups else 0))
            columns = self._columns(parquet.schema_arrow.names)
            for group in groups:
                table = parquet.read_row_group(group, columns=columns)
                for row_number, row in enumerate(table.to_pylist()):
                    self.lines += 1
                    where = f"{self.name}: row group {group}, row {row_number}"
                    try:
                        record = parser.record_from_row(json_ready_row(row, where), where, file_row)
                    except CorpusError as error:
                        count_skipped(self, error)
                        continue
                    finally:
                        file_row += 1
                    self.records += 1
                    parser.count_repeat(record.id, file_row - 1)
                    yield record

    def _columns(self, available: list[str]) -> list[str] | None:
        """The columns to read: all, unless ``metadata_fields`` names the metadata ones."""
        options = self.options
        if options.id_field is not None and options.id_field not in available:
            raise CorpusError(f"{self.name}: no id column {options.id_field!r} "
                              f"(columns: {', '.join(available)})")
        if options.text_field not in available:
            raise CorpusError(f"{self.name}: no text column {options.text_field!r} (columns: "
                              f"{', '.join(available)}); choose one with --text-column")
        if options.metadata_fields is None:
            return None
        missing = [name for name in options.metadata_fields if name not in available]
        if missing:  # a Parquet file's columns are fixed: a missing one is a misspelt name, not a sparse field
            raise CorpusError(f"{self.name}: no metadata column {', '.join(map(repr, missing))} (columns: "
                              f"{', '.join(available)})")
        wanted = [options.text_field, *(options.metadata_fields or []), "metadata",
                  *([options.id_field] if options.id_field else ["id", "_id", "title"])]
        return [name for name in dict.fromkeys(wanted) if name in available]


def json_ready_row(row: dict[str, Any], where: str) -> dict[str, Any]:
    """A row (of a Parquet file or a dataframe) with values JSON can hold: dates and times as ISO
    strings, durations as seconds, decimals as strings.

    Args:
        row: column -> value.
        where: the file and row (or partition and row), for messages.

    Returns:
        The row with its values converted.

    Raises:
        CorpusError: a column holds binary data.
    """
    def plain(value: Any, column: str) -> Any:
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
            return value.isoformat()
        if isinstance(value, datetime.timedelta):
            return value.total_seconds()
        if isinstance(value, decimal.Decimal):
            return str(value)
        if isinstance(value, (bytes, bytearray)):
            raise CorpusError(f"{where}: column {column!r} holds binary data; leave it out with "
                              "--metadata-columns")
        if isinstance(value, dict):
            return {str(k): plain(v, column) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v, column) for v in value]
        return value

    return {key: plain(value, key) for key, value in row.items()}


@dataclass
class SourcesReader:
    """The records of several sources (JSONL or Parquet, local or URL), one file after another.

    Counters (``lines``, ``skipped``, ``records``) add up over the files, as ``build_index``
    and the CLI read them from a ``CorpusReader``.
    """

    sources: list[str]
    options: CorpusOptions = field(default_factory=CorpusOptions)
    skipped: int = 0
    lines: int = 0
    records: int = 0
    duplicates: int = 0          # ids seen before, in the same file or an earlier one
    id_type_collisions: int = 0

    @property
    def source(self) -> str:
        """The one file read, or the name of the set (``build_index`` records it)."""
        return self.sources[0] if len(self.sources) == 1 else self.name

    @property
    def name(self) -> str:
        first = redact(self.sources[0])
        return first if len(self.sources) == 1 else f"{first} (+{len(self.sources) - 1} files)"

    def __iter__(self) -> Iterator[Record]:
        # rows without ids are numbered per file: with several files, the file is part of the id (as in
        # the Dask engine, one file named twice is one file)
        options = replace(self.options, file_ids=True) if len(set(self.sources)) > 1 else self.options
        seen = new_seen_ids()  # one record of ids for all the files: repeats across files count
        for source in self.sources:
            reader: Any
            if is_parquet(source):
                reader = ParquetReader(source, options, seen=seen, repeats_before=self.duplicates)
            else:
                reader = jsonl_reader(source, options, seen, repeats_before=self.duplicates)
            try:
                for record in reader:
                    self.records += 1
                    yield record
            finally:
                self.lines += reader.lines
                self.skipped += reader.skipped
                self.duplicates += reader.duplicates
                self.id_type_collisions += reader.id_type_collisions


def open_corpus(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                options: CorpusOptions | None = None) -> CorpusReader | SourcesReader:
    """A reader for ``inputs``: one local JSONL file or ``-`` gives the plain ``CorpusReader``
    (unchanged behaviour); URLs, globs, Parquet files and lists give a ``SourcesReader``.

    Args:
        inputs: a path, URL, glob pattern or ``-``, or a list of them.
        options: field (column) names and ``skip_invalid``.

    Returns:
        An iterable of ``Record`` with ``name``, ``lines``, ``skipped`` and ``records``.

    Raises:
        CorpusError: a file is missing, a glob matches nothing, or a URL cannot be listed.
    """
    options = options or CorpusOptions()
    if isinstance(inputs, (str, os.PathLike)):
        text = os.fspath(inputs)
        if text == "-" or (not is_url(text) and not is_parquet(text) and not glob.has_magic(text)):
            return CorpusReader(text, options)
    return SourcesReader(expand_sources(inputs), options)
