"""Search modes of VectorIndex: the lexical part kept in step with writes, saved, verified; dense,
lexical and hybrid search with filters; errors; indexes without a lexical part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("bm25s")

from m2v_search.index import VectorIndex  # noqa: E402
from m2v_search.index.errors import IndexCorruptError, NoLexicalPartError  # noqa: E402

WORDS = ["apple", "bridge", "castle", "dolphin", "engine", "forest", "guitar", "harbor", "island", "jungle"]


def corpus(n: int = 200) -> list[dict]:
    return [{"id": f"doc-{i}", "text": f"the {WORDS[i % 10]} and the {WORDS[(i // 10) % 10]} story number{i}",
             "metadata": {"group": i % 4, "n": i}} for i in range(n)]


@pytest.fixture()
def index(tiny_model, tiny_model_folder: Path) -> VectorIndex:
    created = VectorIndex.create(None, tiny_model, index_kind="flat", model_path=str(tiny_model_folder))
    created.upsert(corpus())
    return created


def ids(hits: list) -> list[str]:
    return [hit.id for hit in hits]


def test_lexical_mode_finds_the_words(index: VectorIndex) -> None:
    hits = index.search("number17 castle", k=5, mode="lexical")
    assert hits[0].id == "doc-17" and hits[0].score > hits[1].score > 0
    assert all("castle" in hit.text or "number17" in hit.text for hit in hits)


def test_text_queries_default_to_hybrid_and_vectors_to_dense(index: VectorIndex) -> None:
    query = "number42 guitar"
    assert ids(index.search(query, k=5)) == ids(index.search(query, k=5, mode="hybrid"))
    assert index.search(query, k=1)[0].id == "doc-42"
    vector = index.model.encode([query])[0]
    assert ids(index.search(vector, k=5)) == ids(index.search(query, k=5, mode="dense"))
    batch = index.search_batch([query, "number7"], k=3)
    assert [hits[0].id for hits in batch] == ["doc-42", "doc-7"]


def test_alpha_one_is_dense_and_zero_is_lexical(index: VectorIndex) -> None:
    query = "forest engine number3"
    assert ids(index.search(query, k=8, mode="hybrid", alpha=1.0)) == ids(index.search(query, k=8, mode="dense"))
    assert ids(index.search(query, k=8, mode="hybrid", alpha=0.0)) == ids(index.search(query, k=8, mode="lexical"))
    fused = index.search(query, k=8, mode="hybrid", alpha=0.5, fusion="rrf")
    assert len(fused) == 8 and all(0 < hit.score <= 1 for hit in fused)


def test_bad_mode_alpha_and_fusion_are_refused(index: VectorIndex) -> None:
    with pytest.raises(ValueError, match="a query vector searches dense only"):
        index.search(index.model.encode(["apple"])[0], alpha=0.5)  # alpha cannot apply: say so
    with pytest.raises(ValueError, match="unknown search mode 'bm25'"):
        index.search("apple", mode="bm25")
    for alpha in (-0.5, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]"):
            index.search("apple", mode="hybrid", alpha=alpha)
    with pytest.raises(ValueError, match="unknown fusion method"):
        index.search("apple", fusion="max")
    vector = index.model.encode(["apple"])[0]
    with pytest.raises(ValueError, match="needs query texts"):
        index.search(vector, mode="lexical")


def test_filters_apply_inside_both_legs(index: VectorIndex) -> None:
    for mode in ("lexical", "hybrid"):
        hits = index.search("apple bridge", k=20, mode=mode, filter={"group": 3})
        assert hits and all(hit.metadata["group"] == 3 for hit in hits)
    rare = index.search("number7", k=5, mode="lexical", filter={"n": {"$gte": 150}})
    assert all(hit.metadata["n"] >= 150 for hit in rare) and "doc-7" not in ids(rare)
    assert index.search("apple", k=5, mode="hybrid", filter={"group": 99}) == []


def test_a_query_of_stopwords_is_empty_lexically_and_dense_in_hybrid(index: VectorIndex) -> None:
    assert index.search("the and of", k=5, mode="lexical") == []
    assert ids(index.search("the and of", k=5, mode="hybrid")) == ids(index.search("the and of", k=5, mode="dense"))


def test_writes_keep_the_lexical_part_in_step(index: VectorIndex, tmp_path: Path) -> None:
    index.delete(["doc-17"])
    index.upsert([{"id": "doc-5", "text": "a zeppelin over the harbor"}, {"id": "new", "text": "zeppelin museum"}])
    assert "doc-17" not in ids(index.search("number17", k=5, mode="lexical"))
    assert set(ids(index.search("zeppelin", k=5, mode="lexical"))) == {"doc-5", "new"}
    assert index.search("number5", k=5, mode="lexical") == []  # doc-5's old text is gone
    assert index.verify() == []
    index.save(tmp_path / "idx")
    reopened = VectorIndex.open(tmp_path / "idx")
    assert reopened.verify() == []
    assert set(ids(reopened.search("zeppelin", k=5, mode="lexical"))) == {"doc-5", "new"}
    reopened.clear()
    assert reopened.search("zeppelin", k=5, mode="lexical") == [] and reopened.verify() == []


def test_saved_in_the_same_generation_and_checksummed(index: VectorIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    entry = manifest["lexical"]
    generation = manifest["generation"]
    assert entry["header"] == f"lexical.{generation}.json" and entry["arrays"] == f"lexical.{generation}.npz"
    assert entry["documents"] == 200 and entry["analyzer"] == {"language": "english", "stem": True, "stopwords": True,
                                                                     "single_characters": True}
    assert {entry["header"], entry["arrays"]} <= set(manifest["files"])
    reopened = VectorIndex.open(tmp_path / "idx")
    reopened.upsert([{"id": "x", "text": "xylophone"}])
    reopened.save()
    files = sorted(p.name for p in (tmp_path / "idx").iterdir() if p.name.startswith("lexical"))
    assert len(files) == 2 and all(json.loads((tmp_path / "idx" / "manifest.json").read_text())["generation"] in f
                                   for f in files)  # the previous generation's lexical files are gone
    arrays = tmp_path / "idx" / sorted(files)[1]
    data = bytearray(arrays.read_bytes())
    data[len(data) // 2] ^= 0xFF
    arrays.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="lexical"):
        VectorIndex.open(tmp_path / "idx")


def test_index_without_a_lexical_part(tiny_model, tiny_model_folder: Path, tmp_path: Path) -> None:
    plain = VectorIndex.create(tmp_path / "plain", tiny_model, index_kind="flat", lexical=False,
                               model_path=str(tiny_model_folder))
    plain.upsert(corpus(50))
    plain.save()
    assert "lexical" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())
    reopened = VectorIndex.open(tmp_path / "plain")  # as an index saved before lexical parts existed
    assert reopened.lexical is None
    assert ids(reopened.search("number7", k=3)) == ids(reopened.search("number7", k=3, mode="dense"))
    for mode in ("lexical", "hybrid"):
        with pytest.raises(NoLexicalPartError, match="m2v-index reindex --lexical"):
            reopened.search("number7", mode=mode)
    with pytest.raises(NoLexicalPartError, match="alpha=0.3 weighs a hybrid search"):  # not a silent dense search
        reopened.search("number7", alpha=0.3)
    reopened.reindex_lexical("english")
    assert reopened.search("number7", k=1, mode="lexical")[0].id == "doc-7"
    reopened.save()
    again = VectorIndex.open(tmp_path / "plain")
    assert again.lexical is not None and again.verify() == []
    again.reindex_lexical(None)
    again.save()
    assert "lexical" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())


def test_verify_reports_a_lexical_part_out_of_step(index: VectorIndex) -> None:
    assert index.lexical is not None
    index.lexical.delete([3])
    assert any("lexical part" in problem for problem in index.verify())


def test_language_is_configurable_and_recorded(tiny_model, tiny_model_folder: Path, tmp_path: Path) -> None:
    german = VectorIndex.create(tmp_path / "de", tiny_model, index_kind="flat", lexical="german",
                                model_path=str(tiny_model_folder))
    german.upsert([{"id": "a", "text": "Die Häuser am Fluss"}, {"id": "b", "text": "Ein Kind spielt"}])
    german.save()
    reopened = VectorIndex.open(tmp_path / "de")
    assert reopened.lexical.analyzer.language == "german"
    assert ids(reopened.search("Haus", k=2, mode="lexical")) == ["a"]
    with pytest.raises(ValueError, match="unknown analyzer language 'klingon'"):
        VectorIndex.create(None, tiny_model, lexical="klingon")


def test_external_vectors_index_searches_lexically_and_hybrid_with_given_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    external = VectorIndex.create(tmp_path / "ext", dim=8)
    external.upsert(corpus(40), vectors=vectors)
    assert external.search("number12", k=1, mode="lexical")[0].id == "doc-12"
    hits = external.search("number12", k=3, mode="hybrid", query_vector=vectors[12])
    assert hits[0].id == "doc-12"
    with pytest.raises(ValueError, match="pass query vectors"):
        external.search("number12", k=3)  # hybrid by default, and no model to encode the text
    with pytest.raises(ValueError, match="query_vectors must have shape"):
        external.search_batch(["a", "b"], mode="hybrid", query_vectors=vectors[:1])


def test_hybrid_hits_carry_vectors_when_asked(index: VectorIndex) -> None:
    hits = index.search("number9 jungle", k=3, include_vectors=True)
    assert all(hit.vector is not None and hit.vector.shape == (index.dim,) for hit in hits)
