"""Hostile input on the write paths and on what they read back: partition listings, index files
replaced by other kinds of files, leftovers of killed writers, ids files, and HTTP writes.

Each test names the defect it guards against (what happened before the fix)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("faiss")

from m2v_search.index import IndexCorruptError, IndexNotFoundError, VectorIndex  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def m2v_index(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``m2v-index ARGUMENTS`` in a subprocess (this checkout first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "m2v_search.index", *arguments], capture_output=True, text=True,
                          env=env, input=stdin, timeout=120)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-document index built with the bundled model (copy it before writing)."""
    folder = tmp_path_factory.mktemp("small")
    index = VectorIndex.create(folder / "index")
    index.add_texts([f"document {i} about cats and dogs" for i in range(20)], ids=[f"d{i}" for i in range(20)])
    index.save()
    index.close()
    return folder / "index"


@pytest.fixture()
def index_copy(small_index: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(small_index, tmp_path / "index"))


# ---------------------------------------------------------------------- partitioned indexes
@pytest.fixture(scope="module")
def partitioned_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from m2v_search.index.partitioned import build_partitioned_indexes

    folder = tmp_path_factory.mktemp("partitioned")
    inputs = {key: str(write_jsonl(folder / f"{key}.jsonl", [{"id": f"{key}{i}", "text": f"{word} {i}"}
                                                             for i in range(10)]))
              for key, word in (("en", "cats"), ("de", "dogs"))}
    build_partitioned_indexes(inputs, folder / "root", show_progress=False)
    return folder / "root"


@pytest.fixture()
def listing_root(partitioned_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(partitioned_root, tmp_path / "root", symlinks=True))


def write_listing(root: Path, partitions: object, **fields: object) -> None:
    listing = {"format": "m2v-search-partitioned-index", "format_version": 1, "partitions": partitions, **fields}
    (root / "partitions.json").write_text(json.dumps(listing))


@pytest.mark.parametrize("path", [5, True, None, ["en"]], ids=["int", "bool", "null", "list"])
def test_a_partition_path_that_is_not_text_is_an_unsafe_partition(listing_root: Path, path: object) -> None:
    # Before: str(path) passed the name check ("5", "True"), then Path / 5 raised a bare TypeError.
    from m2v_search.index.partitioned import PartitionedIndex

    write_listing(listing_root, {"en": {"path": path}})
    with pytest.raises(IndexCorruptError, match="unsafe partition 'en'"):
        PartitionedIndex.open(listing_root)


@pytest.mark.parametrize("target", ["outside", "../outside", "de"], ids=["absolute", "relative-up", "sibling"])
def test_a_partition_folder_that_is_a_symlink_is_refused(listing_root: Path, small_index: Path, target: str) -> None:
    # Before: ROOT/evil -> any index on the machine was opened and searched as partition 'en'.
    from m2v_search.index.partitioned import PartitionedIndex

    outside = listing_root.parent / "outside"
    shutil.copytree(small_index, outside)
    os.symlink(outside if target == "outside" else target, listing_root / "evil")
    write_listing(listing_root, {"en": {"path": "evil"}})
    with pytest.raises(IndexCorruptError, match="partition 'en' .* is a symbolic link"):
        PartitionedIndex.open(listing_root)


def test_a_partitions_json_that_is_a_symlink_is_refused(listing_root: Path, partitioned_root: Path) -> None:
    # Before: the link was followed, and its listing's partitions resolved against this root.
    from m2v_search.index.partitioned import PartitionedIndex

    (listing_root / "partitions.json").unlink()
    os.symlink(partitioned_root / "partitions.json", listing_root / "partitions.json")
    with pytest.raises(IndexCorruptError, match="partitions.json is a symbolic link"):
        PartitionedIndex.open(listing_root)


def test_a_partitions_json_that_is_a_folder_or_a_root_that_is_a_file_is_named(listing_root: Path) -> None:
    # Before: IsADirectoryError "Is a directory: 3" (a file descriptor, not a path) and NotADirectoryError.
    from m2v_search.index.partitioned import PartitionedIndex

    (listing_root / "partitions.json").unlink()
    (listing_root / "partitions.json").mkdir()
    with pytest.raises(IndexCorruptError, match="partitions.json is not a regular file"):
        PartitionedIndex.open(listing_root)
    a_file = listing_root / "en.txt"
    a_file.write_text("x")
    with pytest.raises(IndexNotFoundError, match="en.txt is a file, not a partitioned index folder"):
        PartitionedIndex.open(a_file)


def test_a_listed_partition_that_is_missing_is_named_with_its_listing(listing_root: Path) -> None:
    # Before: "index directory ROOT/fr does not exist", not saying it came from partitions.json.
    from m2v_search.index.partitioned import PartitionedIndex

    write_listing(listing_root, {"en": {"path": "en"}, "fr": {"path": "fr"}})
    with pytest.raises(IndexNotFoundError, match=r"partition 'fr' of .*partitions.json: index directory .*fr"):
        PartitionedIndex.open(listing_root)


def test_a_listing_of_a_newer_format_version_is_refused(listing_root: Path) -> None:
    # Before: any format_version was read as version 1.
    from m2v_search.index.partitioned import PartitionedIndex

    write_listing(listing_root, {"en": {"path": "en"}}, format_version=2)
    with pytest.raises(IndexCorruptError, match="format version 2"):
        PartitionedIndex.open(listing_root)


def test_a_good_listing_still_opens_every_partition(listing_root: Path) -> None:
    from m2v_search.index.partitioned import PartitionedIndex

    with PartitionedIndex.open(listing_root) as both:
        assert sorted(both.keys) == ["de", "en"] and len(both) == 20
        assert {hit.partition for hit in both.search("cats", k=3)} == {"en"}


def test_a_partitioned_index_takes_the_model_mismatch_switch_its_error_names(listing_root: Path) -> None:
    # Before: the mismatch error said "force it (allow_model_mismatch=True)", but PartitionedIndex.open
    # took no such argument (TypeError when the hint was followed).
    from m2v_search.index import ModelMismatchError
    from m2v_search.index.partitioned import PartitionedIndex

    with pytest.raises(ModelMismatchError, match="allow_model_mismatch=True"):
        PartitionedIndex.open(listing_root, model="m2v-base-v1")
    with PartitionedIndex.open(listing_root, model="m2v-base-v1", allow_model_mismatch=True) as both:
        assert {index.model.name for index in both.indexes.values()} == {"m2v-base-v1"}
        assert len(both.search("cats", k=3)) == 3


def test_a_partitioned_build_keeps_an_applications_partitions_json_and_refuses_that_key(tmp_path: Path) -> None:
    # Before: build_partitioned_indexes replaced another program's partitions.json (locally and on S3),
    # and a partition keyed "partitions.json" was built, then the listing's rename failed (IsADirectoryError).
    from m2v_search.index import OutputDirectoryError
    from m2v_search.index.partitioned import build_partitioned_indexes

    corpus = str(write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "cats"}, {"id": "b", "text": "dogs"}]))
    root = tmp_path / "root"
    root.mkdir()
    (root / "partitions.json").write_text('{"app": "my settings"}')
    with pytest.raises(OutputDirectoryError, match="is not an m2v-search partition listing"):
        build_partitioned_indexes({"en": corpus}, root, show_progress=False)
    assert (root / "partitions.json").read_text() == '{"app": "my settings"}' and not (root / "en").exists()
    with pytest.raises(ValueError, match="is the name of the listing file"):
        build_partitioned_indexes({"partitions.json": corpus}, tmp_path / "other", show_progress=False)
    assert not (tmp_path / "other").exists()
    (root / "partitions.json").write_text("not json at all")  # a damaged listing of ours is replaced
    build_partitioned_indexes({"en": corpus}, root, show_progress=False)
    assert json.loads((root / "partitions.json").read_text())["partitions"]["en"]["documents"] == 2


# ---------------------------------------------------------------------- index files that are not plain files
def test_a_manifest_that_is_a_folder_is_a_corrupt_index_naming_it(index_copy: Path) -> None:
    # Before: "m2v-index verify: error: 3: Is a directory" (the descriptor number), exit 3 (bad input).
    (index_copy / "manifest.json").unlink()
    (index_copy / "manifest.json").mkdir()
    for command in (["verify", str(index_copy)], ["delete", str(index_copy), "d1"]):
        result = m2v_index(*command)
        assert result.returncode == 4, result.stderr
        assert f"{index_copy / 'manifest.json'} is not a regular file" in result.stderr


# ---------------------------------------------------------------------- leftovers of a killed writer
def test_the_next_commit_removes_what_a_writer_killed_mid_commit_was_staging(index_copy: Path,
                                                                             tmp_path: Path) -> None:
    # Before: a writer killed (SIGTERM, SIGKILL) while writing a generation left its staged copies
    # (.index.<generation>.faiss.tmp, .docstore.<generation>.sqlite.tmp: a whole index each)
    # in the directory, and no later write ever removed them.
    staged = [".index.000002-0123abcd.faiss.tmp", ".docstore.000002-0123abcd.sqlite.tmp",
              ".lexical.000002-0123abcd.npz.tmp", ".lexical.000002-0123abcd.json.tmp"]
    others = [".index.old.faiss.tmp", ".notes.tmp", "index.000002-0123abcd.faiss.tmp", ".index.000002-0123abcd.faiss"]
    for name in staged + others:
        (index_copy / name).write_bytes(b"x" * 1000)
    result = m2v_index("add", str(index_copy), str(write_jsonl(tmp_path / "one.jsonl", [{"id": "n", "text": "new"}])),
                       "--quiet")
    assert result.returncode == 0, result.stderr
    left = {path.name for path in index_copy.iterdir()}
    assert not left & set(staged) and set(others) <= left  # only the exact staged names are removed
    verified = m2v_index("verify", str(index_copy))
    assert verified.returncode == 0 and json.loads(verified.stdout)["documents"] == 21


# ---------------------------------------------------------------------- m2v-index delete --ids-file
def test_an_ids_file_with_a_byte_order_mark_deletes_its_first_id(index_copy: Path, tmp_path: Path) -> None:
    # Before: the mark stayed in the first id ('\ufeffd1'), which matched nothing: d1 was silently kept.
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes("\ufeffd1\r\nd2\r\n".encode())
    result = m2v_index("delete", str(index_copy), "--ids-file", str(ids_file), "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == 2
    with VectorIndex.open(index_copy) as index:
        assert index.get(["d1", "d2"]) == [] and len(index) == 18


@pytest.mark.parametrize("content", ["", "\n  \n\r\n"], ids=["empty", "blank-lines"])
def test_an_ids_file_without_ids_is_named(index_copy: Path, tmp_path: Path, content: str) -> None:
    # Before: "give the ids to delete, or --ids-file FILE", as if no --ids-file had been given.
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(content)
    result = m2v_index("delete", str(index_copy), "--ids-file", str(ids_file), "--quiet")
    assert result.returncode == 3 and f"ids file {ids_file} holds no ids" in result.stderr, result.stderr
    piped = m2v_index("delete", str(index_copy), "--ids-file", "-", "--quiet", stdin=content)
    assert piped.returncode == 3 and "ids file <stdin> holds no ids" in piped.stderr, piped.stderr


def test_a_corpus_integer_past_64_bits_is_refused_naming_the_line(tmp_path: Path) -> None:
    """Before: a fresh build stored it (the value walk ran only on lines with NaN, \\u or deep nesting),
    and no filter could compare it afterwards."""
    corpus = write_jsonl(tmp_path / "big.jsonl", [{"id": "a", "text": "fine", "metadata": {"x": 2**63 - 1}},
                                                  {"id": "b", "text": "t", "metadata": {"x": 2**70}}])
    result = m2v_index("build", str(corpus), "-o", str(tmp_path / "index"))
    assert result.returncode == 3, result.stderr
    assert "big.jsonl: line 2: metadata field 'x' is an integer outside the signed 64-bit range" in result.stderr


def test_a_build_that_writes_nothing_leaves_no_folders(tmp_path: Path) -> None:
    """Before: `build missing.jsonl -o a/b/c` failed but left a/b/c holding only the lock file."""
    result = m2v_index("build", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "a" / "b" / "c"))
    assert result.returncode == 3, result.stderr
    assert not (tmp_path / "a").exists()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x"}])  # no text
    (tmp_path / "kept").mkdir()
    assert m2v_index("build", str(bad), "-o", str(tmp_path / "kept" / "new")).returncode == 3
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "new").exists()


def test_output_inside_a_file_and_a_zero_memory_budget_are_usage_errors(tmp_path: Path) -> None:
    """Before: exit 3 with the OS's 'Not a directory', and the Python API's memory_budget message."""
    corpus = write_jsonl(tmp_path / "ok.jsonl", [{"id": "1", "text": "hello"}])
    (tmp_path / "afile").write_text("x")
    inside = m2v_index("build", str(corpus), "-o", str(tmp_path / "afile" / "sub"))
    assert inside.returncode == 2 and "afile is a file" in inside.stderr
    zero = m2v_index("build", str(corpus), "-o", str(tmp_path / "index"), "--memory-budget", "0")
    assert zero.returncode == 2 and "--memory-budget" in zero.stderr
