"""Corpora and indexes on object storage, against a real S3-compatible server on loopback.

moto's server mode (``python -m moto.server``) runs on a free 127.0.0.1 port for the module;
s3fs/boto reach it through ``AWS_ENDPOINT_URL`` / ``FSSPEC_S3_ENDPOINT_URL`` and dummy
credentials. The Dask builds run on a real LocalCluster of 2 worker processes (one thread each),
which inherit that environment.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("pyarrow")
pytest.importorskip("moto")
pytest.importorskip("distributed")
pytest.importorskip("faiss")

from m2v_search.index import CorpusError, IndexCorruptError, VectorIndex  # noqa: E402
from m2v_search.index.build import build_index  # noqa: E402
from m2v_search.index.corpus import CorpusOptions, CorpusReader  # noqa: E402
from m2v_search.index.manifest import read_manifest  # noqa: E402
from m2v_search.index.remote import (  # noqa: E402
    RemoteIndexError,
    RemoteStorageError,
    download_index,
    upload_index,
)
from m2v_search.index.sources import expand_sources, open_corpus  # noqa: E402
from m2v_search.index.urls import redact  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "corpus.jsonl"
BUCKET = "m2v-test"
ROWS = 1200
QUERIES = ["read a file line by line", "sort a list in place", "start an HTTP server", "compile a regular expression"]
ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on loopback, with the environment pointing s3fs at it (restored afterwards)."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {key: os.environ.get(key) for key in [*ENVIRONMENT, "AWS_ENDPOINT_URL", "FSSPEC_S3_ENDPOINT_URL"]}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.2)
        os.environ.update(ENVIRONMENT, AWS_ENDPOINT_URL=endpoint, FSSPEC_S3_ENDPOINT_URL=endpoint)
        import fsspec.config
        import s3fs

        fsspec.config.set_conf_env(fsspec.config.conf)  # fsspec reads FSSPEC_* at import time
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    import s3fs

    return s3fs.S3FileSystem()


@pytest.fixture(scope="module")
def client(s3_endpoint):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:ROWS]
    return [json.loads(line) for line in lines]


def _flat(row: dict) -> dict:
    """A row as a Parquet/flat JSONL row: id, text and two metadata columns."""
    return {"id": row["id"], "text": row["text"], "module": row["metadata"]["module"], "kind": row["metadata"]["kind"]}


@pytest.fixture(scope="module")
def corpus(s3, rows, tmp_path_factory) -> dict[str, Path]:
    """The rows as local JSONL and, on S3, as two Parquet files (100-row groups) and JSONL + JSONL.gz."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("corpus")
    flat = [_flat(row) for row in rows]
    local = folder / "all.jsonl"
    local.write_text("".join(json.dumps(row) + "\n" for row in flat), encoding="utf-8")
    half = len(flat) // 2
    for number, part in enumerate([flat[:half], flat[half:]]):
        path = folder / f"part-{number}.parquet"
        pq.write_table(pa.Table.from_pylist(part), path, row_group_size=100)
        s3.put_file(str(path), f"{BUCKET}/corpus/part-{number}.parquet")
    (folder / "a.jsonl").write_text("".join(json.dumps(row) + "\n" for row in flat[:half]), encoding="utf-8")
    (folder / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in flat[half:]).encode()))
    s3.put_file(str(folder / "a.jsonl"), f"{BUCKET}/jsonl/a.jsonl")
    s3.put_file(str(folder / "b.jsonl.gz"), f"{BUCKET}/jsonl/b.jsonl.gz")
    return {"local": local, "dir": folder}


@pytest.fixture(scope="module")
def local_index(corpus, tiny_model_folder, tmp_path_factory) -> VectorIndex:
    """The single-machine build of the local JSONL: the reference every remote build must equal."""
    output = tmp_path_factory.mktemp("local") / "index"
    build_index(CorpusReader(corpus["local"], CorpusOptions(metadata_fields=["module", "kind"])), output,
                model=str(tiny_model_folder), show_progress=False)
    with VectorIndex.open(output) as index:
        yield index


def _rows(index: VectorIndex) -> list[tuple]:
    return list(index._docs.iter_rows())


def _assert_same_index(index: VectorIndex, reference: VectorIndex, **search) -> None:
    assert len(index) == len(reference) == ROWS
    assert _rows(index) == _rows(reference)  # ids, texts, metadata, hashes, int ids
    for hits, expected in zip(index.search_batch(QUERIES, 10, **search), reference.search_batch(QUERIES, 10)):
        assert [h.id for h in hits] == [h.id for h in expected]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-5)


# ---------------------------------------------------------------------- sources
def test_parquet_and_jsonl_on_s3_read_like_local_jsonl(corpus):
    options = CorpusOptions(metadata_fields=["module", "kind"])
    local = list(CorpusReader(corpus["local"], options))
    parquet = open_corpus(f"s3://{BUCKET}/corpus/*.parquet", options)
    assert list(parquet) == local
    assert parquet.records == parquet.lines == ROWS and parquet.name.endswith("(+1 files)")
    jsonl = open_corpus([f"s3://{BUCKET}/jsonl/a.jsonl", f"s3://{BUCKET}/jsonl/b.jsonl.gz"], options)
    assert list(jsonl) == local
    # a column projection: only the columns asked for are metadata
    only_module = list(open_corpus(f"s3://{BUCKET}/corpus/part-0.parquet", CorpusOptions(metadata_fields=["module"])))
    assert only_module[0].metadata == {"module": local[0].metadata["module"]}


def test_single_machine_build_from_parquet_on_s3_equals_local_build(corpus, local_index, tiny_model_folder, tmp_path):
    reader = open_corpus(f"s3://{BUCKET}/corpus/*.parquet", CorpusOptions(metadata_fields=["module", "kind"]))
    build_index(reader, tmp_path / "index", model=str(tiny_model_folder), show_progress=False)
    with VectorIndex.open(tmp_path / "index") as index:
        _assert_same_index(index, local_index)


def test_bad_parquet_row_names_file_row_group_and_row(s3, rows, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [_flat(row) for row in rows[:300]]
    flat[257]["text"] = None  # row group 2 (100 rows each), row 57 of the group
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(flat), path, row_group_size=100)
    s3.put_file(str(path), f"{BUCKET}/bad/bad.parquet")
    url = f"s3://{BUCKET}/bad/bad.parquet"
    with pytest.raises(CorpusError, match=r"s3://m2v-test/bad/bad\.parquet: row group 2, row 57: field 'text'"):
        list(open_corpus(url))
    skipping = open_corpus(url, CorpusOptions(skip_invalid=True))
    assert len(list(skipping)) == 299 and skipping.skipped == 1
    with pytest.raises(CorpusError, match="no text column 'body'"):
        list(open_corpus(url, CorpusOptions(text_field="body")))
    # a misspelt metadata column is named (before: ignored, every document's metadata {})
    with pytest.raises(CorpusError, match=r"no metadata column 'kindd' \(columns: "):
        list(open_corpus(url, CorpusOptions(metadata_fields=["kindd"], skip_invalid=True)))
    # rows without an id column get their row number in the file (from 0)
    pq.write_table(pa.Table.from_pylist([{"text": r["text"]} for r in flat[:150]]), path, row_group_size=100)
    records = list(open_corpus(str(path)))
    assert [r.id for r in records[99:102]] == ["99", "100", "101"]


def test_missing_sources_are_named(s3_endpoint, tmp_path):
    with pytest.raises(CorpusError, match=r"no corpus file matches s3://m2v-test/nothing/\*\.parquet$"):
        expand_sources(f"s3://{BUCKET}/nothing/*.parquet")
    with pytest.raises(CorpusError, match="the bucket 'no-such-bucket-x' does not exist"):
        expand_sources("s3://no-such-bucket-x/nothing/*.parquet")
    with pytest.raises(CorpusError, match="does not exist"):
        expand_sources(f"s3://{BUCKET}/nothing.jsonl")
    with pytest.raises(CorpusError, match="not a readable Parquet file"):
        (tmp_path / "fake.parquet").write_text("not parquet")
        list(open_corpus(str(tmp_path / "fake.parquet")))
    assert redact("https://user:secret@host/path") == "https://***@host/path"


# ---------------------------------------------------------------------- index upload and download
def test_upload_download_verifies_and_a_failed_upload_keeps_the_previous_generation(
        s3, corpus, local_index, tiny_model_folder, tmp_path, monkeypatch):
    import s3fs

    url = f"s3://{BUCKET}/indexes/upload"
    upload_index(local_index.path, url)
    cache = tmp_path / "cache"
    mirror = download_index(url, cache)
    with VectorIndex.open(mirror) as index:
        _assert_same_index(index, local_index)
    first_generation = read_manifest(mirror)["generation"]
    # a second generation, whose upload fails on its docstore: the first stays current and readable
    second = tmp_path / "second"
    subset = tmp_path / "subset.jsonl"
    subset.write_text("".join(corpus["local"].read_text(encoding="utf-8").splitlines(keepends=True)[:100]))
    build_index(CorpusReader(subset), second, model=str(tiny_model_folder), show_progress=False)
    original = s3fs.S3FileSystem._put_file

    async def failing_put(self, lpath, rpath, *args, **kwargs):
        if str(rpath).endswith(".sqlite"):
            raise OSError("connection reset by peer (injected)")
        return await original(self, lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_put_file", failing_put)
    s3fs.S3FileSystem.clear_instance_cache()  # instances bind their sync methods when made
    with pytest.raises(RemoteStorageError, match="previous index there, if any, is unchanged"):
        upload_index(second, url)
    monkeypatch.setattr(s3fs.S3FileSystem, "_put_file", original)
    s3fs.S3FileSystem.clear_instance_cache()
    assert any(name.endswith(".faiss") and "index." in name for name in s3.ls(f"{BUCKET}/indexes/upload"))
    fresh = download_index(url, tmp_path / "fresh-cache")
    assert read_manifest(fresh)["generation"] == first_generation
    with VectorIndex.open(fresh) as index:
        assert len(index) == ROWS
    # the retry commits the second generation; the cached mirror follows it
    upload_index(second, url)
    assert download_index(url, cache) == mirror
    assert read_manifest(mirror)["generation"] != first_generation
    with VectorIndex.open(mirror) as index:
        assert len(index) == 100
    stale = [Path(p).name for p in s3.ls(f"{BUCKET}/indexes/upload") if "index." in p]
    assert len(stale) == 2  # the current and the previous generation only


def test_download_refuses_a_tampered_file_and_a_missing_index(s3, local_index, tmp_path):
    url = f"s3://{BUCKET}/indexes/tampered"
    upload_index(local_index.path, url)
    manifest = json.loads(s3.cat_file(f"{BUCKET}/indexes/tampered/manifest.json"))
    docstore = manifest["docstore"]["file"]
    data = bytearray(s3.cat_file(f"{BUCKET}/indexes/tampered/{docstore}"))
    data[-100] ^= 0xFF
    s3.pipe_file(f"{BUCKET}/indexes/tampered/{docstore}", bytes(data))
    with pytest.raises(IndexCorruptError, match="does not match its sha256"):
        download_index(url, tmp_path / "cache")
    with pytest.raises(RemoteIndexError, match="no index at s3://m2v-test/indexes/none"):
        download_index(f"s3://{BUCKET}/indexes/none", tmp_path / "cache")


# ---------------------------------------------------------------------- Dask builds
def test_dask_build_parquet_from_s3_with_staging_and_output_on_s3(s3, client, local_index, tiny_model_folder,
                                                                    tmp_path):
    from m2v_search.distributed import build_index_dask

    url = f"s3://{BUCKET}/indexes/dask-parquet"
    report = build_index_dask(f"s3://{BUCKET}/corpus/*.parquet", url, client=client, model=str(tiny_model_folder),
                              metadata_fields=["module", "kind"], partition_size=20_000,
                              staging_dir=f"s3://{BUCKET}/staging", show_progress=False)
    assert report.documents == ROWS and report.partitions >= 4 and report.directory == url
    assert "upload" in report.phases
    assert not s3.exists(f"{BUCKET}/staging") or s3.ls(f"{BUCKET}/staging", refresh=True) == []  # cleaned up
    with VectorIndex.open(download_index(url, tmp_path / "cache")) as index:
        _assert_same_index(index, local_index)
        assert index.build_info["engine"] == "dask"


def test_dask_build_jsonl_from_s3_ivf_staged_next_to_the_output(s3, client, local_index, tiny_model_folder,
                                                                 tmp_path):
    from m2v_search.distributed import build_index_dask

    url = f"s3://{BUCKET}/indexes/dask-ivf"
    build_index_dask([f"s3://{BUCKET}/jsonl/a.jsonl", f"s3://{BUCKET}/jsonl/b.jsonl.gz"], url, client=client,
                     model=str(tiny_model_folder), metadata_fields=["module", "kind"], factory="IVF8,Flat",
                     partition_size=60_000, show_progress=False)
    assert not s3.exists(f"{BUCKET}/indexes/dask-ivf/.dask-build")
    with VectorIndex.open(download_index(url, tmp_path / "cache")) as index:
        assert index.factory == "IVF8,Flat"
        _assert_same_index(index, local_index, nprobe=8)  # all lists probed: exact


def _arm_kill_on_records_upload(marker: str) -> int:
    """Runs on every worker: the first upload of a shard's records, on whichever worker comes
    first (the marker file is created exclusively), kills that process (SIGKILL) after the
    shard's vectors went up: a death in the middle of a partition."""
    import s3fs

    original = s3fs.S3FileSystem._put_file

    async def killing_put(self, lpath, rpath, *args, **kwargs):
        if str(rpath).endswith(".jsonl"):
            try:
                descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(descriptor, str(rpath).encode())
                os.close(descriptor)
                os.kill(os.getpid(), signal.SIGKILL)
        return await original(self, lpath, rpath, *args, **kwargs)

    killing_put.__wrapped_original__ = original
    s3fs.S3FileSystem._put_file = killing_put
    s3fs.S3FileSystem.clear_instance_cache()  # instances bind their sync methods when made
    return os.getpid()


def test_worker_killed_mid_partition_is_retried_without_duplicates(s3, client, local_index, tiny_model_folder,
                                                                   tmp_path):
    from m2v_search.distributed import build_index_dask

    marker = tmp_path / "killed"
    pids = set(client.run(_arm_kill_on_records_upload, str(marker)).values())
    url = f"s3://{BUCKET}/indexes/dask-killed"
    report = build_index_dask(f"s3://{BUCKET}/corpus/*.parquet", url, client=client, model=str(tiny_model_folder),
                              metadata_fields=["module", "kind"], partition_size=20_000,
                              staging_dir=f"s3://{BUCKET}/staging", show_progress=False)
    assert marker.exists(), "the armed worker never uploaded a shard"
    assert f"{BUCKET}/staging/build-" in marker.read_text() and "/shards/part-" in marker.read_text()
    assert len(pids - set(client.run(os.getpid).values())) == 1  # one process died (its nanny started another)
    assert report.records_read == report.documents == ROWS and report.unchanged == 0 and report.replaced == 0
    with VectorIndex.open(download_index(url, tmp_path / "cache")) as index:
        _assert_same_index(index, local_index)
    client.wait_for_workers(2, timeout=60)
    client.run(_disarm)


def _disarm() -> None:
    """Restore s3fs on a worker that was armed and survived."""
    import s3fs

    original = getattr(s3fs.S3FileSystem._put_file, "__wrapped_original__", None)
    if original is not None:
        s3fs.S3FileSystem._put_file = original
        s3fs.S3FileSystem.clear_instance_cache()


# ---------------------------------------------------------------------- partitioned indexes
@pytest.fixture(scope="module")
def hive(s3, rows, tmp_path_factory) -> str:
    """The rows as a Hive-partitioned Parquet dataset on S3: ``half=first`` and ``half=second``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("hive")
    flat = [_flat(row) for row in rows]
    for value, part in (("first", flat[:ROWS // 2]), ("second", flat[ROWS // 2:])):
        pq.write_table(pa.Table.from_pylist(part), folder / f"{value}.parquet", row_group_size=150)
        s3.put_file(str(folder / f"{value}.parquet"), f"{BUCKET}/hive/half={value}/part-0.parquet")
    return f"s3://{BUCKET}/hive/*/*.parquet"


@pytest.mark.parametrize("engine", ["dask", "local"])
def test_partitioned_index_on_s3_searches_like_one_index(engine, hive, client, local_index, tiny_model_folder,
                                                         tmp_path):
    from m2v_search.index.partitioned import PartitionedIndex, build_partitioned_indexes, hive_partitions

    partitions = hive_partitions(hive, "half")
    assert sorted(partitions) == ["first", "second"]
    root = f"s3://{BUCKET}/partitioned-{engine}"
    extra = {"client": client, "partition_size": 20_000, "show_progress": False} if engine == "dask" else {
        "show_progress": False}
    reports = build_partitioned_indexes(partitions, root, engine=engine, model=str(tiny_model_folder),
                                        metadata_fields=["module", "kind"], **extra)
    assert {key: report.documents for key, report in reports.items()} == {"first": ROWS // 2, "second": ROWS // 2}
    first_half = {row["id"] for row in map(json.loads, EXAMPLES.read_text().splitlines()[:ROWS // 2])}
    with PartitionedIndex.open(root, cache_dir=tmp_path / "cache") as both:
        assert len(both) == ROWS and both.keys == ["first", "second"]
        # flat partitions: the merged top k is the top k of one index over the whole corpus
        for hits, expected in zip(both.search_batch(QUERIES, 10), local_index.search_batch(QUERIES, 10, mode="dense")):
            assert [h.id for h in hits] == [h.id for h in expected]
            np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=1e-5)
            assert all((h.partition == "first") == (h.id in first_half) for h in hits)
        only = both.search(QUERIES[0], 5, partitions=["second"])
        assert {h.partition for h in only} == {"second"}
        assert [h.id for h in only] == [h.id for h in both.indexes["second"].search(QUERIES[0], 5, mode="dense")]
        with pytest.raises(KeyError, match="not open: third"):
            both.search(QUERIES[0], 5, partitions=["third"])


def test_partitioned_listing_errors(tmp_path):
    from m2v_search.index import IndexNotFoundError
    from m2v_search.index.partitioned import PartitionedIndex, build_partitioned_indexes

    with pytest.raises(IndexNotFoundError, match="partitions.json is missing"):
        PartitionedIndex.open(tmp_path)
    with pytest.raises(ValueError, match="cannot name a folder"):
        build_partitioned_indexes({"../up": "x.jsonl"}, tmp_path)
    (tmp_path / "partitions.json").write_text(json.dumps({"format": "m2v-search-partitioned-index",
                                                          "partitions": {"a": {"path": "../elsewhere"}}}))
    with pytest.raises(IndexCorruptError, match="unsafe partition"):
        PartitionedIndex.open(tmp_path)


# ---------------------------------------------------------------------- the hooks: VectorIndex.open and the CLI
def test_vector_index_opens_a_url(local_index, tmp_path, monkeypatch):
    monkeypatch.setenv("M2V_SEARCH_INDEX_CACHE", str(tmp_path / "cache"))
    url = f"s3://{BUCKET}/indexes/opened"
    upload_index(local_index.path, url)
    with VectorIndex.open(url) as index:
        _assert_same_index(index, local_index)
        assert index.path.parent == tmp_path / "cache"


def test_cli_builds_from_s3_to_s3_and_searches_there(s3, client, corpus, local_index, tiny_model_folder, tmp_path,
                                                     capsys, monkeypatch):
    from m2v_search.cli import index_main as main

    monkeypatch.setenv("M2V_SEARCH_INDEX_CACHE", str(tmp_path / "cache"))
    url = f"s3://{BUCKET}/indexes/cli"
    assert main(["build", f"s3://{BUCKET}/corpus/*.parquet", "-o", url, "--metadata-columns", "module,kind",
                 "--model", str(tiny_model_folder), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["directory"] == url and summary["documents"] == ROWS
    assert main(["search", url, "-q", QUERIES[1], "-k", "5", "--quiet"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["id"] for h in hits] == [h.id for h in local_index.search(QUERIES[1], 5)]
    assert main(["info", url, "--format", "json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == ROWS
    assert main(["verify", url, "--quiet"]) == 0
    capsys.readouterr()
    # the Dask engine, JSONL from S3, shards staged on S3
    dask_url = f"s3://{BUCKET}/indexes/cli-dask"
    assert main(["build", f"s3://{BUCKET}/jsonl/*", "-o", dask_url, "--engine", "dask", "--scheduler",
                 client.scheduler.address, "--staging", f"s3://{BUCKET}/cli-staging", "--metadata-columns",
                 "module,kind", "--model", str(tiny_model_folder), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == ROWS
    with VectorIndex.open(dask_url) as index:
        _assert_same_index(index, local_index)


def test_cli_errors_on_object_storage(s3, rows, tiny_model_folder, tmp_path, capsys, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from m2v_search.cli import index_main as main

    monkeypatch.setenv("M2V_SEARCH_INDEX_CACHE", str(tmp_path / "cache"))
    texts = [row["text"] for row in rows[:200]]
    texts[120] = None  # row group 1 (100 rows each), row 20
    pq.write_table(pa.table({"id": [row["id"] for row in rows[:200]], "text": texts}), tmp_path / "bad.parquet",
                   row_group_size=100)
    s3.put_file(str(tmp_path / "bad.parquet"), f"{BUCKET}/cli-bad/bad.parquet")
    model = ["--model", str(tiny_model_folder), "--quiet"]
    code = main(["build", f"s3://{BUCKET}/cli-bad/bad.parquet", "-o", str(tmp_path / "x"), *model])
    assert code == 3 and "bad.parquet: row group 1, row 20: field 'text' must be a string" in capsys.readouterr().err
    assert main(["build", f"s3://{BUCKET}/cli-bad/none-*.parquet", "-o", str(tmp_path / "x"), *model]) == 3
    assert "no corpus file matches" in capsys.readouterr().err
    assert main(["search", f"s3://{BUCKET}/indexes/missing", "-q", "x", "--quiet"]) == 2
    assert "no index at s3://m2v-test/indexes/missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["build", f"s3://{BUCKET}/cli-bad/bad.parquet", "-o", f"s3://{BUCKET}/x", "--resume", *model])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:  # add changes a local directory only
        main(["add", f"s3://{BUCKET}/indexes/cli", str(tmp_path / "more.jsonl"), "--quiet"])
    assert exit_info.value.code == 2 and "is a URL: this command changes a local" in capsys.readouterr().err
    assert not Path("s3:").exists()


def test_file_urls_are_local_paths(corpus, local_index, tiny_model_folder, tmp_path):
    from m2v_search.index.remote import build_target, open_target

    records = list(open_corpus(f"file://{corpus['dir']}/*.parquet", CorpusOptions(metadata_fields=["module", "kind"])))
    assert records == list(CorpusReader(corpus["local"], CorpusOptions(metadata_fields=["module", "kind"])))
    with build_target(f"file://{tmp_path}/index") as directory:
        assert directory == tmp_path / "index"
    assert open_target(f"file://{local_index.path}") == local_index.path


def test_file_urls_open_search_and_verify_like_their_folder(corpus, local_index, tiny_model_folder, tmp_path, capsys):
    """``file:///x`` opened, searched and verified as the folder ``/x`` (it once became ``file:/x``,
    'does not exist', though a build to the same URL had worked)."""
    from m2v_search.cli import index_main as main
    from m2v_search.index.partitioned import PartitionedIndex, build_partitioned_indexes

    url = f"file://{local_index.path}"
    with VectorIndex.open(url) as index:
        assert index.path == local_index.path
        _assert_same_index(index, local_index)
    capsys.readouterr()
    assert main(["search", url, "-q", QUERIES[0], "-k", "3", "--mode", "dense"]) == 0
    found = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert found == [hit.id for hit in local_index.search(QUERIES[0], 3, mode="dense")]
    assert main(["verify", url]) == 0 and json.loads(capsys.readouterr().out)["ok"] is True
    build_partitioned_indexes({"all": str(corpus["local"])}, tmp_path / "parts", model=str(tiny_model_folder),
                              metadata_fields=["module", "kind"], show_progress=False)
    with PartitionedIndex.open(f"file://{tmp_path}/parts") as parts:
        assert len(parts) == len(local_index) and parts.keys == ["all"]
        once = parts.search(QUERIES[0], 5)
        assert [h.id for h in parts.search(QUERIES[0], 5, partitions=["all", "all"])] == [h.id for h in once]
        with pytest.raises(ValueError, match="names no partition"):
            parts.search(QUERIES[0], 5, partitions=[])


# ---------------------------------------------------------------------- endpoint and bucket mistakes
@pytest.fixture
def dead_endpoint(s3_endpoint, monkeypatch):
    """s3fs and boto pointed, for one test, at a loopback port where nothing listens (a mistyped endpoint)."""
    import fsspec.config
    import s3fs

    dead = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries with backoff would only slow the test down
    monkeypatch.setitem(fsspec.config.conf, "s3", {**fsspec.config.conf.get("s3", {}), "endpoint_url": dead})
    s3fs.S3FileSystem.clear_instance_cache()
    yield dead
    s3fs.S3FileSystem.clear_instance_cache()


def test_unreachable_endpoint_is_one_clear_error_naming_the_url(dead_endpoint, corpus, local_index,
                                                                tiny_model_folder, tmp_path, capsys, monkeypatch):
    from m2v_search.cli import index_main as main
    from m2v_search.distributed import build_index_dask

    monkeypatch.setenv("M2V_SEARCH_INDEX_CACHE", str(tmp_path / "cache"))
    # the library: botocore's EndpointConnectionError is no OSError; each call still raises its documented error
    with pytest.raises(CorpusError, match=rf"s3://{BUCKET}/jsonl/a\.jsonl.*Could not connect"):
        expand_sources(f"s3://{BUCKET}/jsonl/a.jsonl")
    with pytest.raises(RemoteStorageError, match=rf"s3://{BUCKET}/indexes/dead"):
        upload_index(local_index.path, f"s3://{BUCKET}/indexes/dead")
    with pytest.raises(RemoteStorageError, match=rf"s3://{BUCKET}/indexes/dead"):
        download_index(f"s3://{BUCKET}/indexes/dead", tmp_path / "cache")
    with pytest.raises(RemoteStorageError, match=rf"cannot read s3://{BUCKET}/indexes/dead"):
        build_index_dask(corpus["local"], f"s3://{BUCKET}/indexes/dead", client=object(),
                         model=str(tiny_model_folder), show_progress=False)
    # the CLI: one line naming the URL, the exit code of its kind, never "unexpected"
    model = ["--model", str(tiny_model_folder), "--quiet"]
    for command, code, named in (
            (["build", f"s3://{BUCKET}/jsonl/a.jsonl", "-o", str(tmp_path / "x")], 3, f"s3://{BUCKET}/jsonl/a.jsonl"),
            (["build", str(corpus["local"]), "-o", f"s3://{BUCKET}/indexes/dead"], 7, f"s3://{BUCKET}/indexes/dead"),
            (["build", str(corpus["local"]), "-o", f"s3://{BUCKET}/indexes/dead", "--engine", "dask", "--scheduler",
              f"tcp://127.0.0.1:{_free_port()}"], 7, f"s3://{BUCKET}/indexes/dead"),
            (["search", f"s3://{BUCKET}/indexes/dead", "-q", "x"], 7, f"s3://{BUCKET}/indexes/dead")):
        assert main([*command, *model]) == code, command
        err = capsys.readouterr().err
        assert named in err and "unexpected" not in err and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_dask_build_to_a_missing_bucket_names_the_staging_url(s3, corpus, tiny_model_folder, tmp_path, capsys):
    from m2v_search.cli import index_main as main

    model = ["--model", str(tiny_model_folder), "--quiet"]
    dask = ["--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"]
    # a missing output bucket is now found before any work (the staging area there would be next)
    for output, staging, named in ((f"s3://{BUCKET}-missing/idx", [], f"s3://{BUCKET}-missing/idx"),
                                   (f"s3://{BUCKET}/indexes/staged", ["--staging", f"s3://{BUCKET}-missing/tmp"],
                                    f"s3://{BUCKET}-missing/tmp")):
        assert main(["build", str(corpus["local"]), "-o", output, *dask, *staging, *model]) == 7
        err = capsys.readouterr().err
        assert named in err and "does not exist" in err, err
    assert not s3.exists(f"{BUCKET}/indexes/staged")


def test_unreachable_output_fails_before_the_corpus_is_read(dead_endpoint, tiny_model_folder, tmp_path, capsys):
    from m2v_search.cli import index_main as main

    corpus = tmp_path / "corpus.jsonl"  # line 2 is bad: reading the corpus first would report it instead
    corpus.write_text('{"id": "a", "text": "alpha"}\n{"id": "b", "text": \n', encoding="utf-8")
    url = f"s3://{BUCKET}/indexes/dead-early"
    assert main(["build", str(corpus), "-o", url, "--model", str(tiny_model_folder), "--quiet"]) == 7
    err = capsys.readouterr().err
    assert f"cannot read {url}" in err and "line 2" not in err, err


def test_upload_into_a_prefix_of_other_objects_leaves_them_alone(s3, local_index, tiny_model_folder, corpus, tmp_path,
                                                                 capsys, monkeypatch):
    from m2v_search.cli import index_main as main
    from m2v_search.index.errors import OutputDirectoryError

    monkeypatch.setenv("M2V_SEARCH_INDEX_CACHE", str(tmp_path / "cache"))
    others = {"index.html": b"<html>home</html>", "lexical.csv": b"a,b", "docstore.md": b"notes"}
    for name, data in others.items():  # a careless -o: a website's bucket prefix
        s3.pipe_file(f"{BUCKET}/site/{name}", data)
    upload_index(local_index.path, f"s3://{BUCKET}/site")
    assert {name: s3.cat_file(f"{BUCKET}/site/{name}") for name in others} == others
    with VectorIndex.open(download_index(f"s3://{BUCKET}/site", tmp_path / "cache")) as index:
        assert len(index) == ROWS
    # a manifest.json that is not an index's is never overwritten (nor anything written next to it)
    foreign = b'{"name": "my web app", "version": 3}'
    s3.pipe_file(f"{BUCKET}/app/manifest.json", foreign)
    with pytest.raises(OutputDirectoryError, match=rf"s3://{BUCKET}/app/manifest\.json is not an m2v-search index"):
        upload_index(local_index.path, f"s3://{BUCKET}/app")
    assert main(["build", str(corpus["local"]), "-o", f"s3://{BUCKET}/app", "--model", str(tiny_model_folder),
                 "--quiet"]) == 2
    assert "is not an m2v-search index" in capsys.readouterr().err
    assert s3.ls(f"{BUCKET}/app", refresh=True) == [f"{BUCKET}/app/manifest.json"]
    assert s3.cat_file(f"{BUCKET}/app/manifest.json") == foreign


def test_binding_save_never_overwrites_a_foreign_manifest(s3, tiny_model, tiny_model_folder):
    from m2v_search.binding import IndexBinding
    from m2v_search.index.errors import OutputDirectoryError

    foreign = b'{"name": "my web app", "version": 3}'
    s3.pipe_file(f"{BUCKET}/bound/manifest.json", foreign)
    binding = IndexBinding(model=tiny_model, model_path=str(tiny_model_folder))
    binding.add(["alpha", "beta"], ids=["a", "b"])
    with pytest.raises(OutputDirectoryError, match=rf"{BUCKET}/bound/manifest\.json is not an m2v-search index"):
        binding.save(f"s3://{BUCKET}/bound")
    assert s3.ls(f"{BUCKET}/bound", refresh=True) == [f"{BUCKET}/bound/manifest.json"]
    assert s3.cat_file(f"{BUCKET}/bound/manifest.json") == foreign
    binding.save(f"s3://{BUCKET}/bound-own")  # a URL of its own: saved and opened again
    assert len(IndexBinding.open(f"s3://{BUCKET}/bound-own").index) == 2


def test_connection_lost_while_reading_names_the_object_and_line(s3, corpus, tiny_model_folder, tmp_path, capsys,
                                                                 monkeypatch):
    import botocore.exceptions
    import fsspec.config
    import s3fs

    from m2v_search.cli import index_main as main

    original = s3fs.S3FileSystem._call_s3

    async def dropping_call(self, method, *args, **kwargs):
        if method == "get_object" and not kwargs.get("Range", "bytes=0-").startswith("bytes=0-"):
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1 (injected)")
        return await original(self, method, *args, **kwargs)

    monkeypatch.setitem(fsspec.config.conf, "s3", {**fsspec.config.conf.get("s3", {}), "default_block_size": 16_384})
    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", dropping_call)
    s3fs.S3FileSystem.clear_instance_cache()  # instances bind their sync methods when made
    try:
        code = main(["build", f"s3://{BUCKET}/jsonl/a.jsonl", "-o", str(tmp_path / "x"), "--model",
                     str(tiny_model_folder), "--quiet"])
    finally:
        monkeypatch.undo()
        s3fs.S3FileSystem.clear_instance_cache()
    err = capsys.readouterr().err
    assert code == 7 and re.search(rf"s3://{BUCKET}/jsonl/a\.jsonl: line [1-9][0-9]*: cannot read the corpus", err), err
    assert "unexpected" not in err and not (tmp_path / "x" / "manifest.json").exists()


def test_partitioned_index_on_an_unreachable_endpoint_names_the_url(dead_endpoint):
    from m2v_search.index.partitioned import PartitionedIndex

    with pytest.raises(RemoteStorageError, match=rf"cannot read s3://{BUCKET}/partitioned-dead/partitions\.json"):
        PartitionedIndex.open(f"s3://{BUCKET}/partitioned-dead")


def _forget_credentials() -> None:
    """Runs on every worker: no AWS credentials there (a cluster whose workers were not given any)."""
    import s3fs

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull,
                      AWS_EC2_METADATA_DISABLED="true")  # never ask the network for instance credentials
    s3fs.S3FileSystem.clear_instance_cache()


def _restore_credentials() -> None:
    import s3fs

    for key in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_EC2_METADATA_DISABLED"):
        os.environ.pop(key, None)
    os.environ.update(ENVIRONMENT)
    s3fs.S3FileSystem.clear_instance_cache()


def test_workers_without_credentials_name_the_staging_url(s3, client, corpus, tiny_model_folder, tmp_path):
    from m2v_search.distributed import build_index_dask

    client.run(_forget_credentials)
    try:
        failed = rf"s3://{BUCKET}/staging-nocreds/build-[0-9a-f]+/.* failed on .*Unable to locate credentials"
        with pytest.raises(RemoteStorageError, match=failed):
            build_index_dask(corpus["local"], tmp_path / "index", client=client, model=str(tiny_model_folder),
                             staging_dir=f"s3://{BUCKET}/staging-nocreds", show_progress=False)
    finally:
        client.run(_restore_credentials)
    assert not (tmp_path / "index" / "manifest.json").exists()
    assert not s3.exists(f"{BUCKET}/staging-nocreds") or s3.find(f"{BUCKET}/staging-nocreds") == []


@pytest.fixture
def silent_endpoint(s3_endpoint, monkeypatch):
    """A loopback endpoint that accepts connections and never answers (a hung proxy or server)."""
    import threading

    import fsspec.config
    import s3fs

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept_forever, daemon=True).start()
    silent = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent)
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", silent)
    monkeypatch.setenv("M2V_S3_TIMEOUT", "1")
    monkeypatch.setitem(fsspec.config.conf, "s3", {**fsspec.config.conf.get("s3", {}), "endpoint_url": silent})
    s3fs.S3FileSystem.clear_instance_cache()
    yield silent
    listener.close()
    for connection in held:
        connection.close()
    s3fs.S3FileSystem.clear_instance_cache()


def test_an_endpoint_that_never_answers_fails_with_a_timeout_not_a_hang(silent_endpoint, tiny_model_folder, tmp_path,
                                                                        capsys, monkeypatch):
    """Before: a build or search waited forever on an endpoint that accepted connections and said nothing."""
    from m2v_search.cli import index_main as main

    monkeypatch.setenv("M2V_SEARCH_INDEX_CACHE", str(tmp_path / "cache"))
    started = time.monotonic()
    for command, code in ((["build", f"s3://{BUCKET}/jsonl/a.jsonl", "-o", str(tmp_path / "x")], 3),
                          (["search", f"s3://{BUCKET}/indexes/silent", "-q", "x"], 7)):
        assert main([*command, "--model", str(tiny_model_folder), "--quiet"]) == code, command
        err = capsys.readouterr().err
        assert f"s3://{BUCKET}/" in err and "timeout" in err.lower() and "Traceback" not in err, err
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("url, secret", [("s3://AKIASECRET:SuperSecret123@bkt/missing.jsonl", "SuperSecret123"),
                                         (f"s3://{BUCKET}/missing.jsonl?X-Amz-Signature=SECRETSIG", "SECRETSIG")])
def test_secrets_in_a_url_never_reach_a_message(s3, url, secret, tiny_model_folder, tmp_path, capsys):
    """Before: the redacted URL was followed by boto's error quoting the whole 'bucket name', secret
    included; a presigned URL's signature was printed whole."""
    from m2v_search.cli import index_main as main

    corpus = tmp_path / "one.jsonl"
    corpus.write_text('{"id": "a", "text": "hello"}\n')
    commands = [["build", url, "-o", str(tmp_path / "x")]]
    if "@" in url:  # an output URL with credentials is refused too (one with a query string is a key like any)
        commands.append(["build", str(corpus), "-o", url.replace("missing.jsonl", "index")])
    for command in commands:
        assert main([*command, "--model", str(tiny_model_folder), "--quiet"]) != 0
        err = capsys.readouterr().err
        assert secret not in err and "***" in err, err


def test_a_missing_output_bucket_is_found_before_the_build(s3, tiny_model_folder, tmp_path, capsys):
    """Before: the whole corpus was built locally, then the upload failed on the missing bucket."""
    from m2v_search.cli import index_main as main

    corpus = tmp_path / "corpus.jsonl"  # line 2 is bad: building first would report it instead
    corpus.write_text('{"id": "a", "text": "alpha"}\n{"id": "b", "text": \n', encoding="utf-8")
    assert main(["build", str(corpus), "-o", "s3://no-such-bucket-here/idx", "--model", str(tiny_model_folder),
                 "--quiet"]) == 7
    err = capsys.readouterr().err
    assert "the bucket 'no-such-bucket-here' does not exist" in err and "line 2" not in err, err


def test_only_bucket_urls_that_cannot_hold_userinfo_are_refused_for_it():
    """Azure's abfs://container@account... is the normal form, not credentials."""
    from m2v_search.index.urls import URLError, refuse_credentials

    refuse_credentials("abfs://container@account.dfs.core.windows.net/idx")
    refuse_credentials("az://container/idx")
    with pytest.raises(URLError, match=r"s3://\*\*\*@bucket/x: s3:// URLs cannot carry credentials"):
        refuse_credentials("s3://key:secret@bucket/x")


def test_an_output_url_naming_an_object_is_refused(s3, tiny_model_folder, tmp_path, capsys):
    """Before: -o s3://bucket/data.jsonl (an existing object) was built as a prefix beside it (rc 0),
    while -o naming a local file is refused."""
    from m2v_search.cli import index_main as main

    s3.mkdir("objbucket")
    s3.pipe_file("objbucket/data.jsonl", b'{"id": "a", "text": "alpha"}\n')
    code = main(["build", "s3://objbucket/data.jsonl", "-o", "s3://objbucket/data.jsonl", "--model",
                 str(tiny_model_folder), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "s3://objbucket/data.jsonl is an object (a file)" in err, err
    assert s3.find("objbucket") == ["objbucket/data.jsonl"]
    assert main(["build", "s3://objbucket/data.jsonl", "-o", "s3://objbucket/index", "--model",
                 str(tiny_model_folder), "--quiet"]) == 0
