"""Hostile and careless input on the search side: ``m2v-index search`` and ``eval``, the Python
search API and the HTTP server. Every bad input gets a clear error naming it (file, line, field
or argument) and the documented exit code or HTTP status; never a traceback, never a silent
wrong answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from m2v_search.binding import IndexBinding  # noqa: E402
from m2v_search.cli import index_main as main  # noqa: E402
from m2v_search.index import VectorIndex  # noqa: E402


def run(capsys, *args: object) -> tuple[int, str, str]:
    """``m2v-index ARGS``: exit code, stdout, stderr (a usage error's SystemExit is caught)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def last_line(err: str) -> str:
    """The message line (argparse prints its usage lines before it)."""
    return [line for line in err.splitlines() if line.strip()][-1]


@pytest.fixture()
def vectors_index() -> VectorIndex:
    ids = ["1", "2", "12", "d", "o", "c"]
    index = VectorIndex.create(dim=4, index_kind="flat")
    index.add_texts([f"text {i}" for i in ids], ids=ids, vectors=np.eye(len(ids), 4, dtype=np.float32) + 0.1)
    return index


# ---------------------------------------------------------------------- ids given as one string
def test_a_single_string_of_ids_is_refused_not_split_into_characters(vectors_index: VectorIndex) -> None:
    for call in (vectors_index.delete, vectors_index.get):
        with pytest.raises(TypeError, match=r"ids must be a list of ids.*pass \['12'\]"):
            call("12")  # used to delete (or fetch) the documents "1" and "2"
    with pytest.raises(TypeError, match="ids must be a list of ids, got NoneType"):
        vectors_index.get(None)
    assert len(vectors_index) == 6 and [r.id for r in vectors_index.get(["12", 1])] == ["12", "1"]
    assert vectors_index.delete(["12"]) == 1 and len(vectors_index) == 5
    binding = IndexBinding(vectors_index)
    for call in (binding.delete, binding.get):
        with pytest.raises(TypeError, match="ids must be a list of ids"):
            call("doc")
    with pytest.raises(TypeError, match="ids must be a list of ids"):
        binding.add(["x", "y", "z"], ids="abc", vectors=np.ones((3, 4), np.float32))
    assert len(vectors_index) == 5


# ---------------------------------------------------------------------- m2v-index search: filters
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_model_folder: Path) -> Path:
    folder = tmp_path_factory.mktemp("hostile_search")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} about topic {i % 5}",
                                          "metadata": {"year": 2000 + i % 4, "n": i}}) + "\n" for i in range(40)),
                      encoding="utf-8")
    assert main(["build", str(corpus), "-o", str(folder / "idx"), "--model", str(tiny_model_folder), "--quiet"]) == 0
    return folder / "idx"


def hits(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_filter_json_is_refused_not_ignored(built: Path, capsys, value: str) -> None:
    code, out, err = run(capsys, "search", built, "-q", "topic", "--filter-json", value)
    assert code == 2 and out == "" and "--filter-json is empty" in last_line(err)  # was: an unfiltered search


def test_filter_and_filter_json_on_one_key_must_both_match(built: Path, capsys) -> None:
    both = ["--filter", "year=2001", "--filter-json", '{"year": {"$gte": 2001}, "n": {"$lt": 20}}']
    code, out, _ = run(capsys, "search", built, "-q", "topic", "-k", "40", *both)
    found = hits(out)
    assert code == 0 and found and all(h["metadata"]["year"] == 2001 and h["metadata"]["n"] < 20 for h in found)
    code, out, _ = run(capsys, "search", built, "-q", "topic", "--filter", "year=2001",
                       "--filter-json", '{"year": 2002}')
    assert code == 0 and out == ""  # was: --filter-json replaced --filter's year, finding the 2002 documents


# ---------------------------------------------------------------------- files of queries and ids
def test_a_file_of_ids_or_queries_is_split_at_newlines_only(tmp_path: Path, capsys) -> None:
    ids = ["a", "b", "a\x1cb", "c\u2028d", "c", "d", "e\x0cf"]
    index = VectorIndex.create(tmp_path / "idx", dim=4, index_kind="flat")
    index.add_texts([f"text {i}" for i in range(len(ids))], ids=ids, vectors=np.ones((len(ids), 4), np.float32))
    index.save()
    index.close()
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes("a\x1cb\r\nc\u2028d\n".encode())
    code, out, _ = run(capsys, "delete", tmp_path / "idx", "--ids-file", ids_file, "--quiet")
    assert code == 0 and json.loads(out)["deleted"] == 2  # was: 4, the ids a, b, c and d
    reopened = VectorIndex.open(tmp_path / "idx")
    assert sorted(reopened.ids()) == sorted(["a", "b", "c", "d", "e\x0cf"])
    reopened.close()
    queries = tmp_path / "queries.txt"
    queries.write_bytes("text\x0cone\n\ntext two\r\n".encode())
    code, out, _ = run(capsys, "search", tmp_path / "idx", "--queries", queries, "-k", "1", "--mode", "lexical")
    assert code == 0 and [h["query"] for h in hits(out)] == ["text\x0cone", "text two"]


# ---------------------------------------------------------------------- m2v-index eval
def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "queries", "qrels", "field"), [
    ("q.jsonl", '{"query": "ok", "relevant": ["d1"]}\n{"query": "x\\ud800", "relevant": ["d1"]}\n', None,
     "q.jsonl:2: field 'query'"),
    ("beir.jsonl", '{"_id": "q1", "text": "\\udfff topic"}\n', "q1\td1\t1\n", "beir.jsonl:1: field 'text'"),
])
def test_a_lone_surrogate_in_an_eval_query_names_file_line_and_field(built: Path, tmp_path: Path, capsys, name: str,
                                                                     queries: str, qrels: str | None,
                                                                     field: str) -> None:
    extra = ["--qrels", write(tmp_path / "qrels.tsv", qrels)] if qrels else []
    code, out, err = run(capsys, "eval", built, write(tmp_path / name, queries), *extra, "--quiet")
    assert code == 3 and out == ""
    assert field in last_line(err) and "lone surrogate" in last_line(err)  # was: 'texts[0] holds ...', no file


def test_a_first_qrels_row_with_a_bad_score_is_named_not_taken_for_a_header(built: Path, tmp_path: Path,
                                                                            capsys) -> None:
    queries = write(tmp_path / "beir.jsonl", '{"_id": "q1", "text": "topic 1"}\n{"_id": "q2", "text": "topic 2"}\n')
    qrels = write(tmp_path / "qrels.tsv", "q1\td1\tone\nq2\td2\t1\n")
    code, _, err = run(capsys, "eval", built, queries, "--qrels", qrels, "--quiet")
    assert code == 3 and "qrels.tsv:1: score 'one' is not a number" in last_line(err)  # was: skipped as a header
    write(tmp_path / "qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")  # a real header is still skipped
    code, out, _ = run(capsys, "eval", built, queries, "--qrels", qrels, "--format", "json", "--mode", "dense",
                       "--quiet")
    assert code == 0 and json.loads(out)[0]["queries"] == 1


def test_an_eval_query_holding_a_line_separator_stays_one_query(built: Path, tmp_path: Path, capsys) -> None:
    queries = write(tmp_path / "q.jsonl", '{"query": "topic\u2028one", "relevant": ["d1"]}\r\n'
                                          '{"query": "topic\u0085two", "relevant": ["d2"]}\n')
    code, out, err = run(capsys, "eval", built, queries, "--mode", "dense", "--format", "json", "--quiet")
    assert code == 0, err  # was: 'q.jsonl:1: not valid JSON', the line cut at U+2028
    assert json.loads(out)[0]["queries"] == 2


def test_eval_reads_queries_from_stdin_and_names_the_line_of_bad_utf8(built: Path, tmp_path: Path, capsys,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"query": "topic 1", "relevant": ["d1"]}\n')))
    code, out, err = run(capsys, "eval", built, "-", "--mode", "dense", "--format", "json", "--quiet")
    assert code == 0 and json.loads(out)[0]["queries"] == 1, err  # was: '-: no such file'
    code, _, err = run(capsys, "eval", built, "-", "--qrels", "-", "--quiet")
    assert code == 3 and "cannot both be read from stdin" in last_line(err)
    bad = tmp_path / "q.jsonl"
    bad.write_bytes(b'{"query": "topic 1", "relevant": ["d1"]}\n{"query": "caf\xe9", "relevant": ["d1"]}\n')
    code, _, err = run(capsys, "eval", built, bad, "--quiet")
    assert code == 3 and "q.jsonl:2: not valid UTF-8 (byte 0xe9)" in last_line(err)  # was: no line number


def test_relevant_ids_missing_from_the_index_are_refused_or_warned(built: Path, tmp_path: Path, capsys) -> None:
    none_known = write(tmp_path / "q.jsonl", '{"query": "topic 1", "relevant": ["doc-1"]}\n'
                                             '{"query": "topic 2", "relevant": ["doc-2", "doc-3"]}\n')
    code, out, err = run(capsys, "eval", built, none_known, "--quiet")
    assert code == 3 and out == ""  # was: exit 0, every score 0.0 and no word why
    assert "q.jsonl: none of its 3 relevant ids is in" in last_line(err) and "'doc-1'" in last_line(err)
    some_known = write(tmp_path / "q.jsonl", '{"query": "topic 1", "relevant": ["d1", "doc-1"]}\n')
    code, out, err = run(capsys, "eval", built, some_known, "--mode", "dense", "--format", "json", "--quiet")
    assert code == 0 and json.loads(out)[0]["queries"] == 1
    assert "1 of 2 relevant ids are not in" in last_line(err) and "'doc-1'" in last_line(err)


# ---------------------------------------------------------------------- the HTTP server
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_server import build_index, running  # the server tests' real uvicorn on a free loopback port

    from m2v_search.server import create_app

    with running(create_app(build_index(tmp_path_factory.mktemp("served") / "index"))) as url:
        yield url


def post(url: str, path: str, body: bytes, content_type: str | None = "application/json"):
    httpx = pytest.importorskip("httpx")
    headers = {"content-type": content_type} if content_type else {}
    with httpx.Client(base_url=url) as http:
        return http.post(path, content=body, headers=headers)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


@pytest.mark.parametrize(("path", "body"), [
    ("/search", b'{"query": "cat", "alpha": true}'),
    ("/v1/embeddings", b'{"input": "cat", "model": "m2v-base", "dimensions": true}'),
])
def test_a_bool_is_not_taken_for_a_number(server: str, path: str, body: bytes) -> None:
    field = "alpha" if path == "/search" else "dimensions"
    error = error_of(post(server, path, body), 422)  # was: 200, alpha 1.0 / a 1-dimension embedding
    assert error["param"] == field and field in error["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
@pytest.mark.parametrize("path", ["/search", "/documents", "/v1/embeddings"])
def test_a_body_not_sent_as_json_gets_415_naming_the_content_type(server: str, path: str,
                                                                  content_type: str | None) -> None:
    body = b'{"query": "cat"}' if path == "/search" else b'{"texts": ["x"]}' if path == "/documents" else \
        b'{"input": "cat", "model": "m2v-base"}'
    error = error_of(post(server, path, body, content_type), 415)  # was: 422 'body: Field required' or the like
    assert error["param"] == "content-type" and "Content-Type: application/json" in error["message"]
    assert (content_type or "no Content-Type") in error["message"]
    assert post(server, "/search", b'{"query": "cat"}', "application/json; charset=utf-8").status_code == 200
    assert error_of(post(server, "/search", b'{"query": 5}'), 422)["param"] == "query"  # JSON errors unchanged


# ---------------------------------------------------------------------- empty queries
@pytest.mark.parametrize("query", ["", "  \t\n"])
def test_an_empty_query_is_refused_everywhere(built: Path, server: str, capsys, query: str) -> None:
    index = VectorIndex.open(built)
    try:
        for mode in ("dense", "lexical", "hybrid"):  # was: 10 arbitrary hits of score 0.0 (dense, hybrid)
            with pytest.raises(ValueError, match=r"the query is (empty|only white space)"):
                index.search(query, mode=mode)
        with pytest.raises(ValueError, match=r"queries\[1\]"):
            index.search_batch(["topic", query])
        with pytest.raises(TypeError, match="queries must be a list of str, got int"):
            index.search_batch(5)
    finally:
        index.close()
    code, out, err = run(capsys, "search", built, "-q", "topic", "-q", query)
    assert code == 3 and out == "" and "queries[1] is" in last_line(err)
    error = error_of(post(server, "/search", json.dumps({"queries": ["cat", query]}).encode()), 400)
    assert "queries[1] is" in error["message"]


def test_complex_or_text_vectors_are_refused_naming_the_argument(built: Path) -> None:
    """float32 conversion dropped imaginary parts with only a NumPy warning, and a string given
    as query_vector failed with NumPy's own message."""
    index = VectorIndex.open(built)
    try:
        dim = index.dim
        with pytest.raises(ValueError, match="complex numbers"):
            index.search(np.ones(dim) * (1 + 2j))
        with pytest.raises(ValueError, match=r"vectors must be an \(n, \d+\) array of numbers: complex"):
            index.upsert([{"id": "c", "text": "complex"}], vectors=np.ones((1, dim), dtype=np.complex64))
        for bad in ("abc", 5, [[1.0] * dim]):
            with pytest.raises(ValueError, match="query_vector must be 1-D"):
                index.search("topic", query_vector=bad)
        with pytest.raises(ValueError, match="query_vector"):
            index.search("topic", query_vector=["x"] * dim)
    finally:
        index.close()


def test_server_400s_name_the_field_the_index_refused(server: str) -> None:
    """Errors the index raises (not the request schema) now carry the field in 'param'."""
    cases = [({"query": "cat", "alpha": 2.0}, "alpha"), ({"query": "cat", "mode": "nope"}, "mode"),
             ({"query": "  "}, "query"),
             ({"queries": ["cat", ""]}, "queries"), ({"vector": [1.0, 2.0]}, "vector"),
             ({"vectors": [[1.0, 2.0]]}, "vectors")]
    for body, param in cases:
        error = error_of(post(server, "/search", json.dumps(body).encode()), 400)
        assert error["param"] == param, (body, error)
