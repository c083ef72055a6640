"""What an index reads from disk: manifest fields type-checked, only plain listed file names,
files hashed and parsed from the same bytes, never through a symlink."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search.index import IndexCorruptError, VectorIndex  # noqa: E402
from m2v_search.index.manifest import file_entry  # noqa: E402

DIM = 16


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, dict]:
    rng = np.random.default_rng(3)
    index = VectorIndex.create(tmp_path / "idx", dim=DIM, index_kind="flat")
    index.upsert([{"id": f"d{i}", "text": f"text {i}", "metadata": {"n": i}} for i in range(50)],
                 vectors=rng.standard_normal((50, DIM)))
    (tmp_path / "idx").mkdir()
    index.save()
    index.close()
    directory = tmp_path / "idx"
    return directory, json.loads((directory / "manifest.json").read_text())


def rewrite(directory: Path, manifest: dict) -> None:
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("dim"), "dim is missing"),
    (lambda m: m.update(dim="16"), "dim must be a positive integer, got str"),
    (lambda m: m.update(dim=True), "dim must be a positive integer, got bool"),
    (lambda m: m.update(dim=0), "dim must be a positive integer, got 0"),
    (lambda m: m.update(generation=7), "generation must be a string"),
    (lambda m: m.update(model=[]), "model must be an object"),
    (lambda m: m["index"].pop("factory"), "index.factory is missing"),
    (lambda m: m["index"].update(search_params=[1]), "index.search_params must be an object"),
    (lambda m: m["docstore"].update(file=3), "docstore.file must be a file name, got int"),
    (lambda m: m.update(files={}), "files lists no files"),
    (lambda m: next(iter(m["files"].values())).update(bytes="12"), "bytes must be a byte count"),
    (lambda m: next(iter(m["files"].values())).pop("sha256"), "sha256 is missing"),
    (lambda m: m.update(counts=5), "counts must be an object"),
])
def test_manifest_fields_are_type_checked(saved, change, message) -> None:
    directory, manifest = saved
    change(manifest)
    rewrite(directory, manifest)
    with pytest.raises(IndexCorruptError, match=message):
        VectorIndex.open(directory)


def test_manifest_errors_exit_4_from_the_cli(saved, capsys) -> None:
    from m2v_search.cli import index_main as main

    directory, manifest = saved
    manifest["index"].pop("kind")
    rewrite(directory, manifest)
    assert main(["info", str(directory)]) == 4
    assert "index.kind is missing" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../outside.faiss", "/etc/passwd", ".hidden.faiss", "sub/index.faiss", ".."])
def test_index_files_must_be_plain_names(saved, name: str) -> None:
    directory, manifest = saved
    manifest["index"]["file"] = name
    rewrite(directory, manifest)
    with pytest.raises(IndexCorruptError, match="plain file name"):
        VectorIndex.open(directory)


def test_files_the_index_opens_must_be_listed_and_verified(saved) -> None:
    directory, manifest = saved
    unlisted = directory / "index.unlisted.faiss"
    unlisted.write_bytes((directory / manifest["index"]["file"]).read_bytes())
    manifest["index"]["file"] = unlisted.name
    rewrite(directory, manifest)
    with pytest.raises(IndexCorruptError, match="not listed"):
        VectorIndex.open(directory)
    manifest["files"] = {"../escape": {"bytes": 1, "sha256": "0" * 64}}
    rewrite(directory, manifest)
    with pytest.raises(IndexCorruptError, match="unsafe file"):
        VectorIndex.open(directory)


def test_symlinks_are_never_followed(saved, tmp_path: Path) -> None:
    directory, manifest = saved
    for kind in ("index", "docstore"):
        path = directory / manifest[kind]["file"]
        outside = tmp_path / f"outside-{kind}"
        path.rename(outside)
        path.symlink_to(outside)  # same bytes, same checksum: refused all the same
        with pytest.raises(IndexCorruptError, match="symbolic link"):
            VectorIndex.open(directory)
        path.unlink()
        outside.rename(path)
    (directory / "manifest.json").rename(tmp_path / "manifest.json")
    (directory / "manifest.json").symlink_to(tmp_path / "manifest.json")
    with pytest.raises(IndexCorruptError, match="symbolic link"):
        VectorIndex.open(directory)


def test_hashed_bytes_are_the_parsed_bytes(saved, monkeypatch) -> None:
    """A file swapped right after it was hashed changes nothing: FAISS and SQLite parse the
    bytes that were hashed, not the file again."""
    import m2v_search.index.manifest as manifest_module

    directory, manifest = saved
    reader = manifest_module.read_plain_file

    def read_then_swap(path: Path, limit: int | None = None) -> bytes:
        data = reader(path, limit)
        if path.name != "manifest.json":
            path.write_bytes(b"swapped by an attacker" * 10)
        return data

    monkeypatch.setattr(manifest_module, "read_plain_file", read_then_swap)
    with VectorIndex.open(directory) as index:
        assert len(index) == 50 and index.verify() == []
        assert index.get(["d7"])[0].metadata == {"n": 7}


def test_checksummed_garbage_docstore_is_refused(saved) -> None:
    directory, manifest = saved
    name = manifest["docstore"]["file"]
    (directory / name).write_bytes(b"not sqlite" * 100)
    manifest["files"][name] = file_entry(directory / name)
    rewrite(directory, manifest)
    with pytest.raises(IndexCorruptError, match="docstore"):
        VectorIndex.open(directory)


def test_unknown_index_kind_is_corrupt(saved) -> None:
    directory, manifest = saved
    manifest["index"]["kind"] = "quantum"
    rewrite(directory, manifest)
    with pytest.raises(IndexCorruptError, match="quantum"):
        VectorIndex.open(directory)
    assert os.path.exists(directory / manifest["index"]["file"])
