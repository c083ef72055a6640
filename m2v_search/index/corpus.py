"""Streaming corpus reader: JSONL, JSONL.gz (by content) or stdin (``-``), one record per line.

Rows are ``{"id": ..., "text": ..., "metadata": {...}}``, any flat JSON object (fields named by
``id_field`` / ``text_field``; other keys become metadata), or BEIR rows ``{"_id", "title",
"text"}`` (title and text joined). A bad line raises CorpusError naming the file, line and
field, or is skipped and counted with ``skip_invalid``: invalid JSON or UTF-8, a lone surrogate
(``"\\ud800"``) in an id, text or metadata, NaN or Infinity anywhere in metadata (JSON has no
such numbers), nesting deeper than 100 levels, a line longer than 64 MiB. Only one line is held
in memory at a time.

An id seen earlier in the same corpus is counted in ``duplicates`` (the later record wins), and
in ``id_type_collisions`` when one was an integer and the other a string (``1`` and ``"1"`` are
the same id, "1"). Ids are remembered as 8-byte hashes (``SeenIds``).
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from m2v_search.index.docstore import MAX_DEPTH, find_invalid_value
from m2v_search.index.errors import CorpusError
from m2v_search.index.store import Record
from m2v_search.index.urls import storage_errors

log = logging.getLogger("m2v_search.index")
_UTF8_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_OTHER_COMPRESSIONS = {b"\x28\xb5\x2f\xfd": ("zstd", "zstd -dc"), b"BZh": ("bzip2", "bzip2 -dc"),
                       b"\xfd7zXZ\x00": ("xz", "xz -dc")}
_LONG_DIGITS = re.compile(rb"[0-9]{19}")  # an integer past 64 bits has 19 digits at least
_REPORTED = 5  # skipped lines (and repeated ids) logged one by one before only counting
MAX_LINE_BYTES = 64 << 20  # a longer line is refused (a 1 MB .gz can hold a 1 GB line)


@dataclass
class CorpusOptions:
    id_field: str | None = None          # None: "id", else BEIR "_id", else the line number
    text_field: str = "text"
    metadata_fields: list[str] | None = None  # None: "metadata" object, or every other key
    skip_invalid: bool = False
    report_repeats: bool = True  # count and warn about ids seen before (False: every record is kept anyway)
    file_ids: bool = False  # a row without an id gets "FILE:LINE" (a corpus of several files), not "LINE"


@dataclass
class CorpusReader:
    """Iterate the records of one corpus file (or ``-`` for stdin)."""

    source: str | Path
    options: CorpusOptions = field(default_factory=CorpusOptions)
    stdin: IO[bytes] | None = None
    skipped: int = 0
    lines: int = 0
    records: int = 0
    duplicates: int = 0
    id_type_collisions: int = 0
    seen: dict[bool, SeenIds] = field(default_factory=lambda: new_seen_ids(), repr=False)
    """The ids read so far, string ids and integer ids apart (readers of one corpus's files share it)."""
    repeats_before: int = 0  # repeats the corpus's earlier files had: warnings stop at _REPORTED in all
    _last_id_was_int: bool = field(default=False, repr=False)
    _non_finite: bool = field(default=False, repr=False)
    _decoder: json.JSONDecoder | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return "<stdin>" if str(self.source) == "-" else str(self.source)

    def _open(self) -> IO[bytes]:
        if str(self.source) == "-":
            raw: IO[bytes] = self.stdin if self.stdin is not None else sys.stdin.buffer
            buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
        else:
            path = Path(self.source)
            if not path.exists():
                raise CorpusError(f"corpus file {path} does not exist")
            if path.is_dir():
                raise CorpusError(f"corpus {path} is a folder; give a file (for the Parquet files of a folder, "
                                  f"a glob such as {path}/*.parquet)")
            buffered = open(path, "rb")  # noqa: SIM115 - closed by __iter__
        try:
            magic = buffered.peek(6)[:6]  # type: ignore[attr-defined]
        except OSError as error:
            buffered.close()
            raise self._read_error(error, 1) from None
        if magic[:2] == _GZIP_MAGIC:
            return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
        if magic.startswith(b"PAR1"):
            buffered.close()
            where = ("Parquet is read from a file or URL whose name ends in .parquet, not from standard input"
                     if self.name == "<stdin>" else "name it with a .parquet suffix to read it as Parquet")
            raise CorpusError(f"{self.name} is a Parquet file, read here as JSONL lines: {where}")
        for other, (name, command) in _OTHER_COMPRESSIONS.items():
            if magic.startswith(other):
                buffered.close()
                raise CorpusError(f"{self.name} is {name}-compressed; only gzip is read: decompress it first "
                                  f"({command} {self.name if self.name != '<stdin>' else 'FILE'} | m2v-index build - ...)")
        return buffered

    def _read_error(self, error: OSError, line: int) -> OSError:
        """An operating-system read error as an OSError naming the corpus and line (exit code 7)."""
        return OSError(error.errno, f"{self.name}: line {line}: cannot read the corpus: "
                                    f"{error.strerror or error}")

    def __iter__(self) -> Iterator[Record]:
        handle = self._open()
        self.lines = 0
        try:
            yield from self.read_records(handle)
        finally:
            if str(self.source) != "-":
                handle.close()

    def read_records(self, handle: IO[bytes], first_line: int = 1, byte_limit: int | None = None
                     ) -> Iterator[Record]:
        """The records of the lines read from ``handle``, every line checked (length, UTF-8, JSON,
        fields, values); the counters (``lines``, ``records``, ``skipped``, ``duplicates``) follow.

        Args:
            handle: A binary stream at the start of a line (``readline`` taking a size limit).
            first_line: The number of that line in the whole file (messages, ids of id-less rows).
            byte_limit: Read only the lines that start within this many bytes (a byte range of a
                file owns the lines that start inside it); None: read to the end.

        Yields:
            The records, in file order.

        Raises:
            CorpusError: A bad line (file and line number in the message), unless ``skip_invalid``.
            OSError: The file cannot be read (the message names the file and line).
        """
        line_number, consumed = first_line - 1, 0
        while byte_limit is None or consumed < byte_limit:
            raw = self._read_line(handle, line_number + 1)
            if not raw:
                break
            consumed += len(raw)
            line_number += 1
            self.lines += 1
            if not (raw.removeprefix(_UTF8_BOM) if line_number == 1 else raw).strip():
                continue  # a blank line (the first may hold only a byte-order mark)
            try:
                if len(raw) > MAX_LINE_BYTES:
                    consumed += self._skip_rest_of_line(handle, raw, line_number)
                record = self.parse_line(raw, line_number)
            except CorpusError as error:
                count_skipped(self, error)
                continue
            self.records += 1
            self.count_repeat(record.id, line_number)
            yield record

    def _read_line(self, handle: IO[bytes], line: int, limit: int = MAX_LINE_BYTES + 1) -> bytes:
        """One line (at most ``limit`` bytes of it), with read errors naming the line."""
        try:
            return handle.readline(limit)
        except OSError as error:
            if error.errno is not None:  # the disk or file system, not the data
                raise self._read_error(error, line) from None
            raise CorpusError(f"{self.name}: line {line}: cannot read compressed data ({error}); "
                              "is the file truncated?") from None
        except (EOFError, zlib.error) as error:
            raise CorpusError(f"{self.name}: line {line}: cannot read compressed data ({error}); "
                              "is the file truncated?") from None
        except storage_errors() as error:  # botocore's own (no OSError): the object store's connection was lost
            raise OSError(errno.EIO, f"{self.name}: line {line}: cannot read the corpus: {error}") from None

    def _skip_rest_of_line(self, handle: IO[bytes], raw: bytes, line: int) -> int:
        """Read past the rest of the line ``raw`` begins, 1 MiB at a time; the bytes skipped."""
        skipped = 0
        while raw and not raw.endswith(b"\n"):
            raw = self._read_line(handle, line, 1 << 20)
            skipped += len(raw)
        return skipped

    def parse_line(self, raw: bytes, line: int) -> Record:
        """The record of one corpus line, checked as :meth:`parse_row` and :meth:`record_from_row` say.

        Args:
            raw: The line's bytes (with or without its newline).
            line: Its number in the file (messages; the id of a row without one).

        Returns:
            The record.

        Raises:
            CorpusError: The line is bad; the message names the file, the line and the field.
        """
        where = f"{self.name}: line {line}"
        row = self.parse_row(raw, where, strip_bom=line == 1)
        # lone surrogates come only from \\u escapes, deep nesting needs many brackets, an integer past 64 bits
        # many digits: most lines skip the walk
        suspect = self._non_finite or b"\\u" in raw or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH \
            or _LONG_DIGITS.search(raw) is not None
        return self.record_from_row(row, where, line, suspect)

    def parse_row(self, raw: bytes, where: str, *, strip_bom: bool = False) -> dict[str, Any]:
        """The JSON object of one line: at most 64 MiB (``MAX_LINE_BYTES``), UTF-8, JSON, an object.
        Its values (NaN, lone surrogates, depth) are checked by :meth:`record_from_row`.

        Args:
            raw: The line's bytes.
            where: The file and line (or partition and row) for messages.
            strip_bom: Drop a leading byte-order mark (the first line of a file).

        Returns:
            The parsed object.

        Raises:
            CorpusError: The line is too long, not UTF-8, not JSON, or not an object.
        """
        if len(raw) > MAX_LINE_BYTES:
            raise CorpusError(f"{where}: longer than {MAX_LINE_BYTES >> 20} MiB; split the document")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorpusError(f"{where}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at byte offset "
                              f"{error.start})") from None
        if strip_bom and text.startswith("\ufeff"):
            text = text[1:]
        try:
            self._non_finite = False
            if self._decoder is None:  # one decoder for every line (json.loads with hooks builds one per call)
                self._decoder = json.JSONDecoder(parse_constant=self._constant, parse_float=self._float)
            row = self._decoder.decode(text)
        except json.JSONDecodeError as error:
            raise CorpusError(f"{where}: invalid JSON: {error.msg} (column {error.colno})") from None
        except RecursionError:
            raise CorpusError(f"{where}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(row).__name__}")
        return row

    def _constant(self, name: str) -> float:
        self._non_finite = True  # NaN, Infinity, -Infinity
        return float(name)

    def _float(self, literal: str) -> float:
        value = float(literal)
        if value - value != 0.0:  # inf or nan (1e999)
            self._non_finite = True
        return value

    def count_repeat(self, doc_id: str, line: int) -> None:
        """Count ``doc_id`` in ``duplicates`` (and ``id_type_collisions``) when it was seen before.

        Call it after :meth:`record_from_row` made the record (which notes whether the id was an
        integer), with the record's id and line (or row) number.
        """
        if not self.options.report_repeats:
            return
        as_int = self._last_id_was_int
        here, other = self.seen[as_int], self.seen[not as_int]
        if here.add(doc_id):
            if other and other.contains(doc_id):  # ids of the other type are rare: skip the probe
                self._repeat(doc_id, line, collision=True)
            return
        self._repeat(doc_id, line, collision=bool(other) and other.contains(doc_id))

    def _repeat(self, doc_id: str, line: int, *, collision: bool) -> None:
        self.duplicates += 1
        self.id_type_collisions += collision
        if self.repeats_before + self.duplicates <= _REPORTED:
            kind = " (an integer id and a string id with the same digits)" if collision else ""
            log.warning("%s: line %d: id %r appeared earlier in the corpus%s; the later record wins", self.name,
                        line, doc_id, kind)

    def record_from_row(self, row: dict[str, Any], where: str, line: int, suspect: bool = True) -> Record:
        """The record of a parsed row (from a line, a Parquet row or a Dask partition's dict).

        Args:
            row: The row's fields.
            where: The file and line (or row) for messages.
            line: The line or row number (the id of a row without an id field).
            suspect: Walk the id, text and metadata for NaN/Infinity, lone surrogates and depth
                (rows that did not come from a line, e.g. a Dask bag's, are always walked).

        Returns:
            The record.

        Raises:
            CorpusError: A missing or mistyped id or text field, bad metadata, or an invalid value.
        """
        options = self.options
        id_field = options.id_field
        used = {options.text_field}
        if id_field is not None:
            if id_field not in row:
                raise CorpusError(f"{where}: missing id field {id_field!r}")
            doc_id: Any = row[id_field]
            used.add(id_field)
        elif "id" in row:
            doc_id, id_field = row["id"], "id"
            used.add("id")
        elif "_id" in row:
            doc_id, id_field = row["_id"], "_id"
            used.add("_id")
        else:
            doc_id = f"{self.name}:{line}" if options.file_ids else str(line)
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or doc_id == "":
            raise CorpusError(f"{where}: field {id_field!r} must be a non-empty string or an integer, "
                              f"got {json.dumps(doc_id)[:40]}")
        self._last_id_was_int = isinstance(doc_id, int) or id_field is None
        if options.text_field not in row:
            keys = ", ".join(sorted(row)[:10])
            raise CorpusError(f"{where}: missing text field {options.text_field!r} (keys: {keys or 'none'}); "
                              "choose one with --text-field")
        text = row[options.text_field]
        if not isinstance(text, str):
            raise CorpusError(f"{where}: field {options.text_field!r} must be a string, got {type(text).__name__}")
        if id_field == "_id" and isinstance(row.get("title"), str):  # BEIR corpus row
            used.add("title")
            if row["title"].strip():
                text = f"{row['title']} {text}" if text else row["title"]
        metadata = self._metadata(row, used, where)
        if suspect:
            for prefix, value, path in (("", doc_id, id_field or "id"), ("", text, options.text_field),
                                        ("metadata ", metadata, "")):
                problem = find_invalid_value(value, path)
                if problem is not None:
                    raise CorpusError(f"{where}: {prefix}{problem}")
        return Record(str(doc_id), text, metadata)

    def _metadata(self, row: dict[str, Any], used: set[str], where: str) -> dict[str, Any]:
        nested = row.get("metadata")
        if nested is not None and not isinstance(nested, dict):
            raise CorpusError(f"{where}: field 'metadata' must be an object, got {type(nested).__name__}")
        fields = self.options.metadata_fields
        if fields is not None:
            metadata = {}
            for name in fields:
                if name in row and name != "metadata":
                    metadata[name] = row[name]
                elif nested is not None and name in nested:
                    metadata[name] = nested[name]
            return metadata
        if nested is not None:
            return dict(nested)
        return {key: value for key, value in row.items() if key not in used}


def count_skipped(reader: Any, error: CorpusError) -> None:
    """Count a bad line or row on ``reader`` (logging the first few) under ``skip_invalid``, else raise ``error``."""
    if not reader.options.skip_invalid:
        raise error
    reader.skipped += 1
    if reader.skipped <= _REPORTED:
        log.warning("skipped %s", error)


def new_seen_ids() -> dict[bool, SeenIds]:
    """An empty record of ids read: string ids and integer ids apart (``CorpusReader.seen``)."""
    return {False: SeenIds(), True: SeenIds()}


class SeenIds:
    """A set of strings kept as 8-byte hashes: a Python set up to ``_BUFFER`` of them, then sorted
    numpy runs (8 bytes per id, not ~80, for corpora of millions of ids).

    Full buffers become sorted runs, merged as in a log-structured merge tree, so adding n ids
    costs O(n log n) and a lookup one set probe plus a binary search per run (a corpus under
    ``_BUFFER`` ids never leaves the set). The hash is Python's own string hash (computed once per
    string object, in C; salted per process, which is all a set of one reading needs). Two
    different ids share a hash with probability ~n^2 / 2^65; only the duplicate count would then
    be off by one.
    """

    _BUFFER = 1 << 18

    def __init__(self) -> None:
        self._buffer: set[int] = set()
        self._runs: list[Any] = []

    def __bool__(self) -> bool:
        return bool(self._buffer) or bool(self._runs)

    def contains(self, text: str) -> bool:
        """Whether ``text`` was added."""
        return self._has(hash(text))

    def add(self, text: str) -> bool:
        """Add ``text``; returns False if it was already there."""
        digest = hash(text)
        if self._has(digest):
            return False
        self._buffer.add(digest)
        if len(self._buffer) >= self._BUFFER:
            self._flush()
        return True

    def _has(self, digest: int) -> bool:
        if digest in self._buffer:
            return True
        for run in self._runs:
            position = int(run.searchsorted(digest))
            if position < len(run) and int(run[position]) == digest:
                return True
        return False

    def _flush(self) -> None:
        import numpy as np

        run = np.sort(np.fromiter(self._buffer, dtype=np.int64, count=len(self._buffer)))
        self._buffer.clear()
        while self._runs and len(self._runs[-1]) <= len(run):  # merge runs of similar size
            run = np.sort(np.concatenate([self._runs.pop(), run]), kind="mergesort")
        self._runs.append(run)
