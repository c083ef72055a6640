"""VectorIndex: build, search, upsert, delete, filters inside the search, get, persistence and its failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search.index import (  # noqa: E402
    Hit,
    IndexConflictError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
    Record,
    VectorIndex,
)

TOPICS = ["reading files line by line", "parsing json documents", "sorting lists of numbers",
          "sending email messages", "compressing data with gzip", "random number generators"]


def corpus(n: int = 600) -> list[dict]:
    return [{"id": f"doc-{i}", "text": f"{TOPICS[i % len(TOPICS)]} example {i} variant {i % 17}",
             "metadata": {"topic": i % len(TOPICS), "even": i % 2 == 0, "n": i, "tag": f"t{i % 5}"}}
            for i in range(n)]


@pytest.fixture()
def index(tiny_model, tiny_model_folder: Path) -> VectorIndex:
    vectors = VectorIndex.create(None, tiny_model, index_kind="flat", model_path=str(tiny_model_folder))
    vectors.upsert(corpus())
    return vectors


def exact_scores(index: VectorIndex, query: str, ids: list[str]) -> np.ndarray:
    q = index.model.encode([query], normalize=True)[0]
    docs = index.model.encode([r.text for r in index.get(ids)], normalize=True)
    return docs @ q


def test_import_does_not_load_faiss() -> None:
    code = "import sys, m2v_search, m2v_search.index; print('faiss' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_build_and_search(index: VectorIndex) -> None:
    assert len(index) == 600 and index.dim == 32
    target = index.get(["doc-123"])[0]
    hits = index.search(target.text, k=5, mode="dense")
    assert isinstance(hits[0], Hit) and hits[0].id == "doc-123"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].metadata == {"topic": 123 % 6, "even": False, "n": 123, "tag": "t3"}
    # scores are cosine similarities of the model's vectors
    np.testing.assert_allclose([h.score for h in hits], exact_scores(index, target.text, [h.id for h in hits]),
                               atol=1e-5)


def test_search_batch_vector_queries_and_k(index: VectorIndex) -> None:
    texts = [index.get([f"doc-{i}"])[0].text for i in (5, 77)]
    by_text = index.search_batch(texts, k=3, mode="dense")
    by_vector = index.search_batch(index.model.encode(texts), k=3)
    assert [[h.id for h in hits] for hits in by_text] == [[h.id for h in hits] for hits in by_vector]
    assert by_text[0][0].id == "doc-5" and by_text[1][0].id == "doc-77"
    assert index.search(index.model.encode(texts[0]), k=1)[0].id == "doc-5"
    assert len(index.search("anything", k=10_000)) == 600
    with pytest.raises(ValueError):
        index.search("x", k=0)
    with pytest.raises(ValueError):
        index.search_batch(np.zeros((1, 7), np.float32))


def test_empty_index_search(tiny_model) -> None:
    empty = VectorIndex.create(model=tiny_model, index_kind="flat")
    assert len(empty) == 0 and empty.search("hello") == [] and empty.search_batch(["a", "b"]) == [[], []]


def test_upsert_replaces_and_skips_unchanged(index: VectorIndex) -> None:
    ids = index.upsert([{"id": "doc-3", "text": "a totally different sentence about volcanoes"}])
    assert ids == ["doc-3"] and len(index) == 600
    assert index.last_upsert.replaced == 1
    assert index.get(["doc-3"])[0].text == "a totally different sentence about volcanoes"
    assert index.search("a totally different sentence about volcanoes", k=1)[0].id == "doc-3"
    index.upsert(corpus()[:10])  # doc-3 changes back, nine others are the same
    assert (index.last_upsert.replaced, index.last_upsert.skipped) == (1, 9)
    # the same id twice in one call: the last one wins
    index.upsert([Record("dup", "first text"), Record("dup", "second text")])
    assert index.get(["dup"]) == [Record("dup", "second text", {})] and len(index) == 601


def test_add_texts_and_given_vectors(tiny_model) -> None:
    vectors = VectorIndex.create(model=tiny_model, index_kind="flat")
    ids = vectors.add_texts(["alpha beta", "gamma delta"], metadatas=[{"k": 1}, {"k": 2}])
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    own = np.eye(32, dtype=np.float32)[:2] * 3.0
    vectors.add_texts(["x", "y"], ids=["e0", "e1"], vectors=own)
    hit = vectors.search(np.eye(32, dtype=np.float32)[1], k=1, include_vectors=True)[0]
    assert hit.id == "e1" and hit.score == pytest.approx(1.0)
    np.testing.assert_allclose(hit.vector, np.eye(32)[1], atol=1e-6)  # stored normalised
    with pytest.raises(ValueError, match="2 texts but 1 ids"):
        vectors.add_texts(["a", "b"], ids=["only-one"])


def test_delete_and_get(index: VectorIndex) -> None:
    assert index.delete(["doc-1", "doc-2", "nope", "doc-1"]) == 2
    assert len(index) == 598
    assert [r.id for r in index.get(["doc-4", "doc-1", "doc-0", "nope"])] == ["doc-4", "doc-0"]
    text = corpus()[1]["text"]
    assert "doc-1" not in {h.id for h in index.search(text, k=50)}
    assert index.delete(["doc-1"]) == 0


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_filter_is_applied_inside_the_search(tiny_model, tmp_path: Path, kind: str) -> None:
    """A filter matching only documents far from the query still returns them (no post-filtering)."""
    vectors = VectorIndex.create(tmp_path / kind, tiny_model, index_kind=kind)
    records = corpus(3000)
    query = records[0]["text"]
    far = np.argsort(vectors.model.encode([r["text"] for r in records], normalize=True)
                     @ vectors.model.encode(query, normalize=True))[:4]  # the 4 least similar documents
    for i in far:
        records[i]["metadata"]["group"] = "rare"
    vectors.upsert(records)
    vectors.save()  # ivf: trains and switches from the staging flat index
    assert vectors.kind == kind
    hits = vectors.search(query, k=3, filter={"group": "rare"}, mode="dense")
    assert len(hits) == 3 and {h.id for h in hits} <= {f"doc-{i}" for i in far}
    np.testing.assert_allclose([h.score for h in hits], exact_scores(vectors, query, [h.id for h in hits]),
                               atol=1e-5)
    assert [h.id for h in hits] == [f"doc-{i}" for i in far[::-1][:3]]  # best of the four, in order
    # larger filters still return k results that all match
    hits = vectors.search(query, k=10, filter={"topic": 2, "even": True})
    assert len(hits) == 10 and all(h.metadata["topic"] == 2 and h.metadata["even"] for h in hits)


def test_filter_operators(index: VectorIndex) -> None:
    def ids(filter: dict) -> set[int]:
        return {h.metadata["n"] for h in index.search("example", k=600, filter=filter)}

    assert ids({"n": {"$lt": 5}}) == {0, 1, 2, 3, 4}
    assert ids({"n": {"$gte": 595}}) == {595, 596, 597, 598, 599}
    assert ids({"n": [1, 2, 900]}) == {1, 2}
    assert ids({"n": {"$in": [7, 8]}, "even": True}) == {8}
    assert ids({"tag": "t1", "n": {"$lte": 20}}) == {1, 6, 11, 16}
    assert len(ids({"tag": {"$ne": "t0"}})) == 480
    assert len(ids({"tag": {"$nin": ["t0", "t1"]}})) == 360
    assert ids({"missing": "x"}) == set()
    assert index.search("example", filter={"n": -1}) == []
    with pytest.raises(ValueError, match="unknown filter operator"):
        index.search("x", filter={"n": {"$regex": "a"}})


def test_save_reload_same_results(index: VectorIndex, tmp_path: Path, tiny_model_folder: Path) -> None:
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["model"]["path"] == str(tiny_model_folder.resolve())
    assert manifest["counts"]["documents"] == 600 and manifest["metric"] == "inner_product"
    assert set(manifest["files"]) == {p.name for p in (tmp_path / "idx").iterdir()
                                      if p.name not in ("manifest.json", ".lock")}
    reopened = VectorIndex.open(tmp_path / "idx")  # model reloaded from the recorded folder
    assert len(reopened) == 600 and reopened.model.fingerprint == index.model.fingerprint
    query = corpus()[42]["text"]
    assert [h.id for h in reopened.search(query, k=7)] == [h.id for h in index.search(query, k=7)]
    assert reopened.get(["doc-9"]) == index.get(["doc-9"])
    reopened.delete(["doc-9"])
    reopened.upsert([{"id": "new", "text": "brand new"}])
    reopened.save()
    again = VectorIndex.open(tmp_path / "idx")
    assert len(again) == 600 and again.get(["doc-9"]) == [] and again.get(["new"])[0].text == "brand new"
    assert again.verify() == []
    names = sorted(p.name.split(".")[0] for p in (tmp_path / "idx").iterdir() if not p.name.startswith("."))
    assert names == ["docstore", "index", "lexical", "lexical", "manifest"]


def test_open_create_and_missing(tmp_path: Path, tiny_model) -> None:
    with pytest.raises(IndexNotFoundError):
        VectorIndex.open(tmp_path / "nothing")
    created = VectorIndex.open(tmp_path / "new", model=tiny_model, create=True, index_kind="flat")
    assert len(created) == 0 and created.path == tmp_path / "new"


def test_hnsw_delete_and_compaction(tiny_model, tmp_path: Path) -> None:
    vectors = VectorIndex.create(tmp_path / "h", tiny_model, index_kind="hnsw")
    vectors.upsert(corpus(500))
    deleted = [f"doc-{i}" for i in range(0, 500, 3)]
    vectors.delete(deleted)
    assert len(vectors) == 500 - len(deleted)
    found = {h.id for h in vectors.search("example", k=500)}
    assert len(found) == len(vectors) and not found & set(deleted)
    vectors.save()  # a third deleted: rebuilt without them
    assert vectors.faiss_index.ntotal == len(vectors)
    reopened = VectorIndex.open(tmp_path / "h", model=tiny_model)
    assert reopened.verify() == [] and len(reopened.search("example", k=1000)) == len(vectors)


def test_model_mismatch(index: VectorIndex, tmp_path: Path, teacher_tokenizer) -> None:
    from m2v_search import StaticModel

    index.save(tmp_path / "idx")
    other = StaticModel(np.random.default_rng(7).standard_normal((teacher_tokenizer.get_vocab_size(), 32))
                        .astype(np.float32), teacher_tokenizer, tokenizer_backend="hf")._named("other")
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        VectorIndex.open(tmp_path / "idx", model=other)
    assert len(VectorIndex.open(tmp_path / "idx", model=other, allow_model_mismatch=True)) == 600
    wrong_dim = StaticModel(np.ones((teacher_tokenizer.get_vocab_size(), 8), np.float32), teacher_tokenizer,
                            tokenizer_backend="hf")
    with pytest.raises(ModelMismatchError, match="32-dim"):
        VectorIndex.open(tmp_path / "idx", model=wrong_dim, allow_model_mismatch=True)


def _saved(index: VectorIndex, tmp_path: Path) -> tuple[Path, dict]:
    directory = tmp_path / "idx"
    index.save(directory)
    return directory, json.loads((directory / "manifest.json").read_text())


def _file(directory: Path, manifest: dict, kind: str) -> Path:
    return directory / manifest[kind]["file"]


def test_corrupt_index_file_never_reaches_faiss(index: VectorIndex, tmp_path: Path, monkeypatch) -> None:
    import faiss

    directory, manifest = _saved(index, tmp_path)
    path = _file(directory, manifest, "index")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    calls = []
    monkeypatch.setattr(faiss, "read_index", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(faiss, "deserialize_index", lambda *a, **k: calls.append(a))
    with pytest.raises(IndexCorruptError, match=f"{path.name} does not match its sha256"):
        VectorIndex.open(directory)
    assert calls == []


def test_truncated_docstore(index: VectorIndex, tmp_path: Path) -> None:
    directory, manifest = _saved(index, tmp_path)
    path = _file(directory, manifest, "docstore")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(IndexCorruptError, match="truncated"):
        VectorIndex.open(directory)


def test_tampered_checksum_and_missing_file(index: VectorIndex, tmp_path: Path) -> None:
    directory, manifest = _saved(index, tmp_path)
    name = manifest["index"]["file"]
    manifest["files"][name]["sha256"] = "0" * 64
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="sha256"):
        VectorIndex.open(directory)
    (directory / name).unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        VectorIndex.open(directory)
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError, match="not valid JSON"):
        VectorIndex.open(directory)


def test_checksummed_but_invalid_faiss_file(index: VectorIndex, tmp_path: Path) -> None:
    from m2v_search.index.manifest import file_entry

    directory, manifest = _saved(index, tmp_path)
    name = manifest["index"]["file"]
    (directory / name).write_bytes(b"garbage" * 100)
    manifest["files"][name] = file_entry(directory / name)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="not a readable FAISS index"):
        VectorIndex.open(directory)


def test_failed_save_keeps_previous_generation(index: VectorIndex, tmp_path: Path, monkeypatch) -> None:
    from m2v_search.index import generations

    directory, _ = _saved(index, tmp_path)
    index.upsert([{"id": "late", "text": "added after the first save"}])

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(generations, "write_manifest", crash)
    with pytest.raises(OSError, match="disk full"):
        index.save()
    reopened = VectorIndex.open(directory)
    assert len(reopened) == 600 and reopened.get(["late"]) == [] and reopened.verify() == []


def test_concurrent_writers_conflict(index: VectorIndex, tmp_path: Path) -> None:
    directory, _ = _saved(index, tmp_path)
    first, second = VectorIndex.open(directory), VectorIndex.open(directory)
    first.delete(["doc-0"])
    first.save()
    second.delete(["doc-1"])
    with pytest.raises(IndexConflictError, match="another writer"):
        second.save()


def test_lock_refuses_a_second_writer_process(index: VectorIndex, tmp_path: Path) -> None:
    directory, _ = _saved(index, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from m2v_search.index.locking import WriterLock; "
         f"lock = WriterLock({str(directory)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexLockedError, match=f"pid {holder.pid}"):
            index.save()
    finally:
        holder.kill()
        holder.wait()
    index.save()  # the lock dies with its holder


def test_clear(index: VectorIndex) -> None:
    index.clear()
    assert len(index) == 0 and index.search("example") == []
    index.upsert(corpus(3))
    assert len(index) == 3 and index.search(corpus(3)[2]["text"], k=1)[0].id == "doc-2"


def test_bad_records(tiny_model) -> None:
    vectors = VectorIndex.create(model=tiny_model, index_kind="flat")
    with pytest.raises(ValueError, match=r"records\[1\] has no 'text'"):
        vectors.upsert([{"id": "a", "text": "ok"}, {"id": "b"}])
    with pytest.raises(TypeError, match=r"records\[0\] text is int"):
        vectors.upsert([{"id": "a", "text": 5}])
    with pytest.raises(ValueError, match="must have shape"):
        vectors.upsert([{"id": "a", "text": "x"}], vectors=np.zeros((1, 3), np.float32))


@pytest.mark.parametrize(("kind", "n"), [("ivf", 3000), ("ivf-pq", 10_000)])
def test_trained_indexes_delete_upsert_reload(tiny_model, tmp_path: Path, kind: str, n: int) -> None:
    vectors = VectorIndex.create(tmp_path / kind, tiny_model, index_kind=kind)
    vectors.upsert(corpus(n))
    vectors.save()
    assert vectors.kind == kind and vectors.factory.startswith("IVF")
    assert vectors.delete([f"doc-{i}" for i in range(0, 60)]) == 60
    vectors.upsert([{"id": "doc-100", "text": "replaced by something else entirely", "metadata": {"n": -5}}])
    hits = vectors.search("example", k=n, filter={"n": {"$lt": 60}})
    assert [h.id for h in hits] == ["doc-100"]  # deleted ones are gone; the replaced one is found
    vectors.save()
    reopened = VectorIndex.open(tmp_path / kind, model=tiny_model)
    assert len(reopened) == n - 60 and reopened.verify() == []
    assert reopened.search(corpus(n)[500]["text"], k=1)[0].id == "doc-500"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_external_vectors_index(tmp_path: Path, tiny_model, kind: str) -> None:
    """An index of vectors from another embedding model: no model, vectors in and out, reopened as such."""
    rng = np.random.default_rng(0)
    n = 3000 if kind == "ivf" else 300
    vectors = rng.normal(size=(n, 48)).astype(np.float32)
    index = VectorIndex.create(tmp_path / kind, dim=48, index_kind=kind)
    assert index.external_vectors and index.model is None and index.dim == 48
    records = [{"id": f"v{i}", "text": f"text {i}", "metadata": {"n": i}} for i in range(n)]
    index.upsert(records, vectors=vectors)
    with pytest.raises(ValueError, match="computed elsewhere .*pass the documents' vectors"):
        index.add_texts(["no vector for me"])
    with pytest.raises(ValueError, match="computed elsewhere .*pass query vectors"):
        index.search("a text query")
    index.save()
    manifest = json.loads((tmp_path / kind / "manifest.json").read_text())
    assert manifest["model"] == {"external": True, "dim": 48}
    reopened = VectorIndex.open(tmp_path / kind)
    assert reopened.external_vectors and len(reopened) == n and reopened.verify() == []
    hits = reopened.search(vectors[7], k=1, filter={"n": {"$lt": 10}})
    assert hits[0].id == "v7" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ModelMismatchError, match="computed elsewhere"):
        VectorIndex.open(tmp_path / kind, model=tiny_model)


def test_external_vectors_bad_dim(tiny_model) -> None:
    with pytest.raises(ValueError, match="dim must be an integer from 1 to"):
        VectorIndex.create(dim=0)
    with pytest.raises(ValueError, match="dim=16 but model"):
        VectorIndex.create(model=tiny_model, dim=16)
    assert VectorIndex.create(model=tiny_model, dim=tiny_model.dim).model is tiny_model


def test_ids_matching_a_filter(index: VectorIndex) -> None:
    assert index.ids() == [f"doc-{i}" for i in range(600)]
    assert index.ids({"n": {"$lt": 3}}) == ["doc-0", "doc-1", "doc-2"]
    index.delete(["doc-1"])
    assert index.ids({"n": {"$lt": 3}}) == ["doc-0", "doc-2"]
    assert index.ids({"tag": "t4", "even": True}) == [f"doc-{i}" for i in range(600) if i % 5 == 4 and i % 2 == 0]


def test_index_keyword_is_a_deprecated_alias_of_index_kind(tiny_model) -> None:
    with pytest.warns(DeprecationWarning, match="index_kind"):
        vectors = VectorIndex.create(model=tiny_model, index="hnsw")
    assert vectors.index_kind == vectors.kind == "hnsw"
    with pytest.warns(DeprecationWarning):
        assert VectorIndex.create(model=tiny_model, index="ivf").index_kind == "flat"  # until trained


def test_index_built_with_a_replaced_bundled_model_opens_with_the_bundled_copy_of_it(
        tiny_model, teacher_tokenizer, tmp_path: Path, monkeypatch) -> None:
    """An index recorded under a bundled name (``m2v-base``) whose model was later replaced by a new
    default opens with the bundled model that still holds its vectors (``m2v-base-v1``)."""
    import shutil

    from m2v_search import StaticModel, persistence
    from m2v_search.index import model_binding

    bundled = tmp_path / "models"
    monkeypatch.setattr(persistence, "BUNDLED_MODELS_DIR", bundled)
    monkeypatch.setattr(model_binding, "_MODEL_CACHE", {})
    tiny_model.save_pretrained(bundled / "base")
    built = VectorIndex.create(tmp_path / "idx", "base")
    built.upsert(corpus(20))
    built.save()
    expected = [hit.id for hit in built.search("example 3", k=5)]
    shutil.move(bundled / "base", bundled / "base-v1")
    newer = StaticModel(np.random.default_rng(99).standard_normal((teacher_tokenizer.get_vocab_size(), 32))
                        .astype(np.float32), teacher_tokenizer, normalize=True)
    newer.save_pretrained(bundled / "base")

    reopened = VectorIndex.open(tmp_path / "idx")
    assert reopened.model.fingerprint == tiny_model.fingerprint
    assert [hit.id for hit in reopened.search("example 3", k=5)] == expected
    shutil.copytree(tmp_path / "idx", tmp_path / "as-built")
    reopened.upsert(corpus(21)[20:])
    reopened.save()
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["model"]["path"] == "base-v1"

    shutil.rmtree(bundled / "base-v1")  # no bundled model holds the vectors: the mismatch is reported
    monkeypatch.setattr(model_binding, "_MODEL_CACHE", {})
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        VectorIndex.open(tmp_path / "as-built")
    shutil.move(bundled / "base", bundled / "base-v1")
    tiny_model.save_pretrained(bundled / "base-v0")  # asked for another model: the error names the right one
    with pytest.raises(ModelMismatchError, match="the bundled 'base-v0' holds its vectors"):
        VectorIndex.open(tmp_path / "as-built", model="base-v1")
