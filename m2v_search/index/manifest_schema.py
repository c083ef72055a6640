"""What a manifest must hold: every field the index reads, with its type, checked before use.

A manifest with a field missing or of the wrong type is refused with an
:class:`~m2v_search.index.errors.IndexCorruptError` that names the field, instead of failing
later with a KeyError or TypeError. File names must be plain names inside the index directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from m2v_search.index.errors import IndexCorruptError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is a file name inside a directory: no separator, no ``..``, not hidden.

    Args:
        name: Anything.

    Returns:
        True for a non-empty str such as ``index.000001-ab12cd34.faiss``.
    """
    return (isinstance(name, str) and bool(name) and not name.startswith(".")
            and not any(char in name for char in "/\\\x00") and name not in (".", ".."))


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, what: str) -> IndexCorruptError:
        return IndexCorruptError(f"{self.path}: {where} {what}")

    def get(self, container: dict[str, Any], key: str, where: str, kinds: tuple[type, ...], description: str,
            required: bool = True) -> Any:
        label = f"{where}.{key}" if where else key
        if key not in container:
            if required:
                raise self.fail(label, "is missing")
            return None
        value = container[key]
        if value is None and not required:
            return None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.fail(label, f"must be {description}, got {type(value).__name__} {_short(value)}")
        return value

    def name(self, container: dict[str, Any], key: str, where: str) -> str:
        value = self.get(container, key, where, (str,), "a file name")
        if not is_plain_name(value):
            raise self.fail(f"{where}.{key}", f"must be a plain file name inside the index directory, got {value!r}")
        return value


def validate_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Check the fields the index reads; see the module docstring.

    Args:
        manifest: The parsed manifest (format and version already checked).
        path: The manifest's path (for messages).

    Raises:
        IndexCorruptError: A field is missing or of the wrong type, a file name is not plain,
            or the index or docstore file is not listed in ``files``.
    """
    check = _Checker(path)
    check.get(manifest, "generation", "", (str,), "a string")
    dim = check.get(manifest, "dim", "", (int,), "a positive integer")
    if dim < 1:
        raise check.fail("dim", f"must be a positive integer, got {dim}")
    model = check.get(manifest, "model", "", (dict,), "an object")
    if model.get("external") is not True:
        check.get(model, "fingerprint", "model", (str,), "a string")
        check.get(model, "name", "model", (str,), "a string", required=False)
        check.get(model, "path", "model", (str,), "a string or null", required=False)
    index = check.get(manifest, "index", "", (dict,), "an object")
    index_file = check.name(index, "file", "index")
    for key in ("kind", "factory"):
        check.get(index, key, "index", (str,), "a string")
    check.get(index, "search_params", "index", (dict,), "an object", required=False)
    check.get(index, "requested", "index", (str,), "a string or null", required=False)
    check.get(index, "requested_factory", "index", (str,), "a string or null", required=False)
    check.get(index, "memory_budget", "index", (int,), "an integer or null", required=False)
    docstore_file = check.name(check.get(manifest, "docstore", "", (dict,), "an object"), "file", "docstore")
    files = check.get(manifest, "files", "", (dict,), "an object")
    if not files:
        raise check.fail("files", "lists no files")
    for name, entry in files.items():
        if not is_plain_name(name):
            raise check.fail("files", f"names an unsafe file {name!r} (not a plain name inside the directory)")
        entry = check.get(files, name, "files", (dict,), "an object")
        size = check.get(entry, "bytes", f"files.{name}", (int,), "a byte count")
        digest = check.get(entry, "sha256", f"files.{name}", (str,), "a sha256 hex digest")
        if size < 0 or not _SHA256.fullmatch(digest):
            raise check.fail(f"files.{name}", "has an invalid size or sha256")
    for where, name in (("index.file", index_file), ("docstore.file", docstore_file)):
        if name not in files:
            raise check.fail(where, f"names {name!r}, which is not listed (and so not verified) in files")
    for key in ("counts", "build"):
        check.get(manifest, key, "", (dict,), "an object", required=False)
    retired = check.get(manifest, "retired", "", (list,), "a list of file names", required=False) or []
    for position, name in enumerate(retired):
        if not is_plain_name(name):
            raise check.fail(f"retired[{position}]", f"must be a plain file name, got {name!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
