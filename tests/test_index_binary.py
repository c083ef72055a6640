"""Binary index kinds (sign codes re-scored from int8 copies) on real text encoded by the shipped model.

The corpus is examples/corpus.jsonl (3,414 standard-library docstrings), encoded once by the
bundled m2v-base model; exact (flat) search over the same vectors is the reference.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search.cli import index_main  # noqa: E402
from m2v_search.index import IndexCorruptError, VectorIndex  # noqa: E402
from m2v_search.index import factory as factories  # noqa: E402
from m2v_search.index.backends import binary_file  # noqa: E402
from m2v_search.index.manifest import MANIFEST_NAME, file_entry  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "corpus.jsonl"
BINARY_KINDS = ["binary", "binary-hnsw"]


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def queries(records) -> list[str]:
    """The first half of every 7th document: near, not equal to, stored texts."""
    return [r["text"][: max(8, len(r["text"]) // 2)] for r in records[::7]]


@pytest.fixture(scope="module")
def exact(records) -> VectorIndex:
    index = VectorIndex.create(index_kind="flat")  # the shipped model
    index.upsert(records)
    return index


@pytest.fixture(scope="module")
def built(records, exact, tmp_path_factory) -> dict[str, VectorIndex]:
    """Each binary kind saved once (the save trains the centre and converts from the flat staging)."""
    indexes = {}
    for kind in BINARY_KINDS:
        path = tmp_path_factory.mktemp(kind)
        index = VectorIndex.create(path, exact.model, index_kind=kind)
        index.upsert(records)
        index.save()
        indexes[kind] = VectorIndex.open(path)
    return indexes


def recall_at_10(found: list[list], truth: list[list]) -> float:
    return float(np.mean([len({h.id for h in a} & {h.id for h in b}) / max(1, len(b)) for a, b in zip(found, truth)]))


@pytest.mark.parametrize("kind", BINARY_KINDS)
def test_recall_against_flat_with_default_and_small_rescore(kind, built, exact, queries, records) -> None:
    index = built[kind]
    assert index.kind == kind and index.search_params["rescore"] == factories.BINARY_RESCORE
    truth = exact.search_batch(queries, 10)
    default = recall_at_10(index.search_batch(queries, 10), truth)
    few = recall_at_10(index.search_batch(queries, 10, rescore=12), truth)
    assert default >= 0.99, default
    assert few < default  # the Hamming order alone is much worse: the re-scoring is what keeps recall
    # dense scores are the exact cosines up to int8 rounding: each coordinate of a stored vector is off by
    # at most half its scale (max |x| / 127), so a score by at most |q|_1 * max|x| / 254 (hybrid scores
    # are not compared: relative fusion rescales by each leg's candidates, which differ between kinds)
    texts = {r["id"]: r["text"] for r in records}
    for query in queries[:40]:
        vector = exact.model.encode([query], normalize=True)[0]
        by_id = {h.id: h.score for h in exact.search(query, 10, mode="dense")}
        for hit in index.search(query, 10, mode="dense"):
            if hit.id in by_id:
                stored = exact.model.encode([texts[hit.id]], normalize=True)[0]
                bound = np.abs(vector).sum() * np.abs(stored).max() / 254 + 1e-4
                assert abs(hit.score - by_id[hit.id]) <= bound, (query, hit.id)


@pytest.mark.parametrize("kind", BINARY_KINDS)
@pytest.mark.parametrize("condition", [{"kind": "class"}, {"module": "json"}, {"module": {"$in": ["os", "re"]}}])
def test_filters_are_exact(kind, condition, built, exact, queries) -> None:
    index = built[kind]
    allowed = set(exact.ids(condition))
    assert allowed
    got = index.search_batch(queries[:60], 10, filter=condition)
    want = exact.search_batch(queries[:60], 10, filter=condition)
    for hits, expected in zip(got, want):
        assert {h.id for h in hits} <= allowed
        assert len(hits) == min(10, len(allowed))
    assert recall_at_10(got, want) >= 0.98
    # few candidates: matches above 4x the candidates restrict the Hamming search by an id selector
    for hits in index.search_batch(queries[:60], 10, filter=condition, rescore=20):
        assert {h.id for h in hits} <= allowed and len(hits) == min(10, len(allowed))


@pytest.mark.parametrize("kind", BINARY_KINDS)
def test_delete_upsert_save_open_and_compaction(kind, records, exact, tmp_path) -> None:
    index = VectorIndex.create(tmp_path, exact.model, index_kind=kind)
    index.upsert(records)
    index.save()
    query = records[100]["text"]
    assert index.search(query, 1)[0].id == records[100]["id"]
    assert index.delete([records[100]["id"]]) == 1
    assert records[100]["id"] not in {h.id for h in index.search(query, 20)}
    assert records[100]["id"] not in {h.id for h in index.search(query, 20, rescore=30)}  # live-id selector
    index.upsert([{"id": records[5]["id"], "text": "a completely new text about compressing data with gzip"}])
    assert index.search("compressing data with gzip", 1)[0].id == records[5]["id"]
    before = [[h.id for h in hits] for hits in index.search_batch([query, "parse json"], 10)]
    index.save()
    reopened = VectorIndex.open(tmp_path)
    assert reopened.kind == kind and len(reopened) == len(records) - 1
    assert reopened.backend.tombstone_count == 2  # the deleted and the replaced vector, until compaction
    assert [[h.id for h in hits] for hits in reopened.search_batch([query, "parse json"], 10)] == before
    assert reopened.verify() == []
    reopened.delete([r["id"] for r in records[:900]])  # > 20% deleted: the next save compacts
    reopened.save()
    compacted = VectorIndex.open(tmp_path)
    assert compacted.backend.tombstone_count == 0 and compacted.backend.ntotal == len(records) - 900
    assert compacted.kind == kind and compacted.verify() == []
    assert not {h.id for h in compacted.search(records[10]["text"], 20)} & {r["id"] for r in records[:900]}


def test_tampered_files_are_refused(built, tmp_path) -> None:
    index = built["binary"]
    index.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    name = manifest["index"]["file"]
    data = bytearray((tmp_path / name).read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="sha256"):
        VectorIndex.open(tmp_path)
    assert index_main(["verify", str(tmp_path)]) != 0
    # a file whose checksum was updated with it must still be a consistent binary index
    meta, arrays = binary_file.read_arrays(bytes(index.backend.to_bytes()))
    arrays = dict(arrays, scales=arrays["scales"][:-1])
    for broken in (b"NOTBINARY" + bytes(100), binary_file.to_bytes(meta, arrays),
                   binary_file.MAGIC + struct.pack("<Q", 1 << 40)):
        (tmp_path / name).write_bytes(broken)
        manifest["files"][name] = file_entry(tmp_path / name)
        (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
        with pytest.raises(IndexCorruptError, match="binary"):
            VectorIndex.open(tmp_path)


def test_index_file_round_trip_is_byte_identical(built) -> None:
    backend = built["binary-hnsw"].backend
    data = backend.to_bytes()
    again = type(backend).from_bytes(data, backend.spec)
    assert again.to_bytes() == data and again.ntotal == backend.ntotal


def test_binary_files_are_not_named_as_faiss_files_and_the_others_read_in_faiss(records, exact, tmp_path) -> None:
    """Before: the binary kinds' own format was saved as index.<gen>.faiss, which faiss.read_index refuses."""
    import faiss

    for kind in BINARY_KINDS:
        saved = VectorIndex.create(tmp_path / kind, exact.model, index_kind=kind)
        saved.upsert(records[:500])
        saved.save()
        names = [p.name for p in (tmp_path / kind).iterdir() if p.name.startswith("index.")]
        assert len(names) == 1 and names[0].endswith(".m2vbin"), (kind, names)
        assert (tmp_path / kind / names[0]).read_bytes()[:8] == binary_file.MAGIC
    for kind in ("flat", "hnsw"):
        path = tmp_path / kind
        saved = VectorIndex.create(path, exact.model, index_kind=kind)
        saved.upsert([{"id": str(i), "text": f"document {i}"} for i in range(50)])
        saved.save()
        (name,) = [p for p in path.iterdir() if p.name.startswith("index.")]
        assert name.suffix == ".faiss" and faiss.read_index(str(name)).ntotal == 50


def test_a_binary_index_saved_under_the_old_faiss_name_opens_and_moves_on_its_next_save(records, exact, tmp_path,
                                                                                       queries) -> None:
    folder = tmp_path / "old"
    saved = VectorIndex.create(folder, exact.model, index_kind="binary")
    saved.upsert(records)
    saved.save()
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    new_name = manifest["index"]["file"]
    old_name = new_name.replace(".m2vbin", ".faiss")
    (folder / new_name).rename(folder / old_name)
    manifest["index"]["file"] = old_name
    manifest["files"][old_name] = manifest["files"].pop(new_name)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    old = VectorIndex.open(folder)
    assert old.verify() == [] and [h.id for h in old.search(queries[0], 5)] == [h.id for h in saved.search(queries[0], 5)]
    old.upsert([{"id": "new", "text": "one more document"}])
    old.save()
    names = sorted(p.name for p in folder.iterdir() if p.name.startswith("index."))
    assert len(names) == 1 and names[0].endswith(".m2vbin") and VectorIndex.open(folder).verify() == []


def test_auto_records_its_reason(records, exact, tmp_path) -> None:
    index = VectorIndex.create(tmp_path, exact.model)  # auto
    index.upsert(records[:500])
    index.save()
    reason = VectorIndex.open(tmp_path).build_info["index_choice"]
    assert reason.startswith("auto chose flat: 500 vectors of 256 dims <= 10,000"), reason


def test_auto_thresholds_and_reason() -> None:
    assert factories.resolve("auto", 10_000, 256).kind == "flat"
    chosen = factories.resolve("auto", 172_000, 256)
    assert chosen.kind == "binary" and "binary" in chosen.reason and "0.29x" in chosen.reason
    assert factories.resolve("auto", 5_000_000, 256, memory_budget=64 << 30).kind == "binary-hnsw"
    assert factories.resolve("auto", 172_000, 300).kind == "hnsw"  # codes need dims divisible by 8
    assert factories.resolve("auto", 5_000_000, 256, memory_budget=1 << 30).kind == "ivf-pq"


def test_binary_kinds_need_whole_bytes_of_bits() -> None:
    with pytest.raises(ValueError, match="divisible by 8"):
        VectorIndex.create(dim=12, index_kind="binary")


def test_rescore_must_be_a_positive_integer(exact) -> None:
    with pytest.raises(ValueError, match="rescore"):
        exact.search("x", 3, rescore=0)
    with pytest.raises(ValueError, match="rescore"):
        VectorIndex.create(model=exact.model, index_kind="binary", rescore=True)


def test_cli_build_search_info_with_binary(tmp_path, capsys) -> None:
    directory = tmp_path / "idx"
    assert index_main(["build", str(EXAMPLES), "-o", str(directory), "--index", "binary", "--rescore", "300",
                       "--quiet"]) == 0
    capsys.readouterr()
    assert index_main(["search", str(directory), "-q", "read a json file", "-k", "3", "--rescore", "50",
                       "--filter", "kind=function"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 3 and all(h["metadata"]["kind"] == "function" for h in hits)
    assert index_main(["info", str(directory), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["index_kind"] == "binary" and info["search_params"]["rescore"] == 300
    assert info["index_choice"] == "binary was requested"
    assert index_main(["verify", str(directory)]) == 0


def test_dask_build_of_a_binary_index(records, built, tmp_path, queries) -> None:
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from m2v_search.distributed import build_index_dask

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        report = build_index_dask([EXAMPLES], tmp_path / "dask", client=client, index="binary", show_progress=False)
    assert report.factory == "BFlat" and report.documents == len(records)
    distributed = VectorIndex.open(tmp_path / "dask")
    assert distributed.kind == "binary" and distributed.verify() == []
    single = built["binary"]
    same = [[h.id for h in a] == [h.id for h in b]
            for a, b in zip(distributed.search_batch(queries, 10), single.search_batch(queries, 10))]
    assert np.mean(same) >= 0.98


def test_langchain_and_llamaindex_stores_with_binary(records, exact, tmp_path) -> None:
    langchain_m2v = pytest.importorskip("langchain_m2v")
    from langchain_m2v import M2VEmbeddings

    texts = [r["text"] for r in records[:400]]
    store = langchain_m2v.M2VVectorStore(M2VEmbeddings.from_model(exact.model), index_kind="binary")
    store.add_texts(texts, ids=[r["id"] for r in records[:400]], metadatas=[r["metadata"] for r in records[:400]])
    store.save_local(tmp_path / "lc")
    loaded = langchain_m2v.M2VVectorStore.load_local(tmp_path / "lc")
    assert loaded.index.kind == "binary"
    found = loaded.similarity_search(texts[42], k=3, filter={"kind": records[42]["metadata"]["kind"]})
    assert found[0].id == records[42]["id"]

    pytest.importorskip("llama_index.vector_stores.m2v")
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.m2v import M2VVectorStore

    vectors = exact.embed(texts)
    nodes = [TextNode(id_=r["id"], text=r["text"], metadata=r["metadata"], embedding=v.tolist())
             for r, v in zip(records[:400], vectors)]
    llama = M2VVectorStore(model=exact.model, index_kind="binary")
    llama.add(nodes)
    llama.persist(str(tmp_path / "li"))
    assert llama.client.kind == "binary"
    result = llama.query(VectorStoreQuery(query_embedding=vectors[7].tolist(), similarity_top_k=2))
    assert result.ids[0] == records[7]["id"]
