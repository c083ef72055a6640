"""The lexical part: analyzer, BM25 search through bm25s, changes (tombstones, merges), files, filters."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("bm25s")
pytest.importorskip("Stemmer")

from m2v_search.index.errors import IndexCorruptError  # noqa: E402
from m2v_search.index.lexical import (  # noqa: E402
    ARRAYS_FILE,
    HEADER_FILE,
    SEPARATOR_WORD,
    Analyzer,
    LexicalIndex,
)

TEXTS = [
    "The runner was running quickly through the park",
    "A recipe for baking bread with yeast and flour",
    "Parsing JSON documents with the standard library",
    "Compressing files with gzip saves disk space",
    "Sorting a list of numbers in ascending order",
    "Bread and butter for breakfast every morning",
    "Reading files line by line in Python",
    "The park was closed because of the storm",
]


def build(texts: list[str] = TEXTS, start: int = 100) -> LexicalIndex:
    index = LexicalIndex()
    index.add(np.arange(start, start + len(texts)), texts)
    return index


def test_analyzer_lowercases_drops_stopwords_and_stems() -> None:
    analyzer = Analyzer()
    assert analyzer.analyze("The Runners are RUNNING in the parks") == ["runner", "run", "park"]
    assert Analyzer(stem=False).analyze("The Runners are RUNNING") == ["runners", "running"]
    assert Analyzer(stopwords=False, stem=False).analyze("The cat") == ["the", "cat"]
    assert Analyzer("german").analyze("Die Häuser und die Kinder") == ["haus", "kind"]


def test_analyzer_rejects_an_unknown_language() -> None:
    with pytest.raises(ValueError, match="klingon"):
        Analyzer("klingon")


def test_search_finds_stemmed_matches_best_first() -> None:
    index = build()
    iids, scores = index.search("runs in a park", k=3)
    assert iids[0] == 100  # "runner ... running ... park" matches both terms
    assert set(iids.tolist()) == {100, 107}
    assert scores[0] > scores[1] > 0
    assert iids.dtype == np.int64 and scores.dtype == np.float32


def test_query_of_stopwords_or_unknown_words_returns_nothing() -> None:
    index = build()
    for query in ("the and of", "", "zyzzyva", "!!!"):
        iids, scores = index.search(query, k=5)
        assert len(iids) == 0 and len(scores) == 0


def test_k_limits_the_results_and_must_be_positive() -> None:
    index = build()
    assert len(index.search("bread park files", k=2)[0]) == 2
    with pytest.raises(ValueError, match="k must be"):
        index.search("bread", k=0)


def test_delete_hides_documents_and_counts_only_known_ones() -> None:
    index = build()
    assert index.delete([101, 999]) == 1
    assert index.search("bread", k=5)[0].tolist() == [105]
    assert len(index) == len(TEXTS) - 1
    assert 101 not in index.iids().tolist()
    assert index.delete([101]) == 0


def test_add_with_an_existing_id_replaces_the_text() -> None:
    index = build()
    index.merge()
    index.add([103], ["A poem about the ocean"])
    assert index.search("gzip", k=5)[0].tolist() == []
    assert index.search("ocean", k=5)[0].tolist() == [103]
    assert len(index) == len(TEXTS)


def test_allowed_ids_restrict_the_search() -> None:
    index = build()
    assert index.search("bread", k=5, allowed=np.array([105, 106]))[0].tolist() == [105]
    assert index.search("bread", k=5, allowed=np.array([], dtype=np.int64))[0].tolist() == []
    index.delete([105])
    assert index.search("bread", k=5, allowed=np.array([105]))[0].tolist() == []


def test_changes_give_the_same_scores_as_a_fresh_build() -> None:
    """Tombstones, pending additions and replacements, once merged, equal bm25s over the final corpus."""
    extra = ["Running shoes for the park", "Yeast makes the bread rise", "A storm over the ocean"]
    changed = build()
    changed.merge()
    changed.delete([102, 104])
    changed.add([200, 201, 202], extra)
    changed.add([101], ["Flour and water make dough"])
    final = {i: t for i, t in zip(range(100, 100 + len(TEXTS)), TEXTS)}
    del final[102], final[104]
    final.update({200: extra[0], 201: extra[1], 202: extra[2], 101: "Flour and water make dough"})
    fresh = LexicalIndex()
    fresh.add(list(final), list(final.values()))
    for query in ("bread park", "storm ocean running", "flour", "files line"):
        got, want = changed.search(query, k=10), fresh.search(query, k=10)
        assert got[0].tolist() == want[0].tolist()
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


def test_scores_are_bm25s_scores() -> None:
    import bm25s

    analyzer = Analyzer()
    reference = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    reference.index([analyzer.analyze(t) for t in TEXTS], show_progress=False)
    expected = reference.get_scores(analyzer.analyze("bread park running"))
    iids, scores = build(start=0).search("bread park running", k=len(TEXTS))
    np.testing.assert_allclose(scores, expected[iids], rtol=1e-6)


def test_files_round_trip_after_changes() -> None:
    index = build()
    index.delete([100])
    index.add([300], ["Running in the rain"])
    files = index.to_files()
    assert set(files) == {HEADER_FILE, ARRAYS_FILE}
    assert json.loads(files[HEADER_FILE])["documents"] == len(TEXTS)
    with np.load(io.BytesIO(files[ARRAYS_FILE]), allow_pickle=False) as arrays:
        assert 100 not in arrays["doc_iids"].tolist()
    loaded = LexicalIndex.from_files(files)
    assert not loaded.dirty
    for query in ("running park", "bread", "storm"):
        np.testing.assert_array_equal(loaded.search(query, 5)[0], index.search(query, 5)[0])
    loaded.add([301], ["bread pudding"])
    assert 301 in loaded.search("pudding", 5)[0].tolist()


def test_an_empty_index_saves_loads_and_finds_nothing() -> None:
    index = LexicalIndex(Analyzer("french"))
    assert index.search("pain", 5)[0].tolist() == []
    loaded = LexicalIndex.from_files(index.to_files())
    assert loaded.analyzer.language == "french" and len(loaded) == 0
    only_stopwords = LexicalIndex()
    only_stopwords.add([1, 2], ["the and of", "a an the"])
    assert only_stopwords.search("the", 5)[0].tolist() == []
    assert LexicalIndex.from_files(only_stopwords.to_files()).search("and", 5)[0].tolist() == []


@pytest.mark.parametrize("damage", ["truncate", "header", "missing", "arrays"])
def test_damaged_files_are_refused(damage: str) -> None:
    files = build().to_files()
    if damage == "truncate":
        files[ARRAYS_FILE] = files[ARRAYS_FILE][:100]
    elif damage == "header":
        files[HEADER_FILE] = b'{"format": "something else"}'
    elif damage == "missing":
        del files[ARRAYS_FILE]
    else:
        with np.load(io.BytesIO(files[ARRAYS_FILE]), allow_pickle=False) as archive:
            arrays = dict(archive)
        arrays["doc_tokens"] = arrays["doc_tokens"] + 10_000
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        files[ARRAYS_FILE] = buffer.getvalue()
    with pytest.raises(IndexCorruptError, match="lexical"):
        LexicalIndex.from_files(files, source="lexical part of test")


def test_manifest_entry_and_loading_from_verified_contents() -> None:
    from m2v_search.index.lexical import from_manifest, generation_files, manifest_entry

    index = build()
    names = generation_files("000007-abcd1234")
    assert names == {HEADER_FILE: "lexical.000007-abcd1234.json", ARRAYS_FILE: "lexical.000007-abcd1234.npz"}
    files = index.to_files()
    contents = {names[role]: data for role, data in files.items()}
    manifest = {"lexical": manifest_entry(index, names)}
    assert manifest["lexical"]["documents"] == len(TEXTS) and manifest["lexical"]["analyzer"]["language"] == "english"
    loaded = from_manifest(manifest, contents, "DIR")
    assert loaded is not None and loaded.search("bread", 5)[0].tolist() == [101, 105]
    assert from_manifest({}, {}, "DIR") is None  # an index saved before (or without) a lexical part
    with pytest.raises(IndexCorruptError, match="lists the lexical files .* no 'lexical' section"):
        from_manifest({}, contents, "DIR")  # its files listed, its section gone: a damaged manifest
    unlisted = {names[HEADER_FILE]: files[HEADER_FILE]}
    with pytest.raises(IndexCorruptError, match="lexical.arrays.*not listed"):
        from_manifest(manifest, unlisted, "DIR")
    with pytest.raises(IndexCorruptError, match="must be an object"):
        from_manifest({"lexical": "yes"}, contents, "DIR")


def test_from_rows_indexes_every_row() -> None:
    from m2v_search.index.lexical import from_rows

    index = from_rows(((100 + i, text) for i, text in enumerate(TEXTS)), Analyzer())
    assert not index.dirty and len(index) == len(TEXTS)
    assert index.search("gzip", 3)[0].tolist() == [103]


def test_words_of_a_text_deleted_before_any_merge_keep_the_files_consistent() -> None:
    """A text added and deleted between two merges leaves its new words in the vocabulary; the
    next save must rebuild the matrix for them (it used to write a matrix one row per term short,
    which the index then refused to open: 'inconsistent arrays')."""
    index = LexicalIndex()
    index.add([1, 2], ["rivers and lakes", "mountain peaks"])
    index.merge()
    index.add([3], ["completely unseen vocabulary"])
    index.delete([3])
    loaded = LexicalIndex.from_files(index.to_files())
    assert loaded.iids().tolist() == [1, 2]
    assert loaded.search("river")[0].tolist() == [1]
    assert loaded.search("unseen")[0].tolist() == []


def test_a_part_saved_without_scores_builds_them_on_its_first_search() -> None:
    """A build's checkpoints save the documents' terms without the BM25 matrix (building it at every
    checkpoint made a build quadratic); loaded back, the part searches exactly like a full save."""
    index = LexicalIndex()
    index.add([1, 2, 3], ["rivers and lakes", "mountain peaks", "a river delta"])
    light = LexicalIndex.from_files(index.to_files(scores=False))
    assert json.loads(index.to_files(scores=False)[HEADER_FILE])["scores"] is False
    full = LexicalIndex.from_files(index.to_files())
    for query in ("river", "mountain", "lakes and peaks"):
        ids, scores = light.search(query)
        expected_ids, expected_scores = full.search(query)
        assert ids.tolist() == expected_ids.tolist()
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)
    light.add([4], ["river mouth"])  # a part loaded without scores takes changes as usual
    assert light.search("mouth")[0].tolist() == [4]
    assert sorted(light.search("river")[0].tolist()) == [1, 3, 4]


def test_score_matrix_equals_bm25s_own_build() -> None:
    """The numpy build of the matrix gives bm25s's ``build_index_from_ids`` matrix: same layout,
    same documents per term, the same scores (to float32 rounding), on a corpus with repeated
    terms, empty documents and terms no document uses."""
    import bm25s

    from m2v_search.index.bm25_matrix import score_matrix

    rng = np.random.default_rng(7)
    terms = 300
    documents = [rng.zipf(1.3, size=rng.integers(0, 40)) % (terms - 20) for _ in range(500)]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in documents])])
    tokens = np.concatenate(documents)
    reference = bm25s.BM25(k1=1.2, b=0.7, method="lucene")
    expected = reference.build_index_from_ids(unique_token_ids=list(range(terms)),
                                              corpus_token_ids=[d.tolist() for d in documents], show_progress=False)
    got = score_matrix(offsets, tokens, terms, k1=1.2, b=0.7)
    assert got["num_docs"] == expected["num_docs"] == 500
    np.testing.assert_array_equal(got["indptr"], expected["indptr"])
    np.testing.assert_array_equal(got["indices"], expected["indices"])
    np.testing.assert_allclose(got["data"], expected["data"], rtol=1e-6)
    assert got["data"].dtype == np.float32


HOSTILE_TEXTS = [
    "", "a", "The THE the", "ΣΟΦΟΣ σοφός ΟΔΟΣ", "snake_case and CamelCase_words", "x1 22 ٣٤ ½½",
    "m2vsearchtextseparator", "M2VSearchTextSeparator in capitals", "prefixm2vsearchtextseparatorsuffix",
    "café naïve e\u0301e\u0301 ﬁne", "中文 文本 日本語", "tabs\tand\nnewlines\r\nhere", "İstanbul ǅemal",
    "\ud800 lone surrogate words", "🙂 emoji 🙂🙂 text", "über Über ÜBER",
]


@pytest.mark.parametrize("start", range(0, len(HOSTILE_TEXTS), 3))
def test_batch_analysis_equals_one_text_at_a_time(start: int) -> None:
    """The whole-batch path (texts joined around a separator word) indexes each text exactly as
    the analyzer reads it alone, whatever the text holds (the separator word itself included)."""
    texts = HOSTILE_TEXTS[start:] + HOSTILE_TEXTS[:start]
    batch = LexicalIndex()
    batch.add(np.arange(len(texts)), texts)
    one_by_one = LexicalIndex()
    for iid, text in enumerate(texts):
        one_by_one.add([iid], [text])
    batch.merge(), one_by_one.merge()
    analyzer = Analyzer()
    for index in (batch, one_by_one):
        terms = list(index._vocab)
        for row, iid in enumerate(index._doc_iids.tolist()):
            stored = index._merged.tokens[index._merged.offsets[row]:index._merged.offsets[row + 1]]
            assert [terms[t] for t in stored] == analyzer.analyze(texts[iid]), texts[iid]
    assert batch.search("m2vsearchtextseparator")[0].tolist() == one_by_one.search("m2vsearchtextseparator")[0].tolist()
    assert len(batch.search("m2vsearchtextseparator")[0]) == 2


def test_word_patterns_are_the_anchored_patterns() -> None:
    """``\\w+`` and ``\\w\\w+`` (the analyzer's patterns) find the same words as their ``\\b``-anchored
    forms on any text."""
    import re

    from m2v_search.index.analyzer import _WORD, _WORD_OF_TWO

    rng = np.random.default_rng(3)
    alphabet = list("ab_1 -.'\u0301\u00e9\u03c3\u4e2d\t\n") + ["\u0663", "\u00bd", "\U0001f642"]
    for pattern, anchored in ((_WORD, re.compile(r"(?u)\b\w+\b")), (_WORD_OF_TWO, re.compile(r"(?u)\b\w\w+\b"))):
        for _ in range(2000):
            text = "".join(rng.choice(alphabet, size=rng.integers(0, 30)))
            assert pattern.findall(text) == anchored.findall(text), repr(text)
        for text in HOSTILE_TEXTS:
            assert pattern.findall(text.lower()) == anchored.findall(text.lower())


def test_one_character_words_are_terms_except_in_indexes_made_before() -> None:
    """Before: "python 3" and "part B" lost their most selective word (runs of 2+ characters only)."""
    from m2v_search.index.lexical import Analyzer, LexicalIndex

    analyzer = Analyzer()
    assert analyzer.analyze("Python 3, part B: it's done, don't") == ["python", "3", "part", "b", "done", "don"]
    old = Analyzer.from_config({"language": "english", "stem": True, "stopwords": True})
    assert old.analyze("Python 3, part B") == ["python", "part"]
    assert Analyzer.from_config(analyzer.config()).analyze("part B") == ["part", "b"]
    index = LexicalIndex(analyzer)
    index.add([1, 2, 3], ["python 2 release notes", "python 3 release notes", "python 3 and 2"])
    iids, _ = index.search("python 3", 3)
    assert set(iids[:2].tolist()) == {2, 3} and iids.tolist()[-1] == 1


def test_an_id_given_twice_in_one_add_keeps_its_last_text() -> None:
    index = LexicalIndex()
    index.add([5, 6, 5], ["first river", "a mountain", "second lake"])
    assert len(index) == 2 and index.iids().tolist() == [5, 6]
    assert index.search("river")[0].tolist() == []
    assert index.search("lake")[0].tolist() == [5]


def test_many_small_adds_and_deletes_equal_one_batch() -> None:
    """Single-document adds (a server's), replacements and deletes across many pending segments
    and merges give the index one batch of the final texts gives."""
    rng = np.random.default_rng(11)
    words = ["river", "lake", "mountain", "storm", "bread", "yeast", "park", "running", "ocean", "files"]
    final: dict[int, str] = {}
    changed = LexicalIndex()
    for step in range(300):
        iid = int(rng.integers(0, 80))
        if rng.random() < 0.25:
            assert changed.delete([iid]) == (1 if iid in final else 0)
            final.pop(iid, None)
        else:
            final[iid] = " ".join(rng.choice(words, size=rng.integers(1, 6)))
            changed.add([iid], [final[iid]])
        if step % 97 == 96:
            changed.merge()
        assert len(changed) == len(final)
    fresh = LexicalIndex()
    fresh.add(list(final), list(final.values()))
    assert changed.iids().tolist() == sorted(final)
    for query in ("river lake", "storm", "bread yeast park", "files running ocean"):
        got, want = changed.search(query, k=100), fresh.search(query, k=100)
        assert sorted(got[0].tolist()) == sorted(want[0].tolist())
        np.testing.assert_allclose(np.sort(got[1]), np.sort(want[1]), rtol=1e-6)


def test_add_keeps_its_own_copy_of_the_ids() -> None:
    """A caller may reuse its id array once add returns (pending documents used to keep a view of
    it, so rewriting the buffer renamed the documents)."""
    ids = np.array([1, 2], dtype=np.int64)
    index = LexicalIndex()
    index.add(ids, ["river", "lake"])
    ids[:] = [7, 8]
    assert index.iids().tolist() == [1, 2]
    assert index.search("river")[0].tolist() == [1]


def test_an_add_that_fails_changes_nothing() -> None:
    """An add refused for a text that is not a str leaves the documents it would have replaced."""
    index = build()
    index.merge()
    with pytest.raises(TypeError):
        index.add([101, 999], ["replacement text", None])  # type: ignore[list-item]
    assert len(index) == len(TEXTS) and not index.dirty
    assert index.search("bread")[0].tolist() == [101, 105]


FUZZ_WORDS = ["river", "rivers", "lake", "storm", "the", "and", "of", "bread", "park", "running", "runner",
              "ΟΔΟΣ", "σοφός", "İstanbul", "STRAẞE", "straße", "e\u0301te", "中文", "a", "ﬁne", "\ud800",
              SEPARATOR_WORD, SEPARATOR_WORD.upper(), "x" + SEPARATOR_WORD]
FUZZ_QUERIES = ["river lake", "storm running park", SEPARATOR_WORD, "οδος σοφος", "istanbul strasse straße",
                "ete 中文 fine"]


def bm25s_reference(final: dict[int, str], query: str) -> dict[int, float]:
    """``{iid: score}`` of the documents scoring > 0 in bm25s itself, indexed from scratch with
    the analyzer's terms of the texts ``final`` (``{iid: text}``)."""
    import bm25s

    analyzer = Analyzer()
    iids = sorted(final)
    corpus = [analyzer.analyze(final[iid]) for iid in iids]
    vocabulary = {term for document in corpus for term in document}
    terms = sorted({term for term in analyzer.analyze(query) if term in vocabulary})
    if not terms:
        return {}
    reference = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    reference.index(corpus, show_progress=False)
    scores = reference.get_scores(terms)
    return {iids[row]: float(scores[row]) for row in np.flatnonzero(scores > 0)}


def check_against_bm25s(index: LexicalIndex, final: dict[int, str], rng: np.random.Generator,
                        merged: bool) -> None:
    for query in FUZZ_QUERIES:
        expected = bm25s_reference(final, query)
        allowed = None
        if rng.random() < 0.3:
            allowed = np.unique(rng.integers(0, 35, size=int(rng.integers(0, 15))))
            expected = {iid: score for iid, score in expected.items() if iid in set(allowed.tolist())}
        iids, scores = index.search(query, k=100, allowed=allowed)
        assert sorted(iids.tolist()) == sorted(expected), query  # tombstones only change the scores
        if merged:
            wanted = [expected[iid] for iid in iids.tolist()]
            np.testing.assert_allclose(scores, wanted, rtol=1e-6, err_msg=query)


@pytest.mark.parametrize("seed", range(4))
def test_random_changes_equal_bm25s_over_the_final_texts(seed: int) -> None:
    """Random sequences of adds (ids repeated within one, empty texts, hostile words, the separator
    word; bursts of single adds), deletes (pending, merged, unknown ids), merges with and without
    the matrix, round trips through the files (with and without it) and clears: the index holds the final
    texts, finds what bm25s over them finds, and once merged scores what it scores."""
    rng = np.random.default_rng(seed)
    index, final = LexicalIndex(), {}
    for _ in range(100):
        action = rng.random()
        if action < 0.5:
            iids = rng.integers(0, 30, size=int(rng.integers(0, 6))).tolist()
            texts = [" ".join(rng.choice(FUZZ_WORDS, size=int(rng.integers(0, 6)))) for _ in iids]
            index.add(iids, texts)
            final.update(zip(iids, texts))
        elif action < 0.72:
            iids = rng.integers(0, 35, size=int(rng.integers(0, 4))).tolist()
            assert index.delete(iids) == len(set(iids) & set(final))
            for iid in iids:
                final.pop(iid, None)
        elif action < 0.8:
            index.merge(build_scores=bool(rng.random() < 0.5))
        elif action < 0.9:
            index = LexicalIndex.from_files(index.to_files(scores=bool(rng.random() < 0.5)))
            assert not index.dirty
        elif action < 0.92:
            index.clear()
            final.clear()
        elif action < 0.96:  # a burst of single adds: more pending segments than are kept apart
            for iid in rng.integers(0, 30, size=40).tolist():
                final[iid] = " ".join(rng.choice(FUZZ_WORDS, size=int(rng.integers(0, 4))))
                index.add([iid], [final[iid]])
        assert len(index) == len(final) and index.iids().tolist() == sorted(final)
        if rng.random() < 0.15:
            merged = rng.random() < 0.5
            if merged:
                index.merge()
                assert not index.dirty
            check_against_bm25s(index, final, rng, merged)
    index.merge()
    check_against_bm25s(index, final, rng, merged=True)
    fresh = LexicalIndex()
    fresh.add(list(final), list(final.values()))
    fresh.merge()
    for part in (index, fresh):  # the same terms per document, whatever the history
        terms = list(part._vocab)
        stored = [[terms[t] for t in part._merged.tokens[start:end]]
                  for start, end in zip(part._merged.offsets[:-1], part._merged.offsets[1:])]
        assert part._merged.iids.tolist() == sorted(final)
        assert stored == [Analyzer().analyze(final[iid]) for iid in sorted(final)]
    assert set(index._vocab) == set(fresh._vocab)


def test_batch_analysis_equals_one_text_at_a_time_on_random_strings() -> None:
    """Random strings over characters whose lowercase depends on context (final sigma, with
    case-ignorable marks around it) or changes length (İ, ẞ, ligatures), separators of every kind
    and the separator word in any case: a batch indexes each text as the analyzer reads it alone."""
    alphabet = (list("ab ΣσςΑΟ'’\u00ad\u0301\u0345\n\r\t.İIiẞßK\u212a_1٣")
                + list("\ud800\U0001d400\u200d\u2028\u0085\x1c\x0b")
                + ["ᾼ", "ﬃ", "ŉ", "the ", SEPARATOR_WORD, SEPARATOR_WORD.upper(), SEPARATOR_WORD[:5]])
    rng = np.random.default_rng(5)
    analyzer = Analyzer()
    for _ in range(300):
        sizes = rng.integers(0, 12, size=int(rng.integers(1, 6)))
        texts = ["".join(rng.choice(alphabet, size=int(size))) for size in sizes]
        index = LexicalIndex()
        index.add(np.arange(len(texts)), texts)
        segment, terms = index._pending[0], list(index._vocab)
        for row, text in enumerate(texts):
            stored = segment.tokens[segment.offsets[row]:segment.offsets[row + 1]]
            assert [terms[t] for t in stored] == analyzer.analyze(text), repr(text)
