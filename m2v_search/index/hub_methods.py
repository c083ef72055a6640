"""``VectorIndex.push_to_hub`` and ``VectorIndex.from_hub``: the index's methods over
:mod:`m2v_search.index.hub` (which works on saved index directories).

A push uploads what is saved on disk, so it is refused while the index in memory has writes
that are not saved: every write either lowers the document count (delete, clear) or raises
the next int id the docstore hands out (insert, replace), so the pair taken at the last
open or save tells whether anything changed since.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from m2v_search.index.errors import IndexConflictError
from m2v_search.index.generations import generation_on_disk

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index.docstore import DocStore
    from m2v_search.model import StaticModel

_Index = TypeVar("_Index", bound="HubMethods")


class HubMethods:
    """Hub push and download for :class:`m2v_search.index.store.VectorIndex` (a mixin: it reads
    the index's path, lock, docstore, document count and generation)."""

    path: Path | None
    _lock: threading.RLock
    _docs: DocStore
    _count: int
    _generation: str | None
    _saved_state: tuple[int, str | None] | None = None

    def _mark_saved(self) -> None:
        """Remember the state of the index as it is on disk now (after an open or a save)."""
        self._saved_state = (self._count, self._docs.get_meta("next_iid"))

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload this index as it is saved on disk to a Hugging Face hub dataset repository.

        Args:
            repo_id: ``owner/name`` of the dataset repository (created when missing).
            **kwargs: Arguments of ``m2v_search.index.hub.push_index_to_hub``: ``private``,
                ``token``, ``commit_message``, ``revision``, ``include_model``.

        Returns:
            The URL of the commit.

        Raises:
            ValueError: The index was never saved, or has writes since its last save
                (``save()`` first: what is pushed is the saved directory).
            IndexConflictError: Another writer changed the directory since this index was opened.
            HubUnavailableError: HF_HUB_OFFLINE is set or the hub cannot be reached.
        """
        from m2v_search.index.hub import push_index_to_hub

        with self._lock:
            if self.path is None or self._saved_state is None:
                raise ValueError("this index was never saved; save(path) it first: push_to_hub uploads the "
                                 "saved directory")
            if (self._count, self._docs.get_meta("next_iid")) != self._saved_state:
                raise ValueError(f"this index has changes not saved to {self.path}; save() it first: "
                                 "push_to_hub uploads the saved directory")
            on_disk = generation_on_disk(self.path)
            if on_disk != self._generation:
                raise IndexConflictError(f"{self.path} was changed by another writer since it was opened "
                                         f"(generation {self._generation} -> {on_disk}); open it again")
            directory = self.path
        return push_index_to_hub(directory, repo_id, **kwargs)

    @classmethod
    def from_hub(cls: type[_Index], repo_id: str, *, model: StaticModel | str | None = None,
                 **kwargs: Any) -> _Index:
        """Download an index pushed with :meth:`push_to_hub` (every file's sha256 checked) and open it.

        Args:
            repo_id: ``owner/name`` of the dataset repository.
            model: The model to encode queries with (default: the model uploaded with the index,
                ``include_model=True``, else the one its manifest records).
            **kwargs: Arguments of ``m2v_search.index.hub.index_from_hub``: ``revision``,
                ``token``, ``cache_dir``, ``local_dir``, ``force_download``. Pass ``local_dir``
                for an index you will change and save: the hub cache holds shared snapshots.

        Returns:
            The index.

        Raises:
            HubUnavailableError: Offline without a cached copy, or the hub cannot be reached.
            IndexNotFoundError: The repository, revision or its manifest does not exist.
            IndexCorruptError: A downloaded file does not match the manifest.
            ModelMismatchError: ``model`` differs from the one the index was built with.
        """
        from m2v_search.index.hub import index_from_hub, model_folder

        directory = index_from_hub(repo_id, **kwargs)
        if model is None and (uploaded := model_folder(directory)) is not None:
            model = str(uploaded)
        return cls.open(directory, model=model)  # type: ignore[attr-defined, no-any-return]
