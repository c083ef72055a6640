"""Writing FAISS index files piece by piece, so that the whole index never sits in memory.

``faiss.write_index`` needs the complete index in RAM. The distributed build instead streams
two layouts that ``faiss.read_index`` reads back as ordinary in-memory indexes:

- ``IDMap2,Flat``: the header of an empty index (with ``ntotal`` set), then the vectors and the
  ids, written shard by shard;
- any IVF index with array inverted lists (``IVFn,Flat``, ``IVFn,PQm``, ``IVFn,SQ8``...): the
  header of the trained, empty index with its hashtable direct map (id -> list and offset),
  then the lists in FAISS's ``ilar`` layout, copied list by list from on-disk inverted lists
  (``faiss.OnDiskInvertedLists``, memory-mapped).

The header bytes always come from FAISS itself (``faiss.serialize_index`` of an empty index);
only the parts whose length depends on the data (vectors, ids, lists, direct map) are written
here, and each layout is checked against the bytes FAISS writes for an empty index before use.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

_U64 = struct.Struct("<Q")
_LIST_BATCH = 256          # inverted lists copied per write
_HASHTABLE_DIRECT_MAP = 2  # faiss::DirectMap::Hashtable


class LayoutError(RuntimeError):
    """The FAISS build writes a layout this module does not know (a FAISS version change)."""


def _serialized(index: Any, ntotal: int = 0) -> bytes:
    """``faiss.serialize_index`` of an empty ``index`` whose header says ``ntotal`` vectors."""
    import faiss

    saved = int(index.ntotal)
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else None
    try:
        index.ntotal = ntotal
        if inner is not None:
            inner.ntotal = ntotal
        return faiss.serialize_index(index).tobytes()
    finally:
        index.ntotal = saved
        if inner is not None:
            inner.ntotal = saved


def write_flat_idmap(path: Path, dim: int, total: int, chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]
                     ) -> None:
    """Write an ``IDMap2,Flat`` inner-product index of ``total`` vectors to ``path``.

    ``chunks()`` yields ``(ids int64 (m,), vectors float32 (m, dim))`` pieces in order; it is
    called twice (vectors first, then ids, as FAISS lays them out), so it must replay the same
    pieces each time (e.g. by reading shard files again).
    """
    import faiss

    empty = faiss.index_factory(dim, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
    header = _serialized(empty, total)
    zero = _U64.pack(0)
    if header[:4] != b"IxM2" or header[-16:] != zero + zero or b"IxFI" not in header:
        raise LayoutError("unexpected IDMap2,Flat layout in this FAISS version")
    with open(path, "wb") as handle:
        handle.write(header[:-16])
        handle.write(_U64.pack(total * dim))  # the flat codes, counted in floats
        written = 0
        for _, vectors in chunks():
            block = np.ascontiguousarray(vectors, dtype="<f4")
            if block.ndim != 2 or block.shape[1] != dim:
                raise ValueError(f"vectors of shape {block.shape}, expected (m, {dim})")
            handle.write(block.tobytes())
            written += len(block)
        _check_count("vectors", written, total)
        handle.write(_U64.pack(total))
        written = 0
        for ids, _ in chunks():
            handle.write(np.ascontiguousarray(ids, dtype="<i8").tobytes())
            written += len(ids)
        _check_count("ids", written, total)


def write_ivf(path: Path, trained_empty: Any, invlists: Any) -> int:
    """Write ``trained_empty`` (an IVF index with no vectors) filled with ``invlists`` to ``path``.

    ``invlists`` is any FAISS InvertedLists (typically the memory-mapped result of
    ``OnDiskInvertedLists.merge_from_multiple``); it is read one list at a time. The file gets a
    hashtable direct map, like the indexes made by ``m2v_search.index.factory.new_index``, so
    reconstruct and remove by id work after loading. Returns the number of vectors written.
    """
    import faiss

    ivf = faiss.extract_index_ivf(trained_empty)
    if trained_empty.ntotal != 0:
        raise ValueError("write_ivf takes an empty (trained) index")
    if ivf.nlist != invlists.nlist or ivf.code_size != invlists.code_size:
        raise ValueError(f"inverted lists ({invlists.nlist} lists, code size {invlists.code_size}) do not fit the "
                         f"index ({ivf.nlist} lists, code size {ivf.code_size})")
    nlist, code_size = int(ivf.nlist), int(ivf.code_size)
    sizes = np.fromiter((invlists.list_size(i) for i in range(nlist)), dtype=np.int64, count=nlist)
    total = int(sizes.sum())
    before, after = _ivf_header(trained_empty, total)
    with open(path, "wb") as handle:
        handle.write(before)
        # the direct map: type, an empty array, then the (id, list << 32 | offset) pairs
        handle.write(bytes([_HASHTABLE_DIRECT_MAP]) + _U64.pack(0) + _U64.pack(total))
        for start, stop in _list_batches(nlist):
            pieces = []
            for list_no in range(start, stop):
                ids = _list_ids(invlists, list_no, int(sizes[list_no]))
                if len(ids):
                    pairs = np.empty((len(ids), 2), dtype="<i8")
                    pairs[:, 0] = ids
                    pairs[:, 1] = (np.int64(list_no) << np.int64(32)) | np.arange(len(ids), dtype=np.int64)
                    pieces.append(pairs.tobytes())
            handle.write(b"".join(pieces))
        handle.write(after)
        # the inverted lists, FAISS "ilar" layout with a full size table
        handle.write(b"ilar" + _U64.pack(nlist) + _U64.pack(code_size) + b"full" + _U64.pack(nlist))
        handle.write(sizes.astype("<u8").tobytes())
        for start, stop in _list_batches(nlist):
            pieces = []
            for list_no in range(start, stop):
                size = int(sizes[list_no])
                if size:
                    pieces.append(_list_codes(invlists, list_no, size * code_size))
                    pieces.append(_list_ids(invlists, list_no, size).astype("<i8").tobytes())
            handle.write(b"".join(pieces))
    return total


def _ivf_header(trained_empty: Any, total: int) -> tuple[bytes, bytes]:
    """The bytes FAISS writes before the direct map, and those between it and the lists."""
    import faiss

    ivf = faiss.extract_index_ivf(trained_empty)
    previous = ivf.direct_map.type
    try:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        with_table = _serialized(trained_empty, total)
        ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        without = _serialized(trained_empty, total)
    finally:
        ivf.set_direct_map_type(previous)
    start = next((i for i, (a, b) in enumerate(zip(with_table, without)) if a != b), -1)
    empty_lists = b"ilar" + _U64.pack(int(ivf.nlist)) + _U64.pack(int(ivf.code_size)) + b"sprs" + _U64.pack(0)
    table = bytes([_HASHTABLE_DIRECT_MAP]) + _U64.pack(0) + _U64.pack(0)
    if (start < 0 or with_table[start:start + len(table)] != table or not with_table.endswith(empty_lists)
            or with_table[start + len(table):] != without[start + 9:]):
        raise LayoutError("unexpected IVF layout in this FAISS version (direct map or array inverted lists)")
    return with_table[:start], with_table[start + len(table):-len(empty_lists)]


def _list_batches(nlist: int) -> Iterator[tuple[int, int]]:
    for start in range(0, nlist, _LIST_BATCH):
        yield start, min(nlist, start + _LIST_BATCH)


def _list_ids(invlists: Any, list_no: int, size: int) -> np.ndarray:
    import faiss

    if size == 0:
        return np.zeros(0, dtype=np.int64)
    pointer = invlists.get_ids(list_no)
    try:
        return np.array(faiss.rev_swig_ptr(pointer, size), dtype=np.int64)
    finally:
        invlists.release_ids(list_no, pointer)


def _list_codes(invlists: Any, list_no: int, nbytes: int) -> bytes:
    import faiss

    pointer = invlists.get_codes(list_no)
    try:
        return faiss.rev_swig_ptr(pointer, nbytes).tobytes()
    finally:
        invlists.release_codes(list_no, pointer)


def _check_count(what: str, written: int, total: int) -> None:
    if written != total:
        raise ValueError(f"wrote {written} {what}, the header says {total}")
