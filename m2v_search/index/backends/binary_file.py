"""The file of a binary index: named numpy arrays and a JSON header in one checksummed file.

A binary index is more than one FAISS object (the codes or graph, the int8 re-scoring vectors,
their scales, the ids and the centre of the codes), and it is saved as one generation file so
that the commit stays the single-file ``os.replace`` of every other kind, listed and checksummed
in the manifest like them. Layout::

    b"M2VBIN01"                    8 bytes
    header length                  8 bytes, unsigned little-endian
    header                         UTF-8 JSON: {"format", "version", "meta", "arrays": [...]}
    arrays                         raw little-endian bytes, each at the offset its entry names

Every array entry names its dtype (from a short whitelist), shape, offset and byte count; the
reader checks each against the data before viewing the bytes (``np.frombuffer``: no pickle,
no code).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from m2v_search.index.errors import IndexCorruptError

MAGIC = b"M2VBIN01"
FORMAT = "m2v-binary-index"
VERSION = 1
ALIGN = 64
MAX_HEADER_BYTES = 1 << 20
DTYPES = {"|u1": np.uint8, "|i1": np.int8, "<f4": np.float32, "<i8": np.int64}


def _layout(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[bytes, list[tuple[int, np.ndarray]]]:
    """The header bytes and ``(offset, array)`` of each array (offsets from the file start)."""
    entries: list[dict[str, Any]] = []
    placed: list[tuple[int, np.ndarray]] = []
    cursor = 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array)
        dtype = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
        if dtype.str not in DTYPES:
            raise ValueError(f"array {name!r} has dtype {data.dtype}, not one of {sorted(DTYPES)}")
        entries.append({"name": name, "dtype": dtype.str, "shape": list(data.shape), "offset": cursor,
                        "bytes": int(data.nbytes)})
        placed.append((cursor, data.astype(dtype, copy=False)))
        cursor += -(-int(data.nbytes) // ALIGN) * ALIGN
    header = json.dumps({"format": FORMAT, "version": VERSION, "meta": meta, "arrays": entries},
                        separators=(",", ":")).encode("utf-8")
    start = -(-(len(MAGIC) + 8 + len(header)) // ALIGN) * ALIGN
    header = header + b" " * (start - len(MAGIC) - 8 - len(header))
    return header, [(start + offset, data) for offset, data in placed]


def write_arrays(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and ``meta`` to ``path`` in the layout of the module docstring.

    Args:
        path: The file to write (replaced).
        meta: JSON-serialisable facts stored in the header.
        arrays: Named arrays (uint8, int8, float32 or int64).
    """
    header, placed = _layout(meta, arrays)
    with open(path, "wb") as handle:
        handle.write(MAGIC + struct.pack("<Q", len(header)) + header)
        for offset, data in placed:
            handle.write(b"\0" * (offset - handle.tell()))
            handle.write(memoryview(data).cast("B") if data.nbytes else b"")


def to_bytes(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes :func:`write_arrays` writes, in memory."""
    header, placed = _layout(meta, arrays)
    parts = [MAGIC + struct.pack("<Q", len(header)) + header]
    size = len(parts[0])
    for offset, data in placed:
        parts.append(b"\0" * (offset - size))
        parts.append(data.tobytes())
        size = offset + data.nbytes
    return b"".join(parts)


def read_arrays(data: bytes | np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header's ``meta`` and the named arrays of a file written by :func:`write_arrays`.

    Args:
        data: The file's verified bytes; the arrays are read-only views into them.

    Returns:
        ``(meta, {name: array})``.

    Raises:
        IndexCorruptError: ``data`` is not such a file, or an entry does not fit the data
            (naming the entry).
    """
    buffer = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if len(buffer) < len(MAGIC) + 8 or buffer[:len(MAGIC)] != MAGIC:
        raise IndexCorruptError("not an m2v-search binary index file (bad magic bytes)")
    (length,) = struct.unpack("<Q", buffer[len(MAGIC):len(MAGIC) + 8])
    if length > MAX_HEADER_BYTES or len(MAGIC) + 8 + length > len(buffer):
        raise IndexCorruptError(f"binary index header of {length} bytes does not fit the file")
    try:
        header = json.loads(buffer[len(MAGIC) + 8:len(MAGIC) + 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise IndexCorruptError(f"binary index header is not JSON: {error}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise IndexCorruptError(f"not an {FORMAT} file of version {VERSION}")
    entries, meta = header.get("arrays"), header.get("meta")
    if not isinstance(entries, list) or not isinstance(meta, dict):
        raise IndexCorruptError("binary index header lacks 'arrays' or 'meta'")
    start = len(MAGIC) + 8 + length
    arrays: dict[str, np.ndarray] = {}
    for number, entry in enumerate(entries):
        name, array = _array(buffer, entry, start, number)
        arrays[name] = array
    return meta, arrays


def _array(buffer: bytes, entry: Any, start: int, number: int) -> tuple[str, np.ndarray]:
    """One array entry checked against the buffer and viewed (no copy)."""
    where = f"binary index array #{number}"
    if not isinstance(entry, dict):
        raise IndexCorruptError(f"{where} is not an object")
    name, dtype, shape = entry.get("name"), entry.get("dtype"), entry.get("shape")
    offset, size = entry.get("offset"), entry.get("bytes")
    if not isinstance(name, str) or dtype not in DTYPES:
        raise IndexCorruptError(f"{where} has a bad name or dtype ({name!r}, {dtype!r})")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shape):
        raise IndexCorruptError(f"{where} ({name}) has a bad shape {shape!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, size)):
        raise IndexCorruptError(f"{where} ({name}) has a bad offset or size")
    itemsize = np.dtype(DTYPES[dtype]).itemsize
    if int(np.prod(shape, dtype=np.int64)) * itemsize != size:
        raise IndexCorruptError(f"{where} ({name}): {size} bytes do not match shape {shape} of {dtype}")
    if start + offset + size > len(buffer) or (start + offset) % itemsize:
        raise IndexCorruptError(f"{where} ({name}) lies outside the file (truncated?)")
    array = np.frombuffer(buffer, dtype=DTYPES[dtype], count=size // itemsize, offset=start + offset)
    return name, array.reshape(shape)
