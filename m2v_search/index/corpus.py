"""Streaming corpus reader: JSONL, JSONL.gz (by content) or stdin (``-``), one record per line.

Rows are ``{"id": ..., "text": ..., "metadata": {...}}``, any flat JSON object (fields named by
``id_field`` / ``text_field``; other keys become metadata), or BEIR rows ``{"_id", "title",
"text"}`` (title and text joined). A bad line raises CorpusError naming the file and line, or is
skipped and counted with ``skip_invalid``. Only one line is held in memory at a time.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from m2v_search.index.errors import CorpusError
from m2v_search.index.store import Record

log = logging.getLogger("m2v_search.index")
_GZIP_MAGIC = b"\x1f\x8b"
_REPORTED = 5  # skipped lines logged one by one before only counting


@dataclass
class CorpusOptions:
    id_field: str | None = None          # None: "id", else BEIR "_id", else the line number
    text_field: str = "text"
    metadata_fields: list[str] | None = None  # None: "metadata" object, or every other key
    skip_invalid: bool = False


@dataclass
class CorpusReader:
    """Iterate the records of one corpus file (or ``-`` for stdin)."""

    source: str | Path
    options: CorpusOptions = field(default_factory=CorpusOptions)
    stdin: IO[bytes] | None = None
    skipped: int = 0
    lines: int = 0
    records: int = 0

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
                raise CorpusError(f"corpus {path} is a directory; give a .jsonl or .jsonl.gz file")
            buffered = open(path, "rb")  # noqa: SIM115 - closed by __iter__
        if buffered.peek(2)[:2] == _GZIP_MAGIC:  # type: ignore[attr-defined]
            return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
        return buffered

    def __iter__(self) -> Iterator[Record]:
        handle = self._open()
        line_number = 0
        try:
            while True:
                try:
                    raw = handle.readline()
                except (EOFError, OSError, zlib.error) as error:
                    raise CorpusError(f"{self.name}: line {line_number + 1}: cannot read compressed data "
                                      f"({error}); is the file truncated?") from None
                if not raw:
                    break
                line_number += 1
                self.lines = line_number
                if not raw.strip():
                    continue
                try:
                    record = self._parse(raw, line_number)
                except CorpusError as error:
                    if not self.options.skip_invalid:
                        raise
                    self.skipped += 1
                    if self.skipped <= _REPORTED:
                        log.warning("skipped %s", error)
                    continue
                self.records += 1
                yield record
        finally:
            if str(self.source) != "-":
                handle.close()

    def _parse(self, raw: bytes, line: int) -> Record:
        where = f"{self.name}: line {line}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorpusError(f"{where}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at byte offset "
                              f"{error.start})") from None
        if line == 1 and text.startswith("\ufeff"):
            text = text[1:]
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            raise CorpusError(f"{where}: invalid JSON: {error.msg} (column {error.colno})") from None
        if not isinstance(row, dict):
            raise CorpusError(f"{where}: expected a JSON object, got {type(row).__name__}")
        return self._record(row, where, line)

    def _record(self, row: dict[str, Any], where: str, line: int) -> Record:
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
            doc_id = str(line)
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or doc_id == "":
            raise CorpusError(f"{where}: field {id_field!r} must be a non-empty string or an integer, "
                              f"got {json.dumps(doc_id)[:40]}")
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
