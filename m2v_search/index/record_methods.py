"""Record-level conveniences of an index: add plain texts (ids minted when missing), list records.

``RecordMethods`` is a mixin of :class:`~m2v_search.index.store.VectorIndex`; it needs the
index's ``upsert`` and its docstore.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from m2v_search.index.records import Record, id_list, refuse_single_id


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
            TypeError: ``texts`` is a single str, an id is neither a str nor an int, or a metadata
                is not a dict.
        """
        refuse_single_id(texts, "texts")
        texts = list(texts)
        chosen = [uuid.uuid4().hex for _ in texts] if ids is None else id_list(ids)
        if len(chosen) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(chosen)} ids")
        metadata_list = [None] * len(texts) if metadatas is None else list(metadatas)
        if len(metadata_list) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(metadata_list)} metadatas")
        for position, metadata in enumerate(metadata_list):
            if metadata is not None and not isinstance(metadata, Mapping):
                raise TypeError(f"metadatas[{position}] is {type(metadata).__name__}, expected a dict or None")
        records = [Record(doc_id, text, dict(metadata) if metadata else {})
                   for doc_id, text, metadata in zip(chosen, texts, metadata_list)]
        return self.upsert(records, vectors=vectors)

    def iter_records(self) -> Iterator[Record]:
        """Every stored document, in insertion order: those stored when the iteration starts
        (documents added or replaced during it are not visited, so a loop may rewrite what it reads)."""
        for _, doc_id, text, meta, _ in self._docs.iter_rows():
            yield Record(doc_id, text, json.loads(meta))
