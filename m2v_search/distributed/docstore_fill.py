"""The driver's docstore pass of a Dask build: the shards' records into one on-disk SQLite docstore.

Same schema and rules as the single-machine build: the int id of a record is its position in
the corpus, a repeated id replaces the earlier record, an identical repeat is skipped. Records
are read a batch at a time from the shard files, so the driver's memory stays flat.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from m2v_search.index.docstore import SCHEMA, DocStore

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.distributed.worker import ShardInfo

DOC_BATCH = 4096  # records per docstore transaction step


def fill_docstore(path: Path, shards: list[ShardInfo]) -> tuple[DocStore, dict[str, int], np.ndarray]:
    """Stream every shard's records into an on-disk docstore; int id = position in the corpus.

    Returns the docstore, counts (added, replaced, unchanged) and the sorted positions whose
    vectors must not enter the index (records replaced later, or identical repeats).
    """
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=OFF")   # staging file: a crash restarts the build
    connection.execute("PRAGMA synchronous=OFF")
    connection.executescript(SCHEMA)
    docs = DocStore(connection, readonly=False, source=path)
    total = sum(s.rows for s in shards)
    docs.set_meta("next_iid", str(total))
    counts = {"added": 0, "replaced": 0, "unchanged": 0}
    dead: list[int] = []
    position = 0
    for shard in shards:
        with open(shard.records, encoding="utf-8") as handle:
            while True:
                lines = [line for _, line in zip(range(DOC_BATCH), handle)]
                if not lines:
                    break
                rows = [json.loads(line) for line in lines]
                position = _insert_batch(docs, rows, position, counts, dead)
        docs.commit()
    return docs, counts, np.unique(np.asarray(dead, dtype=np.int64))


def _insert_batch(docs: DocStore, rows: list[list[str]], position: int, counts: dict[str, int],
                  dead: list[int]) -> int:
    existing = docs.lookup(list(dict.fromkeys(row[0] for row in rows)))
    pending: dict[str, tuple[int, str, str, str, str]] = {}
    removed: list[int] = []
    for doc_id, text, meta, digest in rows:
        previous = pending.get(doc_id)
        if previous is not None:
            earlier, earlier_hash = previous[0], previous[4]
        elif doc_id in existing:
            earlier, earlier_hash = existing[doc_id]
        else:
            earlier, earlier_hash = None, None
        if earlier is None:
            pending[doc_id] = (position, doc_id, text, meta, digest)
            counts["added"] += 1
        elif earlier_hash == digest:  # the same record again: keep the first
            dead.append(position)
            counts["unchanged"] += 1
        else:  # a new version replaces the earlier one
            dead.append(earlier)
            if previous is None:
                removed.append(earlier)
                existing.pop(doc_id)
            pending[doc_id] = (position, doc_id, text, meta, digest)
            counts["replaced"] += 1
        position += 1
    if removed:
        docs.delete_iids(removed)
    docs.insert(sorted(pending.values()))
    return position
