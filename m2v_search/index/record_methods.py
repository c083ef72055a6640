"""Record-level conveniences of an index: add plain texts (ids minted when missing), list records.

``RecordMethods`` is a mixin of :class:`~m2v_search.index.store.VectorIndex`; it needs the
index's ``upsert`` and its docstore.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from m2v_search.index.records import Record


class RecordMethods:
    """``add_texts`` and ``iter_records`` over an index's ``upsert`` and docstore."""

    _docs: Any  # the index's docstore; ``self.upsert`` is the index's (DocumentCollection.upsert)

    def add_texts(self, texts: Iterable[str], *, ids: Sequence[str] | None = None,
                  metadatas: Sequence[dict[str, Any]] | None = None, vectors: np.ndarray | None = None
                  ) -> list[str]:
        """Add texts; an existing id is replaced.

        Args:
            texts: The texts.
            ids: Their ids (None: new uuid4 hex ids).
            metadatas: Their metadata (None: none).
            vectors: Their vectors, instead of encoding the texts.

        Returns:
            The ids, in order.

        Raises:
            ValueError: ``ids``, ``metadatas`` or ``vectors`` do not match ``texts`` in length.
        """
        texts = list(texts)
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(metadatas)} metadatas")
        chosen = [uuid.uuid4().hex for _ in texts] if ids is None else [str(i) for i in ids]
        records = [Record(doc_id, text, dict(metadatas[i]) if metadatas is not None and metadatas[i] else {})
                   for i, (doc_id, text) in enumerate(zip(chosen, texts))]
        return self.upsert(records, vectors=vectors)

    def iter_records(self) -> Iterator[Record]:
        """Every stored document, in insertion order."""
        for _, doc_id, text, meta, _ in self._docs.iter_rows():
            yield Record(doc_id, text, json.loads(meta))
