"""Hostile input on VectorIndex's Python API, found by an outside-style review (2026-11-30).

Each test names the defect it guards against (what happened before the fix)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search import StaticModel  # noqa: E402
from m2v_search.index import IndexConflictError, IndexCorruptError, VectorIndex  # noqa: E402
from m2v_search.index import generations  # noqa: E402

TEXTS = ["the cat sat on the mat", "dogs bark at night", "a recipe for apple pie"]


def saved(path: Path, **create: object) -> VectorIndex:
    index = VectorIndex.create(path, **create)
    index.add_texts(TEXTS, ids=["a", "b", "c"])
    index.save()
    return index


@pytest.mark.parametrize(("field", "value", "error"), [
    ("memory_budget", 1.5, ValueError), ("memory_budget", True, ValueError), ("memory_budget", "1GB", ValueError),
    ("memory_budget", 0, ValueError), ("model_path", 5, TypeError), ("dim", 2**40, ValueError)])
def test_create_refuses_arguments_a_save_could_not_write(tmp_path: Path, field: str, value: object,
                                                         error: type) -> None:
    """Before: accepted, then save() wrote a manifest open() refused, or failed half-way."""
    with pytest.raises(error, match=field):
        VectorIndex.create(tmp_path / "index", **{field: value})


def test_create_takes_numpy_ints_and_paths_and_the_save_reopens(tmp_path: Path) -> None:
    from m2v_search.persistence import BUNDLED_MODELS_DIR

    index = saved(tmp_path / "index", memory_budget=np.int64(10**9), model_path=BUNDLED_MODELS_DIR / "m2v-base")
    index.close()
    reopened = VectorIndex.open(tmp_path / "index")
    assert len(reopened) == 3
    reopened.close()


def test_two_writers_creating_the_same_index_do_not_lose_one(tmp_path: Path) -> None:
    """Before: both open(create=True) saves succeeded and the second replaced the first's documents."""
    first = VectorIndex.open(tmp_path / "index", create=True)
    second = VectorIndex.open(tmp_path / "index", create=True)
    first.add_texts(["written first"], ids=["one"])
    second.add_texts(["written second"], ids=["two"])
    first.save()
    with pytest.raises(IndexConflictError, match="create=True"):
        second.save()
    assert [r.id for r in VectorIndex.open(tmp_path / "index").get(["one", "two"])] == ["one"]


def test_a_failed_save_leaves_no_unrecorded_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the new generation's files were renamed into place, the manifest write failed, and
    those files stayed forever (a whole copy of the index per failure)."""
    index = saved(tmp_path / "index")
    before = sorted(p.name for p in (tmp_path / "index").iterdir())
    index.add_texts(["one more"], ids=["d"])

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(generations, "write_manifest", disk_full)
    with pytest.raises(OSError, match="No space"):
        index.save()
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == before
    monkeypatch.undo()
    index.save()
    assert len(VectorIndex.open(tmp_path / "index")) == 4


KILLED_BEFORE_THE_MANIFEST = """
import os, signal, sys
from m2v_search.index import VectorIndex, generations
generations.write_manifest = lambda *_: os.kill(os.getpid(), signal.SIGKILL)
index = VectorIndex.open(sys.argv[1])
index.add_texts(["one more"], ids=["d"])
index.save()
"""


def test_files_a_killed_writer_put_in_place_are_removed_by_the_next_save(tmp_path: Path) -> None:
    """A writer killed (SIGKILL) between putting its files in place and writing the manifest leaves
    its ``.pending`` marker; the next commit removes what the marker lists, and nothing else."""
    import signal
    import subprocess
    import sys

    saved(tmp_path / "index").close()
    mine = tmp_path / "index" / "index.000001-deadbeef.faiss"  # named like an index file, but the user's
    mine.write_text("keep me")
    before = {p.name for p in (tmp_path / "index").iterdir()}
    child = subprocess.run([sys.executable, "-c", KILLED_BEFORE_THE_MANIFEST, str(tmp_path / "index")],
                           capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = {p.name for p in (tmp_path / "index").iterdir()} - before
    assert any(name.startswith(".pending.") for name in left) and len(left) >= 3, left
    index = VectorIndex.open(tmp_path / "index")  # the old state is intact
    assert len(index) == 3
    index.add_texts(["another"], ids=["e"])
    index.save()
    assert not left & {p.name for p in (tmp_path / "index").iterdir()}
    assert mine.read_text() == "keep me"
    assert len(VectorIndex.open(tmp_path / "index")) == 4


def test_a_folder_named_like_a_pending_marker_does_not_stop_commits(tmp_path: Path) -> None:
    index = saved(tmp_path / "index")
    (tmp_path / "index" / ".pending.000009-deadbeef.json").mkdir()
    index.add_texts(["one more"], ids=["d"])
    index.save()  # before: unlinking the "marker" raised IsADirectoryError on every commit
    assert len(VectorIndex.open(tmp_path / "index")) == 4


KILLED_AFTER_THE_MANIFEST = """
import os, sys
from m2v_search.index import VectorIndex, generations
real = generations.write_manifest
generations.write_manifest = lambda *args: (real(*args), os._exit(9))
index = VectorIndex.open(sys.argv[1])
index.add_texts(["one more"], ids=["d"])
index.save()
"""


def test_a_writer_killed_after_its_manifest_leaves_no_old_generation_behind(tmp_path: Path) -> None:
    """Before: the replaced generation's files (a whole copy of the index) outlived every later commit."""
    import subprocess
    import sys

    saved(tmp_path / "index").close()
    first = set(json.loads((tmp_path / "index" / "manifest.json").read_text())["files"])
    child = subprocess.run([sys.executable, "-c", KILLED_AFTER_THE_MANIFEST, str(tmp_path / "index")],
                           capture_output=True, timeout=120)
    assert child.returncode == 9, child.stderr
    assert all((tmp_path / "index" / name).exists() for name in first)  # the kill came before the cleanup
    index = VectorIndex.open(tmp_path / "index")
    assert len(index) == 4  # the killed writer's commit took effect
    index.add_texts(["another"], ids=["e"])
    index.save()
    names = {p.name for p in (tmp_path / "index").iterdir()}
    assert not first & names and not any(name.startswith(".pending") for name in names)


def test_a_manifest_without_its_lexical_section_is_corrupt(tmp_path: Path) -> None:
    """Before: one flipped byte in the key opened fine and hybrid search quietly became dense."""
    saved(tmp_path / "index").close()
    manifest_path = tmp_path / "index" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["ldxical"] = manifest.pop("lexical")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="no 'lexical' section"):
        VectorIndex.open(tmp_path / "index")


@pytest.mark.parametrize(("call", "message"), [
    (lambda index: index.add_texts(["x", "y"], ids=[None, None]), r"ids\[0\] must be a str or an int, got NoneType"),
    (lambda index: index.add_texts(["x"], ids=[b"x"]), r"ids\[0\] must be a str or an int, got bytes"),
    (lambda index: index.add_texts(["x"], ids=[1.5]), r"ids\[0\] must be a str or an int, got float"),
    (lambda index: index.delete([None]), r"ids\[0\] must be a str or an int"),
    (lambda index: index.get(["a", ("a", 1)]), r"ids\[1\] must be a str or an int, got tuple"),
    (lambda index: index.add_texts("hello"), "texts must be a list"),
    (lambda index: index.add_texts(["x"], metadatas=[[1, 2]]), r"metadatas\[0\] is list"),
])
def test_ids_texts_and_metadatas_of_the_wrong_kind_are_refused(tmp_path: Path, call, message: str) -> None:
    """Before: ids went through str() (None became "None", replacing another document; b"x" became
    "b'x'"), a lone str was added as one document per character."""
    index = saved(tmp_path / "index")
    with pytest.raises(TypeError, match=message):
        call(index)
    assert sorted(r.id for r in index.iter_records()) == ["a", "b", "c"]


def test_a_bad_record_in_a_list_writes_nothing(tmp_path: Path) -> None:
    """Before: the first 4,096 records were written, then records[5000] raised."""
    index = VectorIndex.create(tmp_path / "index")
    with pytest.raises(TypeError, match=r"records\[5000\] text is NoneType"):
        index.add_texts(["ok"] * 5000 + [None])
    assert len(index) == 0
    vectors = VectorIndex.create(tmp_path / "vectors", dim=4)
    records = ({"id": str(i), "text": "t"} for i in range(2))
    with pytest.raises(ValueError, match="2 records but 3 vectors"):
        vectors.upsert(records, vectors=np.eye(3, 4, dtype=np.float32))
    assert len(vectors) == 0


def test_metadata_integers_past_64_bits_are_refused(tmp_path: Path) -> None:
    """Before: stored, and then no filter could compare them."""
    index = VectorIndex.create(tmp_path / "index")
    with pytest.raises(ValueError, match=r"records\[0\] metadata .*'big' is an integer outside the signed 64-bit range"):
        index.add_texts(["x"], metadatas=[{"big": 2**70}])
    index.add_texts(["x"], ids=["edge"], metadatas=[{"big": 2**63 - 1, "small": -2**63}])
    assert index.get(["edge"])[0].metadata == {"big": 2**63 - 1, "small": -2**63}


def test_saving_over_a_file_names_it(tmp_path: Path) -> None:
    plain = tmp_path / "a-file"
    plain.write_text("not an index")
    index = VectorIndex.create()
    index.add_texts(["x"])
    with pytest.raises(NotADirectoryError, match="a-file: it is a file"):
        index.save(plain)


@pytest.mark.parametrize("keyword", [{"max_length": -1}, {"max_length": 1.5}, {"max_length": "3"},
                                     {"batch_size": 1.5}, {"batch_size": 0}])
def test_encode_limits_of_the_wrong_kind_are_refused(keyword: dict) -> None:
    """Before: OverflowError from the tokenizer, or islice's and slicing's own messages."""
    model = StaticModel.from_pretrained()
    name = next(iter(keyword))
    with pytest.raises(ValueError, match=f"{name} must be a positive int"):
        model.encode(["a b c"], **keyword)
    if name == "max_length":
        with pytest.raises(ValueError, match="max_length must be a positive int"):
            model.tokenize(["a b c"], **keyword)


@pytest.mark.parametrize(("factory", "message"), [
    ("PQ16", "IndexPQ cannot search with an id selector"), ("Flat,Refine(Flat)", "IndexRefine cannot"),
    ("NSG32,Flat", "IndexNSGFlat cannot"), ("IDMap2,IDMap2,Flat", "IDMap appears twice")])
def test_factories_whose_search_cannot_filter_are_refused_at_creation(factory: str, message: str) -> None:
    """Before: built and saved, then every filtered search, and every search after a delete, failed
    with FAISS's 'params have incorrect type' (and a double IDMap failed inside add)."""
    with pytest.raises(ValueError, match=message):
        VectorIndex.create(factory=factory)


@pytest.mark.parametrize("factory", ["PCA32,Flat", "HNSW32,SQ8", "IDMap2,SQ8"])
def test_accepted_factories_filter_and_delete(tmp_path: Path, factory: str) -> None:
    index = VectorIndex.create(tmp_path / "index", factory=factory)
    index.add_texts(TEXTS * 20, ids=[str(i) for i in range(60)], metadatas=[{"n": i % 3} for i in range(60)])
    index.save()
    index.delete(["0", "3"])
    hits = index.search("cat on a mat", k=5, filter={"n": 0})
    assert hits and all(h.metadata == {"n": 0} and h.id not in ("0", "3") for h in hits)


def test_a_pca_factory_scores_cosines_and_verifies(tmp_path: Path) -> None:
    """PCA keeps reduced vectors whose inner products are not cosines: its candidates are re-scored
    exactly, as PQ/SQ ones are. Before: a text scored 0.62 against itself, and `verify` called the
    fresh index corrupt ('stored vectors differ from the model's encoding')."""
    texts = [f"{text} number {i}" for i, text in enumerate(TEXTS * 20)]
    index = VectorIndex.create(tmp_path / "index", factory="PCA32,Flat")
    index.add_texts(texts, ids=[str(i) for i in range(len(texts))])
    index.save()
    for i in (0, 7, 33):
        top = index.search(texts[i], k=1, mode="dense")[0]
        assert top.id == str(i) and top.score == pytest.approx(1.0, abs=1e-5)
    assert VectorIndex.open(tmp_path / "index").verify() == []


@pytest.mark.parametrize("factory", ["PCA300,Flat", "PCAW300,Flat", "PCA300,IVF16,Flat"])
def test_a_pca_wider_than_the_vectors_is_refused_when_the_index_is_created(factory: str) -> None:
    """Before: create and add accepted it (the index stays exact until it can train), then the first
    save failed with 'add documents or choose a smaller index', which no number of documents fixes."""
    with pytest.raises(ValueError, match="its PCA asks for 300 dimensions from 256-dim vectors; ask for at most 256"):
        VectorIndex.create(factory=factory)
    assert VectorIndex.create(factory="PCA256,Flat").index_kind == "flat"  # equal width is fine


def test_save_refuses_a_folder_holding_an_applications_manifest(tmp_path: Path) -> None:
    """Before: the CLI build and the object-storage save refused, but ``VectorIndex.save`` (and with
    it LangChain's ``save_local``) replaced a web app's ``manifest.json`` with the index's."""
    from m2v_search.binding_storage import save_index
    from m2v_search.index import OutputDirectoryError

    app = tmp_path / "app"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "My PWA", "start_url": "/"}')
    index = VectorIndex.create(app)
    index.add_texts(["hello there"], ids=["h"])
    with pytest.raises(OutputDirectoryError, match="manifest.json is not an m2v-search index manifest"):
        index.save()
    with pytest.raises(OutputDirectoryError):
        save_index(index, app)
    assert (app / "manifest.json").read_text() == '{"name": "My PWA", "start_url": "/"}'
    assert sorted(p.name for p in app.iterdir()) == ["manifest.json"]
    index.save(tmp_path / "own")  # a folder of its own is fine, and saving again over its own manifest too
    index.save()
    assert VectorIndex.open(tmp_path / "own").get(["h"])[0].text == "hello there"


def test_a_query_with_no_known_token_finds_nothing_instead_of_k_arbitrary_hits() -> None:
    """Before: emoji, zero-width characters or a 200-letter word encode to a zero vector, and dense
    and hybrid search returned k unrelated documents scored 0.0 (each mode different ones)."""
    index = VectorIndex.create()
    index.add_texts(["cats purr loudly", "dogs bark at night", "a party \U0001f389 tonight"], ids=["c", "d", "p"])
    for query in ("\U0001f389\U0001f389", "\u200b", "x" * 200):
        for mode in ("dense", "hybrid", "lexical"):
            assert index.search(query, k=3, mode=mode) == [], (query, mode)
    assert index.search(np.zeros(256, dtype=np.float32), k=3) == []
    batch = index.search_batch(["cats", "\u200b"], k=2, mode="hybrid")
    assert batch[0][0].id == "c" and batch[1] == []
    assert index.search("cats \U0001f389", k=1, mode="hybrid")[0].id == "c"  # known tokens still count


def test_a_lone_surrogate_deep_in_a_list_is_refused_before_any_batch_is_written() -> None:
    """Before: the surrogate check ran batch by batch, so add_texts of 5,000 texts with a bad one at
    4,500 left 4,096 written, and the message gave no position in the list."""
    index = VectorIndex.create()
    texts = [f"document number {i}" for i in range(5000)]
    texts[4500] = "bad \ud800 text"
    with pytest.raises(ValueError, match=r"records\[4500\] text holds a lone surrogate"):
        index.add_texts(texts)
    ids = [str(i) for i in range(300)]
    ids[250] = "id-\udc80"
    with pytest.raises(ValueError, match=r"records\[250\] id holds a lone surrogate"):
        index.upsert([{"id": i, "text": "t"} for i in ids], batch_size=100)
    assert len(index) == 0
    with pytest.raises(ValueError, match="lone surrogate"):
        index.get(["\ud800"])  # was a raw UnicodeEncodeError from SQLite


def test_record_dicts_with_unknown_keys_and_numpy_metadata_are_named() -> None:
    """Before: {"meta": ...} was accepted and the metadata dropped; numpy values gave 'Object of type
    float32 is not JSON serializable' (a numpy bool read as if Python's bool were refused)."""
    index = VectorIndex.create()
    with pytest.raises(ValueError, match=r"records\[0\] has the key 'meta', which a record does not take"):
        index.upsert([{"id": "a", "text": "t", "meta": {"x": 1}}])
    with pytest.raises(ValueError, match=r"metadata\['x'\]\[1\]\['y'\] is numpy.bool"):
        index.upsert([{"id": "a", "text": "t", "metadata": {"x": [1, {"y": np.bool_(True)}]}}])
    with pytest.raises(ValueError, match=r"metadata\['n'\] is numpy.float32, which JSON cannot store"):
        index.add_texts(["t"], metadatas=[{"n": np.float32(1)}])
    for size in (1.5, None, 0, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            index.upsert([{"id": "a", "text": "t"}], batch_size=size)  # type: ignore[arg-type]
    assert len(index) == 0


def test_iter_records_ends_when_the_loop_rewrites_what_it_reads() -> None:
    """Before: a replaced document got a new internal id past the cursor, so a loop bumping a
    metadata version never ended."""
    index = VectorIndex.create()
    index.add_texts(["a", "b", "c"], ids=["1", "2", "3"], metadatas=[{"version": 0}] * 3)
    visits = 0
    for record in index.iter_records():
        visits += 1
        assert visits <= 3
        index.add_texts([record.text], ids=[record.id], metadatas=[{"version": record.metadata["version"] + 1}])
    assert visits == 3 and [r.metadata["version"] for r in index.iter_records()] == [1, 1, 1]


def test_vectors_of_extreme_scale_are_stored_as_unit_vectors() -> None:
    """Before: normalising in float32 overflowed for entries near 1e19 (stored as zeros) and
    underflowed near 1e-25 (stored unnormalised); both then scored 0.0."""
    index = VectorIndex.create(dim=3)
    given = np.array([[3e19, 3e19, 0], [1e-25, 1e-25, 0], [3e38, 3e38, 0], [0, 0, 1]], np.float32)
    index.add_texts(["big", "small", "huge", "ref"], ids=["big", "small", "huge", "ref"], vectors=given)
    hits = index.search(np.array([1.0, 1.0, 0.0]), k=4)
    assert {h.id: round(h.score, 4) for h in hits} == {"big": 1.0, "small": 1.0, "huge": 1.0, "ref": 0.0}


def test_a_query_with_a_lone_surrogate_is_refused_in_every_mode() -> None:
    """Before: lexical mode searched it (hits for the rest of the text), dense and hybrid refused it."""
    index = VectorIndex.create()
    index.add_texts(["cats purr", "dogs bark"], ids=["c", "d"])
    for mode in ("dense", "hybrid", "lexical"):
        with pytest.raises(ValueError, match=r"the query holds a lone surrogate \(U\+D800 at position 5\)"):
            index.search("cats \ud800", k=2, mode=mode)
        with pytest.raises(ValueError, match=r"queries\[1\] holds a lone surrogate"):
            index.search_batch(["cats", "\udc80 dogs"], k=2, mode=mode)


def test_a_text_sent_again_without_its_vector_gets_the_models_vector() -> None:
    """Before: the same text and metadata without `vectors` answered skipped, keeping the caller's vector."""
    index = VectorIndex.create()
    given = np.random.default_rng(0).normal(size=(1, 256)).astype(np.float32)
    index.upsert([{"id": "v", "text": "the cat sat on the mat"}], vectors=given)
    assert index.search("the cat sat on the mat", k=1, mode="dense")[0].score < 0.5
    index.upsert([{"id": "v", "text": "the cat sat on the mat"}])
    assert index.last_upsert.replaced == 1
    assert index.search("the cat sat on the mat", k=1, mode="dense")[0].score == pytest.approx(1.0, abs=1e-5)
    index.upsert([{"id": "v", "text": "the cat sat on the mat"}])
    assert index.last_upsert.skipped == 1  # now a true repeat


@pytest.mark.parametrize(("kind", "n", "needed"), [("ivf", 1_500, "2,000"), ("ivf-pq", 3_000, "9,984")])
def test_the_reason_an_ivf_request_stays_flat_names_the_real_minimum(kind: str, n: int, needed: str) -> None:
    """ivf-pq on 2,000-9,983 vectors stays flat (PQ needs 39 x 256 training vectors), but the reason
    once read just 'ivf-pq was requested', as if the kind were in use."""
    from m2v_search.index.factory import choice_reason

    reason = choice_reason({"kind": kind}, n, 256)
    assert "too few to train" in reason and f"needs {needed}" in reason and "stays exact" in reason
    assert choice_reason({"kind": kind}, 20_000, 256) == f"{kind} was requested"


def test_a_full_disk_while_saving_the_docstore_is_an_os_error(tmp_path: Path, monkeypatch) -> None:
    """Before: VectorIndex.save() raised sqlite3.OperationalError('database or disk is full'), not the
    OSError its docstring promises (the CLI and the server mapped it; Python callers could not)."""
    import errno
    import sqlite3
    import types

    from m2v_search.index import docstore

    class FullDisk:
        def __init__(self, path: str) -> None:
            self.real = sqlite3.connect(path)

        def execute(self, *args: object) -> None:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13  # SQLITE_FULL, as sqlite3 sets it on a real error
            raise error

        def close(self) -> None:
            self.real.close()

    index = VectorIndex.create(tmp_path / "index")
    index.add_texts(["hello there"], ids=["h"])
    monkeypatch.setattr(docstore, "sqlite3", types.SimpleNamespace(connect=FullDisk, Error=sqlite3.Error))
    with pytest.raises(OSError) as caught:
        index.save()
    assert caught.value.errno == errno.ENOSPC and "No space left on device" in str(caught.value)
    assert not (tmp_path / "index" / "manifest.json").exists()  # nothing half-saved took effect


def test_a_directory_that_cannot_be_written_is_named_not_a_hidden_temporary_file(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """Before: 'roidx/.index.000002-....faiss.tmp: permission denied' named a file the user never made."""
    import errno

    from m2v_search.index import generations

    index = VectorIndex.create(tmp_path / "index")
    index.add_texts(["hello there"], ids=["h"])
    index.save()

    def refused(path: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(generations, "create_private_file", refused)
    index.add_texts(["more"], ids=["m"])
    with pytest.raises(PermissionError) as caught:
        index.save()
    assert caught.value.errno == errno.EACCES and caught.value.filename == str(tmp_path / "index")
    assert ".tmp" not in str(caught.value)
    assert len(VectorIndex.open(tmp_path / "index")) == 1


@pytest.mark.parametrize("batch_size", [1, 2, 3, 100])
def test_upsert_counts_are_those_of_one_upsert_after_another_whatever_the_batches(batch_size: int) -> None:
    """Before: with A stored as "t one", upserting [A "t one", A "t two"] counted (0, 1, 1) in batches
    of 1 but (0, 2, 0) in one batch (the first record was not compared with the stored one)."""
    index = VectorIndex.create()
    index.upsert([{"id": "A", "text": "t one"}])
    index.upsert([{"id": "A", "text": "t one"}, {"id": "A", "text": "t two"}, {"id": "A", "text": "t one"},
                  {"id": "B", "text": "b"}, {"id": "B", "text": "b"}], batch_size=batch_size)
    stats = index.last_upsert
    assert (stats.added, stats.replaced, stats.skipped) == (1, 2, 2)
    assert index.get(["A"])[0].text == "t one" and len(index) == 2
