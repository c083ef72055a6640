"""The Dask build against the single-machine build, on a local cluster of 2 worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("faiss")

from m2v_search.distributed import dask_build  # noqa: E402
from m2v_search.distributed.dask_build import build_index_dask  # noqa: E402
from m2v_search.index import CorpusError, VectorIndex  # noqa: E402
from m2v_search.index.build import build_index  # noqa: E402
from m2v_search.index.corpus import CorpusOptions, CorpusReader  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "corpus.jsonl"
QUERIES = ["read a file line by line", "sort a list in place", "start an HTTP server", "compile a regular expression",
           "current date and time", "parse command line arguments", "compress data with gzip", "random number"]
PARTITION = 150_000  # bytes: about 9 partitions over the two files


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """The example corpus (3,414 stdlib docstrings) split over two files, and whole."""
    folder = tmp_path_factory.mktemp("corpus")
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "a.jsonl").write_text("".join(lines[:1800]), encoding="utf-8")
    (folder / "b.jsonl").write_text("".join(lines[1800:]), encoding="utf-8")
    (folder / "all.jsonl").write_text("".join(lines), encoding="utf-8")
    return {"a": folder / "a.jsonl", "b": folder / "b.jsonl", "all": folder / "all.jsonl", "dir": folder}


def _single(source: Path, output: Path, **kwargs) -> VectorIndex:
    options = kwargs.pop("options", CorpusOptions())
    build_index(CorpusReader(source, options), output, show_progress=False, **kwargs)
    return VectorIndex.open(output)


def _rows(index: VectorIndex) -> list[tuple]:
    return list(index._docs.iter_rows())


@pytest.fixture(scope="module")
def flat_pair(client, corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("flat")
    report = build_index_dask([corpus["a"], corpus["b"]], root / "dask", client=client, partition_size=PARTITION,
                              show_progress=False)
    single = _single(corpus["all"], root / "single")
    distributed = VectorIndex.open(root / "dask")
    yield report, distributed, single
    distributed.close()
    single.close()


def test_flat_build_equals_single_machine(flat_pair):
    report, distributed, single = flat_pair
    assert report.partitions >= 8 and report.workers == 2
    assert report.documents == len(single) == 3414 and report.records_read == 3414
    assert distributed.factory == single.factory == "IDMap2,Flat"
    # same ids, texts, metadata, content hashes, and the same int id for every document
    assert _rows(distributed) == _rows(single)
    assert distributed._docs.get_meta("next_iid") == single._docs.get_meta("next_iid")
    got = distributed.search_batch(QUERIES, 10)
    want = single.search_batch(QUERIES, 10)
    for hits, expected in zip(got, want):
        assert [h.id for h in hits] == [h.id for h in expected]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-5)
    # the stored vectors themselves
    ids = np.arange(len(single))
    np.testing.assert_allclose(distributed.faiss_index.reconstruct_batch(ids),
                               single.faiss_index.reconstruct_batch(ids), atol=1e-5)
    assert distributed.verify() == []
    # the lexical part, built at the end on the driver, is the single machine's
    np.testing.assert_array_equal(distributed.lexical.iids(), single.lexical.iids())
    for mode in ("lexical", "hybrid"):
        assert [[h.id for h in hits] for hits in distributed.search_batch(QUERIES, 10, mode=mode)] == \
            [[h.id for h in hits] for hits in single.search_batch(QUERIES, 10, mode=mode)]


def test_manifest_matches_the_single_machine_format(flat_pair):
    _, distributed, single = flat_pair
    a = json.loads((distributed.path / "manifest.json").read_text())
    b = json.loads((single.path / "manifest.json").read_text())
    assert set(a) == set(b)
    assert a["model"] == b["model"] and a["index"]["factory"] == b["index"]["factory"]
    assert a["counts"] == b["counts"] and a["dim"] == b["dim"]
    assert {k: v for k, v in a["lexical"].items() if k not in ("header", "arrays")} == \
        {k: v for k, v in b["lexical"].items() if k not in ("header", "arrays")}
    assert a["build"]["engine"] == "dask" and a["build"]["records"] == 3414
    assert sorted(p.name for p in distributed.path.iterdir()) == sorted(
        [".lock", "manifest.json", *a["files"]])  # no staging left behind


@pytest.fixture
def restore_logging():
    """The CLI points the m2v_search logger at this test's captured stderr: undo it afterwards."""
    import logging

    logger = logging.getLogger("m2v_search")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


def test_cli_reads_a_dask_built_index(flat_pair, capsys, restore_logging):
    from m2v_search.cli import index_main as main

    path = str(flat_pair[1].path)
    assert main(["verify", path, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 3414
    assert main(["search", path, "-q", "sort a list in place", "-k", "3", "--quiet"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["id"] for h in hits] == [h.id for h in flat_pair[2].search("sort a list in place", 3)]
    assert main(["info", path, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 3414


def test_ivf_build_merges_on_disk_and_keeps_recall(client, corpus, tmp_path, monkeypatch):
    import faiss

    from m2v_search.distributed import faiss_files

    seen = []
    original = faiss_files.write_ivf

    def spy(path, trained_empty, invlists):
        seen.append(type(faiss.downcast_InvertedLists(invlists)).__name__)
        return original(path, trained_empty, invlists)

    monkeypatch.setattr(faiss_files, "write_ivf", spy)
    build_index_dask([corpus["a"], corpus["b"]], tmp_path / "ivf", client=client, partition_size=PARTITION,
                     index="ivf", show_progress=False)
    assert seen == ["OnDiskInvertedLists"]  # the driver merged the workers' IVF shards on disk
    flat = _single(corpus["all"], tmp_path / "flat", index="flat")
    single_ivf = _single(corpus["all"], tmp_path / "single-ivf", index="ivf")
    texts = [row[2][:200] for row in _rows(flat)[::50]]
    exact = flat.search_batch(texts, 10)

    def recall(index: VectorIndex) -> float:
        found = index.search_batch(texts, 10)
        return float(np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(found, exact)]))

    with VectorIndex.open(tmp_path / "ivf") as ivf:
        assert ivf.kind == "ivf" and ivf.factory == single_ivf.factory and len(ivf) == 3414
        assert ivf.search_params == single_ivf.search_params
        assert ivf.verify() == []
        # trained on the same sample as the single-machine build: the same recall against exact search
        assert recall(ivf) >= 0.9 and abs(recall(ivf) - recall(single_ivf)) <= 0.02, (recall(ivf), recall(single_ivf))
        # reconstruct by id works (hashtable direct map written with the lists)
        np.testing.assert_allclose(ivf.faiss_index.reconstruct(5), flat.faiss_index.reconstruct(5), atol=1e-5)
        full = ivf.search_batch(texts, 10, nprobe=10_000)  # probing every list is exact search
        np.testing.assert_allclose([[h.score for h in hits] for hits in full],
                                   [[h.score for h in hits] for hits in exact], atol=1e-5)
    flat.close()
    single_ivf.close()


def test_ivf_pq_builds_and_searches(client, corpus, tmp_path):
    # 4-bit codes keep PQ training short on a busy 2-core machine (8-bit PQ64 takes minutes there)
    build_index_dask([corpus["a"], corpus["b"]], tmp_path / "pq", client=client, partition_size=PARTITION,
                     factory="IVF32,PQ32x4", show_progress=False)
    with VectorIndex.open(tmp_path / "pq") as index:
        assert index.factory == "IVF32,PQ32x4" and len(index) == 3414 and index.faiss_index.ntotal == 3414
        hits = index.search("abc.ABCMeta\nMetaclass for defining Abstract Base Classes (ABCs).", 5)
        assert "abc.ABCMeta" in [h.id for h in hits]


def test_driver_reads_vectors_one_chunk_at_a_time(client, corpus, tmp_path, monkeypatch):
    chunks: list[int] = []
    original = dask_build.iter_vector_chunks

    def spy(shards, dead):
        for ids, vectors in original(shards, dead):
            chunks.append(len(vectors))
            yield ids, vectors

    monkeypatch.setattr(dask_build, "CHUNK_ROWS", 256)
    monkeypatch.setattr(dask_build, "iter_vector_chunks", spy)
    build_index_dask([corpus["a"], corpus["b"]], tmp_path / "flat", client=client, partition_size=PARTITION,
                     index="flat", show_progress=False)
    # the flat file is written from bounded chunks (twice: vectors, then ids), never from all vectors
    assert max(chunks) <= 256 and sum(chunks) == 2 * 3414


def test_model_is_loaded_once_per_worker(flat_pair, client):
    from m2v_search.distributed.worker import model_loads

    loads = client.run(model_loads)
    assert len(loads) == 2
    for per_worker in loads.values():
        assert len(per_worker) == len(set(per_worker)) >= 1


def test_malformed_line_names_file_and_line_and_keeps_old_index(client, corpus, tmp_path):
    lines = corpus["b"].read_text(encoding="utf-8").splitlines(keepends=True)
    bad_line = 1234  # far past the first partition of the file
    lines[bad_line - 1] = '{"id": "broken", "text": "no closing brace"\n'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines), encoding="utf-8")
    output = tmp_path / "index"
    build_index_dask([corpus["a"]], output, client=client, partition_size=PARTITION, show_progress=False)
    with pytest.raises(CorpusError, match=rf"bad\.jsonl: line {bad_line}: invalid JSON"):
        build_index_dask([corpus["a"], bad], output, client=client, partition_size=PARTITION, show_progress=False)
    with VectorIndex.open(output) as index:  # the previous index is intact
        assert len(index) == 1800
    assert not (output / dask_build.STAGING).exists()
    report = build_index_dask([bad], tmp_path / "skipping", client=client, partition_size=PARTITION,
                              skip_invalid=True, show_progress=False)
    assert report.skipped_invalid == 1 and report.documents == len(lines) - 1


def test_line_numbers_and_duplicates_follow_the_single_machine_rules(client, corpus, tmp_path):
    # rows without ids get their line number as id: this checks the numbering across partitions
    rows = [json.loads(line) for line in corpus["all"].read_text(encoding="utf-8").splitlines()]
    noid = tmp_path / "noid.jsonl"
    with open(noid, "w", encoding="utf-8") as out:
        for position, row in enumerate(rows):
            if position % 500 == 7:
                out.write("\n")  # blank lines count as lines
            out.write(json.dumps({"text": row["text"], "module": row["metadata"]["module"]}) + "\n")
    build_index_dask(noid, tmp_path / "d1", client=client, partition_size=40_000, show_progress=False)
    single = _single(noid, tmp_path / "s1")
    with VectorIndex.open(tmp_path / "d1") as distributed:
        assert _rows(distributed) == _rows(single)
    single.close()
    # repeated ids: a changed record replaces the earlier one, an identical one is skipped
    dup = tmp_path / "dup.jsonl"
    with open(dup, "w", encoding="utf-8") as out:
        for row in rows[:1500]:
            out.write(json.dumps(row) + "\n")
        for row in rows[:300]:
            out.write(json.dumps(row) + "\n")  # identical repeats
        for row in rows[300:600]:
            out.write(json.dumps({**row, "text": row["text"] + " (revised)"}) + "\n")
    report = build_index_dask(dup, tmp_path / "d2", client=client, partition_size=60_000, show_progress=False)
    assert (report.added, report.replaced, report.unchanged) == (1500, 300, 300)
    single = _single(dup, tmp_path / "s2")
    with VectorIndex.open(tmp_path / "d2") as distributed:
        assert len(distributed) == len(single) == 1500 and distributed.faiss_index.ntotal == 1500
        contents = {row[1]: row[2:4] for row in _rows(distributed)}
        assert contents == {row[1]: row[2:4] for row in _rows(single)}
        for hits, expected in zip(distributed.search_batch(QUERIES, 10), single.search_batch(QUERIES, 10)):
            assert [h.id for h in hits] == [h.id for h in expected]
            np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-5)
        assert distributed.verify() == []
    single.close()


def test_dask_bag_input(client, corpus, tmp_path):
    import dask.bag as db

    rows = [json.loads(line) for line in corpus["all"].read_text(encoding="utf-8").splitlines()][:1000]
    bag = db.from_sequence(rows, npartitions=4)
    report = build_index_dask(bag, tmp_path / "bag", client=client, show_progress=False)
    assert report.partitions == 4 and report.documents == 1000
    subset = tmp_path / "subset.jsonl"
    subset.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    single = _single(subset, tmp_path / "single")
    with VectorIndex.open(tmp_path / "bag") as distributed:
        assert _rows(distributed) == _rows(single)
    single.close()
    with pytest.raises(CorpusError, match="partition 0 row 1: no id field"):
        build_index_dask(db.from_sequence([{"text": "no id"}], npartitions=1), tmp_path / "noid", client=client,
                         show_progress=False)


def test_dask_dataframe_input(client, corpus, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    pandas = pytest.importorskip("pandas")

    rows = [json.loads(line) for line in corpus["all"].read_text(encoding="utf-8").splitlines()][:600]
    frame = pandas.DataFrame({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
    report = build_index_dask(dd.from_pandas(frame, npartitions=3), tmp_path / "frame", client=client,
                              show_progress=False)
    assert report.partitions == 3 and report.documents == 600
    subset = tmp_path / "subset.jsonl"
    subset.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows), encoding="utf-8")
    single = _single(subset, tmp_path / "single")
    with VectorIndex.open(tmp_path / "frame") as distributed:
        assert _rows(distributed) == _rows(single)
    single.close()


def test_stdin_and_missing_files_are_refused(tmp_path):
    with pytest.raises(CorpusError, match="cannot read stdin"):
        build_index_dask("-", tmp_path / "x", client=object(), show_progress=False)
    with pytest.raises(CorpusError, match="does not exist"):
        build_index_dask(tmp_path / "nope.jsonl", tmp_path / "x", client=object(), show_progress=False)


def test_cli_build_engine_dask(client, corpus, tmp_path, capfd, restore_logging):
    from m2v_search.cli import index_main as main

    pattern = str(corpus["dir"] / "[ab].jsonl")  # a glob: both halves, in name order
    output = tmp_path / "cli"
    code = main(["build", pattern, "-o", str(output), "--engine", "dask", "--scheduler", client.scheduler.address,
                 "--index", "ivf", "--quiet"])
    assert code == 0
    out = capfd.readouterr().out  # FAISS's own prints during the on-disk merge must not reach stdout
    summary = json.loads(out)
    assert summary["command"] == "build" and summary["engine"] == "dask" and summary["documents"] == 3414
    assert summary["factory"].startswith("IVF")
    with VectorIndex.open(output) as index:
        assert len(index) == 3414
    with pytest.raises(SystemExit) as exit_info:
        main(["build", str(corpus["a"]), "-o", str(tmp_path / "x"), "--scheduler", "tcp://nowhere:1", "--quiet"])
    assert exit_info.value.code == 2


def test_worker_never_recreates_a_missing_staging_directory(tiny_model, tiny_model_folder, tmp_path):
    from m2v_search.distributed.worker import encode_rows

    gone = tmp_path / "removed-staging" / "shards"
    with pytest.raises(FileNotFoundError, match="shared by the driver and every worker"):
        encode_rows([{"id": "a", "text": "alpha"}], 0, str(gone), CorpusOptions(), str(tiny_model_folder),
                    tiny_model.fingerprint, 64, "bag")
    assert not gone.parent.exists()


def test_repeated_ids_are_reported_like_the_single_machine_build(client, tmp_path, caplog):
    import logging

    rows = [{"id": number, "text": f"document {number} about topic {number % 13}"} for number in range(400)]
    repeats = [{"id": str(number), "text": f"document {number}, revised"} for number in range(60)]  # "7" after 7
    path = tmp_path / "repeats.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows + repeats), encoding="utf-8")
    single = build_index(CorpusReader(path), tmp_path / "single", show_progress=False)
    assert (single.duplicate_ids, single.id_type_collisions) == (60, 60)
    with caplog.at_level(logging.WARNING, logger="m2v_search"):
        whole = build_index_dask(path, tmp_path / "whole", client=client, show_progress=False)
    assert (whole.duplicate_ids, whole.id_type_collisions) == (60, 60)
    assert "60 record(s) repeated an id of an earlier record" in caplog.text
    with VectorIndex.open(tmp_path / "whole") as index:
        assert index.build_info["duplicate_ids"] == 60
    # cut into many partitions: every repeat is still counted (the driver sees them all)
    spread = build_index_dask(path, tmp_path / "spread", client=client, partition_size=2_000, show_progress=False)
    assert spread.partitions > 5 and spread.duplicate_ids == 60 and spread.replaced == 60


def test_a_staging_folder_named_by_the_user_keeps_its_files(client, corpus, tmp_path):
    shared = tmp_path / "shared"  # e.g. an NFS mount holding other data
    (shared / "sub").mkdir(parents=True)
    (shared / "notes.txt").write_text("keep", encoding="utf-8")
    (shared / "sub" / "data.bin").write_bytes(b"keep")
    expected = ["notes.txt", "sub", "sub/data.bin"]
    build_index_dask([corpus["a"]], tmp_path / "index", client=client, staging_dir=shared, partition_size=PARTITION,
                     show_progress=False)
    assert sorted(p.relative_to(shared).as_posix() for p in shared.rglob("*")) == expected
    with VectorIndex.open(tmp_path / "index") as index:
        assert len(index) == 1800
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "text": \n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl: line 1"):
        build_index_dask([bad], tmp_path / "index", client=client, staging_dir=shared, show_progress=False)
    assert sorted(p.relative_to(shared).as_posix() for p in shared.rglob("*")) == expected


def test_output_that_is_a_file_or_a_folder_of_other_files_is_refused(client, corpus, tmp_path, capsys,
                                                                     restore_logging):
    from m2v_search.cli import index_main as main
    from m2v_search.index.errors import OutputDirectoryError

    folder = tmp_path / "mine"  # a careless -o: a folder of the user's own files
    folder.mkdir()
    (folder / "thesis.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputDirectoryError, match=r"mine is not empty and holds no index \(thesis\.txt\)"):
        build_index_dask([corpus["a"]], folder, client=client, show_progress=False)
    assert not (folder / "manifest.json").exists()
    assert main(["build", str(corpus["a"]), "-o", str(folder), "--engine", "dask", "--scheduler",
                 client.scheduler.address, "--quiet"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.txt"]  # a refused folder gets no .lock
    file = tmp_path / "file"
    file.write_text("x", encoding="utf-8")
    with pytest.raises(OutputDirectoryError, match=r"file is a file; the output \(-o\) names the index directory"):
        build_index_dask([corpus["a"]], file, client=client, show_progress=False)
    # force builds next to the other files, as the single-machine build does
    report = build_index_dask([corpus["a"]], folder, client=client, force=True, partition_size=PARTITION,
                              show_progress=False)
    assert report.documents == 1800 and (folder / "thesis.txt").read_text(encoding="utf-8") == "mine"


def test_a_glob_matching_only_folders_is_refused_naming_it(tmp_path, capsys, restore_logging):
    import re

    from m2v_search.cli import index_main as main

    for value in ("en", "fr"):  # a Hive layout, globbed one level too high
        (tmp_path / "corpus" / f"lang={value}").mkdir(parents=True)
        (tmp_path / "corpus" / f"lang={value}" / "part-0.jsonl").write_text('{"id": "a", "text": "alpha"}\n')
    pattern = str(tmp_path / "corpus" / "*")
    with pytest.raises(CorpusError, match=rf"no corpus file matches {re.escape(pattern)} \(only folders"):
        build_index_dask(pattern, tmp_path / "x", client=object(), show_progress=False)
    for engine in ("local", "dask"):
        assert main(["build", pattern, "-o", str(tmp_path / "x"), "--engine", engine, "--quiet"]) == 3
        err = capsys.readouterr().err
        assert f"no corpus file matches {pattern}" in err and "unexpected" not in err, err
    assert not (tmp_path / "x").exists()


def test_dask_dataframe_with_dates_reads_like_the_same_parquet(client, tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from m2v_search.index.sources import open_corpus

    frame = pandas.DataFrame({"id": ["a", "b", "c"], "text": ["alpha", "beta", "gamma"],
                              "when": pandas.to_datetime(["2024-01-02 00:00:00", "2024-03-04 05:06:07", "2024-12-31 23:00:00"])})
    build_index_dask(dd.from_pandas(frame, npartitions=2), tmp_path / "frame", client=client, show_progress=False)
    frame.to_parquet(tmp_path / "same.parquet", index=False)
    build_index(open_corpus(str(tmp_path / "same.parquet")), tmp_path / "parquet", show_progress=False)
    with VectorIndex.open(tmp_path / "frame") as from_frame, VectorIndex.open(tmp_path / "parquet") as from_parquet:
        assert from_frame.get(["b"])[0].metadata == {"when": "2024-03-04T05:06:07"}
        assert _rows(from_frame) == _rows(from_parquet)


def test_files_without_ids_keep_every_row_and_repeats_across_files_are_counted(client, tmp_path):
    # Before: a row without an id got its line (row) number in its own file as id, so a glob of two
    # id-less files kept 30 of 60 documents; the local engine said nothing (duplicate_ids 0), and
    # repeats across files were not counted by it while the Dask engine counted them.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from m2v_search.index.sources import open_corpus

    for name in "ab":
        pq.write_table(pa.table({"text": [f"{name} text number {i}" for i in range(30)]}), tmp_path / f"{name}.parquet")
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": f"{name} line {i}"}) + "\n"
                                                        for i in range(30)), encoding="utf-8")
    pattern = str(tmp_path / "*.parquet")
    local = build_index(open_corpus(pattern), tmp_path / "local", show_progress=False)
    dask_report = build_index_dask(pattern, tmp_path / "dask", client=client, show_progress=False)
    assert local.documents == dask_report.documents == 60 and local.duplicate_ids == dask_report.duplicate_ids == 0
    with VectorIndex.open(tmp_path / "local") as one, VectorIndex.open(tmp_path / "dask") as other:
        assert sorted(one.ids()) == sorted(other.ids())
        assert one.get([f"{tmp_path / 'b.parquet'}:3"])[0].text == "b text number 3"
    one_file = build_index(open_corpus(str(tmp_path / "a.parquet")), tmp_path / "one", show_progress=False)
    with VectorIndex.open(tmp_path / "one") as index:  # a single file keeps plain row numbers
        assert one_file.documents == 30 and index.get(["3"])[0].text == "a text number 3"
    twice = open_corpus([str(tmp_path / "a.parquet")] * 2)  # one file named twice is one file, as in Dask
    assert [record.id for record in twice][:2] == ["0", "1"] and twice.duplicates == 30
    for batch_size in (4096, 10):  # the counts do not depend on where batches end
        shared = build_index(open_corpus(str(tmp_path / "*.jsonl")), tmp_path / f"shared{batch_size}",
                             show_progress=False, batch_size=batch_size)
        assert (shared.documents, shared.duplicate_ids, shared.replaced) == (30, 30, 30)
    spread = build_index_dask(str(tmp_path / "*.jsonl"), tmp_path / "shared-dask", client=client, show_progress=False)
    assert (spread.documents, spread.duplicate_ids, spread.replaced) == (30, 30, 30)
