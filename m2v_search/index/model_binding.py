"""Which static model an index is bound to: loading it (cached per process) and checking it
against the model a saved index records."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2v_search.index.errors import ModelMismatchError

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

log = logging.getLogger("m2v_search.index")

_MODEL_CACHE: dict[tuple[str, int], StaticModel] = {}
_CACHE_SIZE = 4


def model_source(name_or_path: str | None) -> str:
    """What the manifest records for a model given by name or path: bundled name or absolute path.

    Args:
        name_or_path: A bundled model name, a model folder, or None for the default model.

    Returns:
        The bundled name, or the absolute path of an existing folder (else the text as given).
    """
    from m2v_search.persistence import DEFAULT_MODEL_NAME, bundled_model_names

    if name_or_path is None:
        return DEFAULT_MODEL_NAME
    if name_or_path in bundled_model_names() or name_or_path == DEFAULT_MODEL_NAME:
        return name_or_path
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def load_model(model: StaticModel | str | os.PathLike[str] | None, model_path: str | None = None
               ) -> tuple[StaticModel, str | None]:
    """The model to bind an index to, and the source the manifest records for it.

    A model given by name or folder is loaded once per process (until its files change).

    Args:
        model: A StaticModel, a bundled model name, a model folder, or None for the default model.
        model_path: The source to record for an in-memory StaticModel (None: its bundled name, if any).

    Returns:
        ``(model, source)``; ``source`` is None for an in-memory model that has no folder.

    Raises:
        TypeError: ``model`` is none of the accepted types.
    """
    from m2v_search.model import StaticModel

    if isinstance(model, StaticModel):
        if model_path is None:
            from m2v_search.persistence import bundled_model_names

            model_path = model.name if model.name in bundled_model_names() else None
        return model, model_path
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a StaticModel, a name or a folder, got {type(model).__name__}")
    source = model_source(None if model is None else os.fspath(model))
    key = (source, _mtime(source))
    if key not in _MODEL_CACHE:  # reopening an index in one process does not reload its model
        if len(_MODEL_CACHE) >= _CACHE_SIZE:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = StaticModel.from_pretrained(None if model is None else os.fspath(model))
    return _MODEL_CACHE[key], model_path or source


def _mtime(source: str) -> int:
    from m2v_search.persistence import BUNDLED_MODELS_DIR

    for folder in (Path(source), BUNDLED_MODELS_DIR / source):
        try:
            return max(p.stat().st_mtime_ns for p in folder.iterdir())
        except (OSError, ValueError):
            continue
    return 0


def model_for_manifest(manifest: dict[str, Any], model: StaticModel | str | None, allow_mismatch: bool,
                       directory: Path) -> tuple[StaticModel | None, str | None]:
    """The model to open a saved index with, checked against the one its manifest records.

    Args:
        manifest: The index's parsed manifest.
        model: The model asked for, or None for the one recorded.
        allow_mismatch: Accept a model whose fingerprint differs from the recorded one.
        directory: The index directory (for messages).

    Returns:
        ``(model, source)``; ``(None, None)`` for an index of vectors computed elsewhere.

    Raises:
        ModelMismatchError: The model differs from the recorded one, or none can be loaded.
    """
    from m2v_search.fingerprint import has_fingerprint

    recorded = manifest["model"]
    if recorded.get("external"):
        if model is not None and not allow_mismatch:
            raise ModelMismatchError(f"{directory} holds vectors computed elsewhere (no model); open it without "
                                     "model=, or force a model (allow_model_mismatch=True) whose vectors match")
        if model is None:
            return None, None
    if model is None:
        if not recorded.get("path"):
            raise ModelMismatchError(f"{directory} was built with an in-memory model ({recorded.get('name')!r}) "
                                     "whose folder was not recorded: pass model=")
        loaded, source = load_model(recorded["path"], recorded["path"])
        if not has_fingerprint(loaded, recorded.get("fingerprint")) and _is_bundled(recorded["path"]):
            holder = _bundled_model_holding(recorded.get("fingerprint"), skip=recorded["path"])
            if holder is not None:  # the bundled name now holds another model: open with the one that has the vectors
                log.info("%s was built with the bundled model %r as it was then; opening it with %r",
                         directory, recorded["path"], holder)
                loaded, source = load_model(holder, holder)
    else:
        loaded, source = load_model(model, None)
        source = source or recorded.get("path")
    if loaded.dim != manifest["dim"]:
        raise ModelMismatchError(f"{directory} holds {manifest['dim']}-dim vectors; model {loaded.name!r} "
                                 f"gives {loaded.dim}")
    if not has_fingerprint(loaded, recorded.get("fingerprint")) and not allow_mismatch:
        holder = _bundled_model_holding(recorded.get("fingerprint"))
        raise ModelMismatchError(
            f"{directory} was built with model {recorded.get('name')!r} (fingerprint "
            f"{str(recorded.get('fingerprint'))[:12]}), but {loaded.name!r} has fingerprint "
            f"{loaded.fingerprint[:12]}; use the same model"
            + (f" (the bundled {holder!r} holds its vectors)" if holder else "")
            + ", or force it (allow_model_mismatch=True, --force-model) knowing that its vectors are not comparable")
    return loaded, source


def _is_bundled(name: str) -> bool:
    from m2v_search.persistence import bundled_model_names

    return name in bundled_model_names()


def _bundled_model_holding(fingerprint: str | None, skip: str | None = None) -> str | None:
    """The name of a bundled model (other than ``skip``) whose vectors have ``fingerprint``: an index
    recorded under ``m2v-base`` before the default changed was made with ``m2v-base-v1``."""
    from m2v_search.fingerprint import has_fingerprint
    from m2v_search.persistence import bundled_model_names

    for name in bundled_model_names():
        if name != skip and has_fingerprint(load_model(name, name)[0], fingerprint):
            return name
    return None
