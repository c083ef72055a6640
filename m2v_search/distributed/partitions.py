"""Splitting a corpus into partitions, and reading one partition's records on a worker.

A partition is a byte range of a JSONL file (cut at ``partition_size`` bytes; a range owns the
lines that *start* inside it), a whole gzip file (gzip cannot be split), consecutive row groups
of a Parquet file (about ``partition_size`` uncompressed bytes), or a partition of a Dask bag.
Files are local paths or fsspec URLs (``m2v_search.index.sources``). Records are parsed by
the single-machine readers (``m2v_search.index.corpus``, ``m2v_search.index.sources``), so
both builds accept the same rows, give the same ids and fail with the same messages, naming
the file and the line number in the whole file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from m2v_search.index.corpus import CorpusOptions, CorpusReader
from m2v_search.index.errors import CorpusError
from m2v_search.index.records import Record
from m2v_search.index.sources import (
    ParquetReader,
    expand_sources,
    json_ready_row,
    jsonl_reader,
    open_binary,
    source_size,
)

_GZIP_MAGIC = b"\x1f\x8b"
_COUNT_CHUNK = 1 << 22


@dataclass
class FileBlock:
    """Bytes ``[start, stop)`` of ``path`` (``stop`` None: the whole, possibly gzipped, file)."""

    path: str
    start: int = 0
    stop: int | None = None
    first_line: int = 1  # number of the first line that starts in the block (filled by the planner)

    @property
    def whole(self) -> bool:
        return self.stop is None


@dataclass
class ParquetBlock:
    """Row groups ``row_groups`` of the Parquet file ``path``; ``first_row``: the file row number
    of their first row (ids of id-less rows, error messages)."""

    path: str
    row_groups: tuple[int, ...]
    first_row: int
    rows: int


def expand_inputs(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Files named by ``inputs``: paths, fsspec URLs or glob patterns of either, in the order given."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if any(os.fspath(item) == "-" for item in items):
        raise CorpusError("the Dask build cannot read stdin (-): workers read the corpus files themselves; "
                          "write it to a file on storage the workers can reach")
    return expand_sources(items)


def split_file(path: str | os.PathLike[str], partition_size: int) -> list[FileBlock]:
    """Byte ranges of about ``partition_size`` bytes of a JSONL file (one block for a gzip or an empty file)."""
    if partition_size < 1:
        raise ValueError(f"partition_size must be >= 1 byte, got {partition_size}")
    name = os.fspath(path)
    size = source_size(name)
    with open_binary(name) as handle:
        if handle.read(2) == _GZIP_MAGIC:
            return [FileBlock(name)]
    if size == 0:
        return [FileBlock(name, 0, 0)]
    return [FileBlock(name, start, min(size, start + partition_size))
            for start in range(0, size, partition_size)]


def split_parquet(path: str, groups: list[tuple[int, int]], partition_size: int) -> list[ParquetBlock]:
    """Consecutive row groups of about ``partition_size`` uncompressed bytes per block.

    ``groups``: (rows, bytes) of each row group (``sources.parquet_row_groups``, read on a worker).
    """
    blocks: list[ParquetBlock] = []
    current: list[int] = []
    first = row = size = 0
    for number, (rows, nbytes) in enumerate(groups):
        if current and size + nbytes > partition_size:
            blocks.append(ParquetBlock(path, tuple(current), first, row - first))
            current, first, size = [], row, 0
        current.append(number)
        size += nbytes
        row += rows
    if current or not blocks:
        blocks.append(ParquetBlock(path, tuple(current), first, row - first))
    return blocks


def count_newlines(block: FileBlock) -> tuple[int, bool]:
    """(newlines in the block's bytes, whether its last byte is a newline); runs on a worker."""
    if block.whole:
        return 0, False
    count, last = 0, b""
    with open_binary(block.path) as handle:
        handle.seek(block.start)
        remaining = block.stop - block.start  # type: ignore[operator]
        while remaining > 0:
            chunk = handle.read(min(_COUNT_CHUNK, remaining))
            if not chunk:
                break
            count += chunk.count(b"\n")
            remaining -= len(chunk)
            last = chunk[-1:]
    return count, last == b"\n"


def number_lines(blocks: list[FileBlock], counts: list[tuple[int, bool]]) -> None:
    """Set ``first_line`` of every block from the newline counts of the blocks before it."""
    before: dict[str, tuple[int, bool]] = {}
    for block, (newlines, ends_with_newline) in zip(blocks, counts):
        seen, previous_ends = before.get(block.path, (0, False))
        # a block's first owned line starts after the first newline at or after byte start-1
        block.first_line = 1 if block.start == 0 else seen - int(previous_ends) + 2
        before[block.path] = (seen + newlines, ends_with_newline)


def read_block(block: FileBlock | ParquetBlock, options: CorpusOptions) -> tuple[Iterator[Record], Any]:
    """The records of one block, parsed exactly as the single-machine reader parses them.

    Returns the iterator and the reader whose ``lines``/``skipped``/``records`` it updates.
    """
    if isinstance(block, ParquetBlock):
        parquet = ParquetReader(block.path, options, block.row_groups, block.first_row)
        return iter(parquet), parquet
    reader = jsonl_reader(block.path, options)
    if block.whole:
        return iter(reader), reader
    return _block_records(block, reader), reader


def _block_records(block: FileBlock, reader: CorpusReader) -> Iterator[Record]:
    with open_binary(block.path) as opened:
        handle = opened if hasattr(opened, "peek") else io.BufferedReader(opened)  # readline(size) for fsspec files
        position = block.start
        if block.start > 0:
            handle.seek(block.start - 1)
            position += _finish_line(handle) - 1  # the line that began before the block is the previous block's
        yield from reader.read_records(handle, block.first_line, block.stop - position)  # type: ignore[operator]


def _finish_line(handle: IO[bytes]) -> int:
    """Read to just past the next newline (or the end), 1 MiB at a time; the bytes read."""
    read = 0
    while chunk := handle.readline(1 << 20):
        read += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return read


def bag_records(rows: Sequence[Any], options: CorpusOptions, name: str, partition: int
                ) -> tuple[list[Record], int]:
    """Records of one Dask bag (or dataframe) partition: JSON lines (str/bytes) or dicts.

    Rows without an id field are refused (their line number is no stable id across partitions).
    Returns the records and the number of invalid rows skipped (``skip_invalid``).
    """
    reader = CorpusReader(name, options)
    records: list[Record] = []
    skipped = 0
    for row_number, row in enumerate(rows, 1):
        where = f"{name}: partition {partition} row {row_number}"
        try:
            if isinstance(row, (str, bytes)):
                raw = row.encode("utf-8") if isinstance(row, str) else row
                if not raw.strip():
                    continue
                row = reader.parse_row(raw, where)  # the line checks: length, UTF-8, JSON, an object
            if not isinstance(row, dict):
                raise CorpusError(f"{where}: expected a JSON object or a dict, got {type(row).__name__}")
            row = json_ready_row(_plain(row), where)
            if not any(key in row for key in ((options.id_field,) if options.id_field else ("id", "_id"))):
                raise CorpusError(f"{where}: no id field ({options.id_field or 'id or _id'}); rows of a Dask "
                                  "collection need explicit ids")
            records.append(reader.record_from_row(row, where, row_number))
        except CorpusError:
            if not options.skip_invalid:
                raise
            skipped += 1
    return records, skipped


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """The row with numpy scalars (as in dataframe partitions) turned into Python values (dates,
    pandas Timestamps among them, become ISO strings in ``json_ready_row``, as Parquet dates do)."""
    def convert(value: Any) -> Any:
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
            return value.item()
        return value

    return {key: convert(value) for key, value in row.items()}
