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


def accept_as_is(directory: Path, manifest: dict, kind: str) -> None:
    """Record the current checksum of the ``kind`` file (index or docstore): a tampered file
    that passes the checksum, to test what is checked beyond it."""
    name = manifest[kind]["file"]
    manifest["files"][name] = file_entry(directory / name)
    rewrite(directory, manifest)


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
    """Files swapped right after they were hashed change nothing: FAISS and SQLite parse the
    bytes that were hashed, not the files again."""
    from m2v_search.index import generations

    directory, manifest = saved
    real = generations.read_verified_files

    def read_then_swap(directory_: Path, manifest_: dict) -> dict:
        contents = real(directory_, manifest_)
        for name in manifest_["files"]:
            (directory_ / name).write_bytes(b"swapped by an attacker" * 10)
        return contents

    monkeypatch.setattr(generations, "read_verified_files", read_then_swap)
    with VectorIndex.open(directory) as index:
        assert len(index) == 50 and index.verify() == []
        assert index.get(["d7"])[0].metadata == {"n": 7}
    assert (directory / manifest["index"]["file"]).read_bytes().startswith(b"swapped")


def test_checksummed_garbage_docstore_is_refused(saved) -> None:
    directory, manifest = saved
    name = manifest["docstore"]["file"]
    (directory / name).write_bytes(b"not sqlite" * 100)
    accept_as_is(directory, manifest, "docstore")
    with pytest.raises(IndexCorruptError, match="docstore"):
        VectorIndex.open(directory)


def test_unknown_index_kind_is_corrupt(saved) -> None:
    directory, manifest = saved
    manifest["index"]["kind"] = "quantum"
    rewrite(directory, manifest)
    with pytest.raises(IndexCorruptError, match="quantum"):
        VectorIndex.open(directory)
    assert os.path.exists(directory / manifest["index"]["file"])


def test_use_after_close_says_the_index_is_closed(saved) -> None:
    from m2v_search.index import IndexClosedError

    directory, _ = saved
    with VectorIndex.open(directory) as index:
        pass
    index.close()  # closing twice is fine
    for use in (lambda: index.search(np.ones(DIM), k=3), lambda: index.get(["d1"]), lambda: index.ids(),
                lambda: index.delete(["d1"]), lambda: index.upsert([{"id": "x", "text": "y"}], vectors=np.ones((1, DIM))),
                lambda: list(index.iter_records()), lambda: index.save(), lambda: index.verify(), lambda: index.clear()):
        with pytest.raises(IndexClosedError, match="index is closed"):
            use()
    empty = VectorIndex.create(dim=DIM)
    empty.close()
    with pytest.raises(IndexClosedError):
        empty.search(np.ones(DIM))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_vectors_are_refused(saved, bad: float) -> None:
    directory, _ = saved
    with VectorIndex.open(directory) as index:
        vectors = np.ones((3, DIM))
        vectors[1, 4] = bad
        with pytest.raises(ValueError, match=r"vectors\[1\] holds NaN or infinity"):
            index.upsert([{"id": f"n{i}", "text": "t"} for i in range(3)], vectors=vectors)
        assert len(index) == 50 and index.get(["n0"]) == []  # nothing of the batch was written
        with pytest.raises(ValueError, match=r"query vectors\[0\] holds NaN"):
            index.search(np.full(DIM, bad), k=3)
        with pytest.raises(ValueError, match=r"vectors\[0\] holds NaN"):
            index.add_texts(["x"], vectors=np.full((1, DIM), bad))
        with pytest.raises(ValueError, match="array of numbers"):
            index.upsert([{"id": "s", "text": "t"}], vectors=[["a"] * DIM])


@pytest.mark.parametrize("factory, message", [
    ("PQ7", "bad FAISS factory 'PQ7'.*multiple of the number of subquantizers"),
    ("Foo,Bar", "bad FAISS factory 'Foo,Bar'.*could not parse index string"),
])
def test_bad_factory_is_a_clear_value_error(factory: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        VectorIndex.create(dim=DIM * 2, factory=factory)
    assert "Error in" not in str(caught.value) and ".cpp" not in str(caught.value)


def test_ivf_with_more_lists_than_documents_fails_clearly_and_keeps_the_directory(tmp_path: Path) -> None:
    index = VectorIndex.create(tmp_path / "ivf", dim=DIM, factory="IVF1024,Flat")
    index.upsert([{"id": f"d{i}", "text": "t"} for i in range(100)], vectors=np.random.default_rng(0).random((100, DIM)))
    (tmp_path / "ivf").mkdir()
    with pytest.raises(ValueError, match=r"cannot train factory 'IVF1024,Flat' on 100 vectors: Number of training "
                                         r"points \(100\) should be at least as large as number of clusters \(1024\)"):
        index.save()
    assert list((tmp_path / "ivf").iterdir()) in ([], [tmp_path / "ivf" / ".lock"])  # nothing committed
    assert len(index.search(np.ones(DIM), k=3)) == 3  # still usable (exact) in memory


@pytest.mark.parametrize("options", [{"nprobe": -3}, {"nprobe": 0}, {"ef_search": 99999999999}, {"ef_search": 0},
                                     {"nprobe": 1.5}, {"nprobe": True}])
def test_search_parameters_out_of_range_are_refused(saved, options: dict) -> None:
    directory, _ = saved
    name = next(iter(options))
    with VectorIndex.open(directory) as index:
        with pytest.raises(ValueError, match=f"{name} must be an integer from 1 to 1048576"):
            index.search(np.ones(DIM), k=3, **options)
        setattr(index, name, options[name])  # the index-wide default is checked as well
        with pytest.raises(ValueError, match=name):
            index.search_batch(np.ones((2, DIM)), k=3)
        setattr(index, name, 2)
        assert len(index.search(np.ones(DIM), k=3)) == 3


def test_fifo_under_an_index_file_name_does_not_hang(saved) -> None:
    directory, manifest = saved
    path = directory / manifest["index"]["file"]
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(IndexCorruptError, match="not a regular file"):
        VectorIndex.open(directory)


def test_docstore_with_the_wrong_columns_is_refused(saved) -> None:
    import sqlite3

    directory, manifest = saved
    name = manifest["docstore"]["file"]
    (directory / name).unlink()
    with sqlite3.connect(directory / name) as db:
        db.executescript("CREATE TABLE docs (iid INTEGER, id TEXT); CREATE TABLE tombstones (iid INTEGER);"
                         "CREATE TABLE meta (key TEXT, value TEXT);")
    db.close()
    accept_as_is(directory, manifest, "docstore")
    with pytest.raises(IndexCorruptError, match="lacks docstore columns: docs.hash, docs.metadata, docs.text"):
        VectorIndex.open(directory)


def test_a_file_instead_of_a_directory_is_not_an_index(tmp_path: Path) -> None:
    from m2v_search.index import IndexNotFoundError

    (tmp_path / "file").write_text("x")
    with pytest.raises(IndexNotFoundError, match="is a file, not an index directory"):
        VectorIndex.open(tmp_path / "file")


@pytest.mark.parametrize("params, message", [({"nprobe": -5}, "search_params.nprobe must be from 1"),
                                             ({"efSearch": "x"}, "search_params.efSearch must be a positive integer"),
                                             ({"nlist": 10**12}, "search_params.nlist must be from 1")])
def test_manifest_search_parameters_are_checked(saved, params: dict, message: str) -> None:
    directory, manifest = saved
    manifest["index"]["search_params"] = params
    rewrite(directory, manifest)
    with pytest.raises(IndexCorruptError, match=message):
        VectorIndex.open(directory)


def test_checksummed_index_with_another_metric_is_refused(saved) -> None:
    import faiss

    directory, manifest = saved
    with VectorIndex.open(directory) as index:
        vectors = index.faiss_index.index.reconstruct_n(0, 50)
        ids = faiss.vector_to_array(index.faiss_index.id_map)
    l2 = faiss.index_factory(DIM, "IDMap2,Flat", faiss.METRIC_L2)
    l2.add_with_ids(vectors, ids)
    name = manifest["index"]["file"]
    faiss.write_index(l2, str(directory / name))
    accept_as_is(directory, manifest, "index")
    with pytest.raises(IndexCorruptError, match="inner-product metric"):
        VectorIndex.open(directory)


def test_checksummed_docstore_with_a_stale_next_id_is_refused(saved) -> None:
    import sqlite3

    directory, manifest = saved
    name = manifest["docstore"]["file"]
    with sqlite3.connect(directory / name) as db:
        db.execute("UPDATE meta SET value='3' WHERE key='next_iid'")  # new documents would reuse ids 3, 4, ...
    db.close()
    accept_as_is(directory, manifest, "docstore")
    with pytest.raises(IndexCorruptError, match="next id '3' is not a number past its largest id 49"):
        VectorIndex.open(directory)


@pytest.mark.parametrize("failure", [MemoryError("out of memory"), KeyboardInterrupt()])
def test_a_write_interrupted_midway_closes_the_index_and_keeps_the_saved_state(saved, failure, monkeypatch) -> None:
    """A replacement whose vectors the backend fails to add (after the old vectors and rows were
    removed) cannot leave a half-changed index to search or save: the index closes, saying why,
    and the directory still opens with the documents saved before."""
    from m2v_search.index import IndexClosedError

    directory, _ = saved
    index = VectorIndex.open(directory)
    before = index.get(["d1"])[0]

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(type(index.backend), "add", fail)
    with pytest.raises(type(failure)):
        index.upsert([{"id": "d1", "text": "replaced"}, {"id": "new", "text": "added"}], vectors=np.ones((2, DIM)))
    monkeypatch.undo()
    for use in (lambda: index.search(np.ones(DIM), k=3), lambda: index.get(["d1"]), lambda: index.save(),
                lambda: index.upsert([{"id": "x", "text": "y"}], vectors=np.ones((1, DIM)))):
        with pytest.raises(IndexClosedError, match="upsert failed midway"):
            use()
    index.close()
    with VectorIndex.open(directory) as reopened:
        assert len(reopened) == 50 and reopened.get(["d1"])[0].text == before.text
        assert reopened.get(["new"]) == [] and reopened.verify() == []
