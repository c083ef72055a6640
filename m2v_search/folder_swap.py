"""Replacing a folder as a whole: a save is staged in a new folder, then swapped in with renames, so
that a failed or interrupted save leaves the old folder usable. Folders that cannot be renamed (mount
points, the working folder) get their entries renamed into place one by one instead, all put back if
one rename fails."""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path

from m2v_search.errors import ModelLoadError


def save_target(path: str | os.PathLike[str]) -> Path:
    """The absolute folder a save writes: a link to a folder is followed, so that the files land in
    the folder it names and the link stays a link ("." and ".." get a name to stage beside)."""
    absolute = Path(os.path.abspath(path))
    return Path(os.path.realpath(absolute)) if absolute.is_symlink() and absolute.is_dir() else absolute


def make_staging(target: Path, suffix: str = ".tmp") -> Path:
    """A new empty folder to build a replacement of ``target`` in (the parent is created): beside
    ``target``, or inside it when ``target`` must be written in place (``_in_place``).

    Made with ``os.mkdir(..., 0o777)``, so that the umask gives it the mode any new folder gets
    (``tempfile.mkdtemp`` makes 0700 folders: a model saved with it was unreadable to other users).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    inside = _in_place(target)
    for _ in range(100):
        tag = secrets.token_hex(4)
        staging = target / f".m2v-save.{tag}{suffix}" if inside else target.parent / f".{target.name}.{tag}{suffix}"
        try:
            os.mkdir(staging, 0o777)
        except FileExistsError:
            continue
        return staging
    raise FileExistsError(f"cannot make a staging folder for {target}: every name tried exists")


# what a save leaves in a folder only when killed: never a user's file to carry over
_LEFTOVER = re.compile(r"\.m2v-save\.[0-9a-f]{8}\..+|\..+\.[0-9a-f]{8}\.old")
_LEFTOVER_AGE = 3600.0  # seconds: younger leftovers may belong to a save still running in another process


def swap_in(staging: Path, target: Path, replaced: set[str] | frozenset[str]) -> None:
    """Make the complete folder ``staging`` become ``target`` with renames (fsynced first).

    Entries of an existing ``target`` whose names are not in ``replaced`` are copied over,
    so that files other tools put there survive, and the folder keeps its mode. Should the
    second rename fail (or be interrupted), the old ``target`` is put back. A ``target`` that
    cannot be renamed (``_in_place``: ``staging`` was made inside it) has its entries renamed
    into place one by one instead, all put back if one rename fails.

    Raises:
        ModelLoadError: ``target`` exists and is a file.
    """
    for file in staging.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    if staging.parent == target:
        _replace_inside(staging, target, replaced)
        return
    if not target.exists():
        os.rename(staging, target)
        return
    if not target.is_dir():
        raise ModelLoadError(f"cannot save a model to {target}: it is a file")
    for extra in target.iterdir():  # keep what the user put there
        if extra.name not in replaced and not _LEFTOVER.fullmatch(extra.name):
            _carry_over(extra, staging / extra.name)
    os.chmod(staging, stat.S_IMODE(target.stat().st_mode))
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _in_place(target: Path) -> bool:
    """Whether ``target`` must be written inside rather than swapped: an existing folder that is a
    mount point (bind mounts of one file system included) or holds the working folder (a shell
    standing in it would be left in a deleted folder)."""
    if not target.is_dir() or target.is_symlink():
        return False
    return _holds_working_folder(target) or os.path.ismount(target) or os.path.realpath(target) in _mount_points()


def _mount_points() -> set[str]:
    """The mount points this process sees (Linux's ``/proc/self/mountinfo``; empty elsewhere)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return set()
    unescape = functools.partial(re.compile(r"\\([0-7]{3})").sub, lambda match: chr(int(match.group(1), 8)))
    return {unescape(fields[4]) for fields in (line.split(" ") for line in lines) if len(fields) > 4}


def _replace_inside(staging: Path, target: Path, replaced: set[str] | frozenset[str]) -> None:
    """Rename each entry of ``staging`` (a folder inside ``target``) over ``target``'s entry of that name,
    and retire the entries of ``replaced`` that the new folder lacks; if a rename fails, every entry
    is put back. A file is swapped in one step (the old one kept under a hard link until the end), a
    folder in two renames; a kill leaves the new files beside the old ones, none missing."""
    names = sorted((entry.name for entry in staging.iterdir()), key=lambda name: (name == "config.json", name))
    stale = [name for name in sorted(replaced) if name not in names and os.path.lexists(target / name)]
    retired: dict[Path, Path] = {}  # an old entry's path -> where it is parked
    placed: list[Path] = []
    swapped: set[Path] = set()  # placed with one replace over the old file
    try:
        for name in names + stale:
            old, new = target / name, staging / name
            if os.path.lexists(old):
                parked = target / f".{name}.{secrets.token_hex(4)}.old"
                if name in names and _plain_file(old) and _plain_file(new) and _hard_link(old, parked):
                    try:
                        os.replace(new, old)  # a file is swapped in one step: never missing, even after a kill
                    except BaseException:
                        parked.unlink()
                        raise
                    retired[old] = parked
                    placed.append(old)
                    swapped.add(old)
                    continue
                os.rename(old, parked)
                retired[old] = parked
            if name in names:
                os.rename(new, old)
                placed.append(old)
    except BaseException:
        for new in reversed(placed):
            if new not in swapped:
                os.rename(new, staging / new.name)  # out of the way of the parked entry
        for old, parked in retired.items():
            os.replace(parked, old)  # a file replaced in one step, as it was placed
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for parked in retired.values():
        _remove(parked)
    stale_before = time.time() - _LEFTOVER_AGE
    for leftover in target.iterdir():  # what killed saves left (not another process's running save)
        if _LEFTOVER.fullmatch(leftover.name) and leftover != staging and leftover.lstat().st_mtime < stale_before:
            _remove(leftover)
    staging.rmdir()


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _hard_link(source: Path, link: Path) -> bool:
    """Whether ``link`` now names ``source``'s file (False where the file system has no hard links)."""
    try:
        os.link(source, link)
    except OSError:
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _carry_over(source: Path, destination: Path) -> None:
    """Put a user's entry of the old folder into the new one: links stay links (never followed: one to
    a parent folder would recurse), files are hard-linked where the file system allows (no copy of a
    large data file on every save), copied otherwise."""
    if source.is_symlink():
        os.symlink(os.readlink(source), destination)
    elif source.is_dir():
        shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, destination)


def _link_or_copy(source: str | Path, destination: str | Path) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


def _holds_working_folder(folder: Path) -> bool:
    """Whether the working folder is ``folder`` or inside it."""
    try:
        cwd = Path.cwd()
    except OSError:  # deleted under us
        return False
    absolute = Path(os.path.abspath(folder))
    folder = Path(os.path.realpath(absolute.parent)) / absolute.name  # links resolved, as in the cwd
    return cwd == folder or folder in cwd.parents
