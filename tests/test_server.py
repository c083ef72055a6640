"""The HTTP server, run for real (uvicorn on a free loopback port) and called with the real
``openai`` client and httpx."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote
from typing import Any

import numpy as np
import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("faiss")

from m2v_search.index import VectorIndex  # noqa: E402
from m2v_search.server import ServerLimits, create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOCS = {
    "cat": ("the cat sat on the mat", {"kind": "animal", "year": 2020}),
    "dog": ("dogs bark loudly at night", {"kind": "animal", "year": 2021}),
    "pie": ("a recipe for apple pie with cinnamon", {"kind": "food", "year": 2022}),
    "stock": ("stock markets fell sharply today", {"kind": "money", "year": 2023}),
    "bread": ("how to bake sourdough bread at home", {"kind": "food", "year": 2024}),
}


def build_index(path: Path) -> Path:
    index = VectorIndex.create(path)
    index.add_texts([text for text, _ in DOCS.values()], ids=list(DOCS), metadatas=[m for _, m in DOCS.values()])
    index.save()
    index.close()
    return path


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.fixture()
def index_dir(tmp_path: Path) -> Path:
    return build_index(tmp_path / "index")


@pytest.fixture()
def served(index_dir: Path) -> Iterator[str]:
    with running(create_app(index_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the tests that write nothing."""
    with running(create_app(build_index(tmp_path_factory.mktemp("shared") / "index"))) as url:
        yield url


@pytest.fixture(scope="module")
def model() -> Any:
    from m2v_search import StaticModel

    return StaticModel.from_pretrained()


def assert_error(response: Any, status: int, *words: str) -> dict[str, Any]:
    """A JSON error body with ``status`` whose message names each of ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and "Traceback" not in error["message"]
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error


# ---------------------------------------------------------------------- OpenAI compatibility
def test_openai_client_embeddings_match_the_model(shared_server: str, model: Any) -> None:
    client = openai.OpenAI(base_url=f"{shared_server}/v1", api_key="not-needed", max_retries=0)
    texts = ["the cat sat on the mat", "Ünïcödé and emoji 🙂", "x"]  # "" is refused, as OpenAI does
    expected = model.encode(texts)

    as_floats = client.embeddings.create(input=texts, model="m2v-base", encoding_format="float")
    np.testing.assert_allclose(np.array([d.embedding for d in as_floats.data]), expected, atol=1e-6)
    assert [d.index for d in as_floats.data] == [0, 1, 2]
    raw_json = httpx.post(f"{shared_server}/v1/embeddings", json={"input": texts[0], "model": "m2v-base"}).text
    entries = raw_json.split('"embedding":[')[1].split("]")[0].split(",")
    assert len(entries) == 256 and max(len(e.lstrip("-")) for e in entries) <= 11  # 0. and 9 decimals at most
    assert as_floats.model == "m2v-base"
    tokens = sum(len(ids) for ids in model.tokenize(texts))
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens == tokens > 0

    # The client asks for base64 by default and decodes it as float32 itself.
    by_default = client.embeddings.create(input=texts, model="m2v-base")
    np.testing.assert_array_equal(np.array([d.embedding for d in by_default.data], dtype=np.float32), expected)

    raw = client.embeddings.create(input="the cat sat on the mat", model="m2v-base", encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(raw.data[0].embedding), dtype="<f4")
    np.testing.assert_array_equal(decoded, expected[0])

    short = client.embeddings.create(input=texts[:1], model="m2v-base", dimensions=64, encoding_format="float")
    cut = expected[0, :64] / np.linalg.norm(expected[0, :64])
    np.testing.assert_allclose(short.data[0].embedding, cut, atol=1e-6)

    assert [m.id for m in client.models.list().data] == ["m2v-base"]
    assert client.models.retrieve("m2v-base").id == "m2v-base"


def test_openai_client_sees_clear_errors(shared_server: str) -> None:
    client = openai.OpenAI(base_url=f"{shared_server}/v1", api_key="not-needed", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(input=[[101, 2023]], model="m2v-base")
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(input=[101, 2023], model="m2v-base")
    with pytest.raises(openai.NotFoundError, match="text-embedding-3-small"):
        client.embeddings.create(input="x", model="text-embedding-3-small")
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(input="x", model="m2v-base", dimensions=100_000)
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.embeddings.create(input=[], model="m2v-base")
    with pytest.raises(openai.UnprocessableEntityError, match="encoding_format"):
        client.embeddings.create(input="x", model="m2v-base", encoding_format="int8")  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


@pytest.mark.parametrize("text", ["\u200b", "\ufeff\x00", "\U000e0041", "\U0001f389\U0001f389"])
def test_texts_without_a_known_token_are_refused_for_embeddings_and_find_nothing(shared_server: str,
                                                                                 text: str) -> None:
    # Before: 200 with an all-zero vector (every client cosine NaN) and, on /search, k arbitrary hits
    # scored 0.0; only "" and white space were refused.
    client = openai.OpenAI(base_url=f"{shared_server}/v1", api_key="not-needed", max_retries=0)
    with pytest.raises(openai.BadRequestError, match=r"input\[1\] has no token the model knows"):
        client.embeddings.create(input=["hello", text], model="m2v-base")
    for mode in ("dense", "hybrid"):
        found = httpx.post(f"{shared_server}/search", json={"query": text, "k": 3, "mode": mode})
        assert found.status_code == 200 and found.json()["results"] == [[]], found.text


# ---------------------------------------------------------------------- search and documents
def test_search_by_text_vector_and_filter(shared_server: str, model: Any) -> None:
    with httpx.Client(base_url=shared_server) as http:
        one = http.post("/search", json={"query": "a kitten on a rug", "k": 2, "mode": "dense"})
        assert one.status_code == 200
        hits = one.json()["results"][0]
        assert [hit["id"] for hit in hits][0] == "cat" and len(hits) == 2
        assert hits[0]["text"] == DOCS["cat"][0] and hits[0]["metadata"] == DOCS["cat"][1]
        assert hits[0]["score"] >= hits[1]["score"]

        many = http.post("/search", json={"queries": ["baking bread", "finance news"], "k": 1}).json()["results"]
        assert [hits[0]["id"] for hits in many] == ["bread", "stock"]

        vector = model.encode("a kitten on a rug").tolist()
        by_vector = http.post("/search", json={"vector": vector, "k": 2}).json()["results"][0]
        assert [h["id"] for h in by_vector] == [h["id"] for h in hits]
        np.testing.assert_allclose([h["score"] for h in by_vector], [h["score"] for h in hits], atol=1e-5)
        two = http.post("/search", json={"vectors": [vector, vector], "k": 1}).json()["results"]
        assert len(two) == 2

        food = http.post("/search", json={"query": "cat", "k": 10, "filter": {"kind": "food"}}).json()["results"][0]
        assert {h["id"] for h in food} == {"pie", "bread"}
        recent = http.post("/search", json={"query": "cat", "k": 10,
                                            "filter": {"year": {"$gte": 2023}}}).json()["results"][0]
        assert {h["id"] for h in recent} == {"stock", "bread"}
        tuned = http.post("/search", json={"query": "cat", "k": 3, "nprobe": 4, "ef_search": 32})
        assert tuned.status_code == 200 and len(tuned.json()["results"][0]) == 3


def test_upsert_is_committed_then_found_and_delete_removes_it(served: str, index_dir: Path) -> None:
    with httpx.Client(base_url=served) as http:
        added = http.post("/documents", json={"ids": ["kitten", "cat"], "texts": ["a small kitten purrs",
                                                                                  "the cat sat on the mat"],
                                              "metadata": [{"kind": "animal", "new": True}, DOCS["cat"][1]]})
        assert added.status_code == 200, added.text
        assert added.json() == {"ids": ["kitten", "cat"], "added": 1, "replaced": 0, "skipped": 1, "documents": 6}
        hits = http.post("/search", json={"query": "kitten purring", "k": 1}).json()["results"][0]
        assert hits[0]["id"] == "kitten" and hits[0]["metadata"] == {"kind": "animal", "new": True}
        assert http.get("/documents/kitten").json() == {"id": "kitten", "text": "a small kitten purrs",
                                                         "metadata": {"kind": "animal", "new": True}}
        on_disk = VectorIndex.open(index_dir)  # answered only once it is on disk
        assert len(on_disk) == 6 and on_disk.get(["kitten"])[0].text == "a small kitten purrs"
        on_disk.close()

        generated = http.post("/documents", json={"texts": ["an id is made up for me"]}).json()
        assert len(generated["ids"]) == 1 and generated["added"] == 1

        deleted = http.delete("/documents/kitten")
        assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
        assert_error(http.delete("/documents/kitten"), 404, "kitten")
        assert_error(http.get("/documents/kitten"), 404, "kitten")
        assert "kitten" not in [h["id"] for h in http.post("/search", json={"query": "kitten", "k": 10})
                                .json()["results"][0]]
        info = http.get("/info").json()
        assert info["documents"] == 6 and info["dim"] == 256 and info["model"] == "m2v-base"
        assert info["writable"] is True and info["commits"] == 3
        assert http.get("/health").json() == {"status": "ok"}
        assert http.head("/health").status_code == 200  # probes that send HEAD
        assert http.get("/docs").status_code == 200
        assert "/v1/embeddings" in http.get("/openapi.json").json()["paths"]


def test_ids_with_line_breaks_are_addressed_exactly(served: str) -> None:
    # Before: Starlette's path pattern dropped a final newline, so DELETE /documents/r1%0A deleted "r1",
    # and an id with a newline inside matched no route (404 "Not Found").
    with httpx.Client(base_url=served) as http:
        ids = ["r1", "r1\n", "r1\nx", "line\r\n"]
        assert http.post("/documents", json={"ids": ids, "texts": ["plain", "trailing", "inner", "crlf"]}
                         ).status_code == 200
        for doc_id, text in zip(ids, ["plain", "trailing", "inner", "crlf"]):
            assert http.get(f"/documents/{quote(doc_id, safe='')}").json()["text"] == text
        assert http.delete(f"/documents/{quote('r1' + chr(10), safe='')}").json()["id"] == "r1\n"
        assert http.get("/documents/r1").json()["text"] == "plain"  # the other id is untouched
        assert_error(http.get(f"/documents/{quote('r1' + chr(10), safe='')}"), 404, "r1")
        assert http.delete(f"/documents/{quote('r1' + chr(10) + 'x', safe='')}").json()["deleted"] == 1


def test_a_write_from_another_process_is_kept(served: str, index_dir: Path) -> None:
    """The server's writer starts from the committed index, so another writer's work survives."""
    other = VectorIndex.open(index_dir)
    other.add_texts(["written by someone else"], ids=["other"])
    other.save()
    other.close()
    with httpx.Client(base_url=served) as http:
        assert http.post("/documents", json={"ids": ["mine"], "texts": ["written by the server"]}).status_code == 200
        assert http.get("/documents/other").status_code == 200
        assert http.get("/info").json()["documents"] == 7


def test_a_removed_index_directory_is_reported_not_crashed_on(served: str, index_dir: Path) -> None:
    """Deleting the served directory: reads keep the open snapshot, writes and /health say what is gone (503)."""
    import shutil

    shutil.rmtree(index_dir)
    with httpx.Client(base_url=served) as http:
        assert http.post("/search", json={"query": "cat", "k": 1}).json()["results"][0][0]["id"] == "cat"
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "index_missing"
        assert str(index_dir) in health.json()["message"]
        error = assert_error(http.post("/documents", json={"texts": ["lost"]}), 503, str(index_dir), "does not exist")
        assert error["code"] == "index_unusable" and error["type"] == "server_error"


def test_external_vectors_index(tmp_path: Path) -> None:
    index = VectorIndex.create(tmp_path / "vectors", dim=4)
    index.upsert([{"id": "x", "text": "x axis"}, {"id": "y", "text": "y axis"}],
                 vectors=np.eye(4, dtype=np.float32)[:2])
    index.save()
    index.close()
    with running(create_app(tmp_path / "vectors")) as url, httpx.Client(base_url=url) as http:
        assert http.post("/search", json={"vector": [0, 1, 0, 0], "k": 1}).json()["results"][0][0]["id"] == "y"
        assert_error(http.post("/search", json={"query": "y", "k": 1}), 400, "vectors")
        assert_error(http.post("/search", json={"vector": [0, 1, 0], "k": 1}), 400, "4-dim")
        assert_error(http.post("/v1/embeddings", json={"input": "x", "model": "any"}), 400, "no model")
        assert http.get("/v1/models").json()["data"] == []
        added = http.post("/documents", json={"ids": ["z"], "texts": ["z axis"], "vectors": [[0, 0, 1, 0]]})
        assert added.status_code == 200, added.text
        assert http.post("/search", json={"vector": [0, 0, 1, 0], "k": 1}).json()["results"][0][0]["id"] == "z"
        assert_error(http.post("/documents", json={"ids": ["w"], "texts": ["w"]}), 400, "vectors")
        # hybrid over your own vectors: the text and its vector together (before: impossible over HTTP,
        # and the error advised the Python argument query_vectors=)
        error = assert_error(http.post("/search", json={"query": "z", "k": 1}), 400, "send vector")
        assert "query_vectors" not in error["message"]
        for fields in ({"mode": "hybrid"}, {"alpha": 0.5}):  # a vector alone cannot weigh words
            error = assert_error(http.post("/search", json={"vector": [1, 0, 0, 0], **fields}), 400, "send query")
            assert "query_vectors" not in error["message"]
        hybrid = http.post("/search", json={"query": "y axis", "vector": [0, 1, 0, 0], "k": 2, "mode": "hybrid"})
        assert hybrid.status_code == 200, hybrid.text
        assert hybrid.json()["results"][0][0]["id"] == "y"
        both = http.post("/search", json={"queries": ["x axis", "z axis"], "vectors": [[1, 0, 0, 0], [0, 0, 1, 0]],
                                          "k": 1, "mode": "hybrid"}).json()["results"]
        assert [hits[0]["id"] for hits in both] == ["x", "z"]
        assert_error(http.post("/search", json={"queries": ["x"], "vectors": [[1, 0, 0, 0], [0, 1, 0, 0]]}), 422,
                     "1 queries but 2 vectors")
        assert_error(http.post("/search", json={"query": "x", "vectors": [[1, 0, 0, 0]]}), 422, "query with vector")


# ---------------------------------------------------------------------- auth and limits
def test_bearer_auth(index_dir: Path) -> None:
    with running(create_app(index_dir, api_key="s3cret-key")) as url, httpx.Client(base_url=url) as http:
        error = assert_error(http.post("/search", json={"query": "cat"}), 401, "Authorization")
        assert error["code"] == "invalid_api_key"
        assert_error(http.get("/info", headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(http.get("/info", headers={"Authorization": "Basic s3cret-key"}), 401)
        assert_error(http.post("/documents", json={"texts": ["x"]}), 401)
        assert http.get("/info", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert http.get("/health").status_code == 200  # liveness probes need no key
        paths = http.get("/openapi.json").json()["paths"]  # and the schema says so (it listed a key and 8 errors)
        assert "security" not in paths["/health"]["get"] and set(paths["/health"]["get"]["responses"]) == {"200", "503"}
        assert paths["/info"]["get"]["security"] == [{"HTTPBearer": []}]
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret-key", max_retries=0)
        assert len(good.embeddings.create(input="cat", model="m2v-base").data[0].embedding) == 256
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).embeddings.create(
                input="cat", model="m2v-base")


def test_limits(index_dir: Path) -> None:
    limits = ServerLimits(max_body_bytes=4096, max_batch=3, max_k=5)
    with running(create_app(index_dir, limits=limits)) as url, httpx.Client(base_url=url) as http:
        assert_error(http.post("/search", json={"query": "x" * 5000}), 413, "4096 bytes")

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"query": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        assert_error(http.post("/search", content=chunked(), headers={"content-type": "application/json"}),
                     413, "4096 bytes")
        assert_error(http.post("/search", json={"queries": ["a", "b", "c", "d"]}), 413, "limit of 3")
        assert_error(http.post("/documents", json={"texts": ["a", "b", "c", "d"]}), 413, "limit of 3")
        assert_error(http.post("/v1/embeddings", json={"input": ["a"] * 4, "model": "m2v-base"}), 413, "limit of 3")
        assert_error(http.post("/search", json={"query": "cat", "k": 6}), 422, "limit of 5")
        assert http.post("/search", json={"query": "cat", "k": 5}).status_code == 200
        assert http.get("/info").json()["limits"]["max_k"] == 5


def test_the_text_an_answer_carries_is_bounded(index_dir: Path) -> None:
    """Before: 200 queries hitting one 7 MB document built a 1.4 GB answer (4.4 GB of server memory)."""
    limits = ServerLimits(max_response_text=20_000)
    with running(create_app(index_dir, limits=limits)) as url, httpx.Client(base_url=url, timeout=60) as http:
        long_text = "lorem ipsum " * 1000
        assert http.post("/documents", json={"ids": ["huge"], "texts": [long_text],
                                             "metadatas": [{"huge": True}]}).status_code == 200
        body = {"queries": ["lorem"] * 3, "k": 1, "filter": {"huge": True}}
        error = assert_error(http.post("/search", json=body), 422, "limit of 20000 characters", "include_text=false")
        assert error["code"] == "response_too_large"
        hits = http.post("/search", json={**body, "include_text": False}).json()["results"]
        assert [[hit["id"] for hit in row] for row in hits] == [["huge"]] * 3 and hits[0][0]["text"] is None
        one = http.post("/search", json={"query": "lorem", "k": 1, "filter": {"huge": True}}).json()["results"]
        assert one[0][0]["text"] == long_text  # one copy fits


def test_read_only(index_dir: Path) -> None:
    with running(create_app(index_dir, read_only=True)) as url, httpx.Client(base_url=url) as http:
        assert_error(http.post("/documents", json={"texts": ["x"]}), 403, "read-only")
        assert_error(http.delete("/documents/cat"), 403, "read-only")
        assert http.post("/search", json={"query": "cat"}).status_code == 200
    in_memory = VectorIndex.create()  # no directory: served, but nowhere to commit writes
    in_memory.add_texts(["only in memory"], ids=["mem"])
    with running(create_app(in_memory)) as url, httpx.Client(base_url=url) as http:
        assert http.post("/search", json={"query": "memory", "k": 1}).json()["results"][0][0]["id"] == "mem"
        assert_error(http.post("/documents", json={"texts": ["x"]}), 403, "no directory")
        assert http.get("/info").json()["writable"] is False
    assert in_memory.search("memory", k=1)[0].id == "mem"  # the caller's index is left open


BAD_REQUESTS = [
    ("post", "/search", b"{not json", 422, "not valid JSON"),
    ("post", "/search", b'{"query": "x", "filter": {"a": NaN}}', 400, "filter.a"),
    ("post", "/search", b'{"query": "x", "filter": {"a": 99999999999999999999999}}', 400, "64 bits"),
    ("post", "/search", b'{"query": "x", "filter": {"a": {"$regex": "."}}}', 400, "$regex"),
    ("post", "/search", b'{"query": "x", "filter": {"a": {"$in": 3}}}', 400, "$in"),
    ("post", "/search", b'{"query": "\\ud800"}', 400, "surrogate"),
    ("post", "/search", b'{"qeury": "x"}', 422, "qeury"),
    ("post", "/search", b'{}', 422, "give one of"),
    ("post", "/search", b'{"query": "x", "queries": ["y"]}', 422, "give one of"),
    ("post", "/search", b'{"vector": [1, 2]}', 400, "256-dim"),
    ("post", "/search", b'{"vectors": [[1, 2], [1]]}', 400, "different lengths"),
    ("post", "/search", b'{"vector": [1e39]}', 400, "float32"),
    ("post", "/search", b'{"query": "x", "k": 0}', 422, "k"),
    ("post", "/search", b'{"query": "x", "k": "ten"}', 422, "k"),
    ("post", "/search", b'{"query": "x", "k": true}', 422, "k"),
    ("post", "/search", b'{"query": "x", "ef_search": 99999999999}', 422, "ef_search"),
    ("post", "/search", b'{"query": "x", "nprobe": -3}', 422, "nprobe"),
    ("post", "/search", b'{"query": "x", "mode": "no-such-mode"}', 400, "mode"),
    ("post", "/search", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("post", "/search", b'{"query": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400, ""),
    ("post", "/search", b'"just a string"', 422, ""),
    ("post", "/documents", b'{"ids": [1], "texts": ["x"]}', 422, "ids.0"),
    ("post", "/documents", b'{"ids": ["a", "b"], "texts": ["x"]}', 422, "2 items for 1 texts"),
    ("post", "/documents", b'{"ids": ["a", "a"], "texts": ["x", "y"]}', 422, "repeated"),
    ("post", "/documents", b'{"ids": [""], "texts": ["x"]}', 422, "empty"),
    ("post", "/documents", b'{"texts": []}', 422, "texts"),
    ("post", "/documents", b'{"texts": ["x"], "metadata": [{"a": Infinity}]}', 400, "metadatas[0].a"),
    ("post", "/documents", b'{"texts": ["x"], "metadata": [{"a": "\\udfff"}]}', 400, "surrogate"),
    ("post", "/documents", b'{"texts": ["x"], "metadata": [{"a": "b\\u0000c"}]}', 400, "NUL"),
    ("post", "/documents", b'{"texts": ["x"], "metadata": [{"a\\u0000": 1}]}', 400, "NUL"),
    ("post", "/documents", b'{"texts": ["x"], "metadata": [' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"]}",
     400, "nested"),
    ("post", "/documents", b'{"texts": ["x"], "metadata": ["not an object"]}', 422, "metadata"),
    ("post", "/documents", b'{"texts": ["x"], "vectors": [[1, 2]]}', 400, "shape"),
    ("post", "/v1/embeddings", b'{"input": "x"}', 422, "model"),
    ("post", "/v1/embeddings", b'{"input": ["x", 3], "model": "m2v-base"}', 422, "input"),
    ("post", "/v1/embeddings", b'{"input": "\\ud800", "model": "m2v-base"}', 400, "surrogate"),
    # empty or white-space texts: a zero vector before (NaN cosines for the client), as OpenAI refuses ""
    ("post", "/v1/embeddings", b'{"input": "   ", "model": "m2v-base"}', 400, "input is only white space"),
    ("post", "/v1/embeddings", b'{"input": ["a", ""], "model": "m2v-base"}', 400, "input[1] is empty"),
    ("post", "/search", b'{"query": ""}', 400, "query is empty"),  # before: "queries[0] is empty"
    ("post", "/search", b'{"queries": ["a", " "]}', 400, "queries[1] is only white space"),
    ("get", "/no/such/route", None, 404, "Not Found"),
    ("put", "/search", b"{}", 405, "Method Not Allowed"),
    ("delete", "/documents/never-stored", None, 404, "never-stored"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "word"), BAD_REQUESTS,
                         ids=[f"{m} {p} {status} {w or i}" for i, (m, p, _, status, w) in enumerate(BAD_REQUESTS)])
def test_bad_input_gets_a_json_error(shared_server: str, method: str, path: str, body: bytes | None, status: int,
                                     word: str) -> None:
    with httpx.Client(base_url=shared_server) as http:
        response = http.request(method, path, content=body, headers={"content-type": "application/json"})
        assert_error(response, status, word)
        assert http.get("/info").json()["documents"] == len(DOCS)  # nothing half-written


def test_hybrid_fields_are_forwarded_only_when_given(shared_server: str) -> None:
    with httpx.Client(base_url=shared_server) as http:
        assert http.post("/search", json={"query": "cat"}).status_code == 200
        info = http.get("/info").json()
        assert info["hybrid"] is True  # the index has a lexical part (the default)
        error = assert_error(http.post("/search", json={"query": "cat", "alpha": 0.5, "mode": "nonsense"}), 400)
        assert error["param"] in ("mode", "alpha", None)


# ---------------------------------------------------------------------- readers during a writer
def test_readers_never_fail_while_a_writer_commits(served: str) -> None:
    """Eight readers search in a loop while a writer upserts in a loop; every search succeeds,
    and each reader's view only grows (old or new generation, never a torn one)."""
    deadline = time.monotonic() + 20
    writes_done = threading.Event()
    problems: list[str] = []
    searches = [0] * 8

    def writer() -> None:
        with httpx.Client(base_url=served, timeout=30) as http:
            for number in range(25):
                response = http.post("/documents", json={"ids": [f"w{number}"],
                                                         "texts": [f"written document number {number}"]})
                if response.status_code != 200:
                    problems.append(f"write {number}: {response.status_code} {response.text}")
        writes_done.set()

    def reader(slot: int) -> None:
        seen = 0
        with httpx.Client(base_url=served, timeout=30) as http:
            while not writes_done.is_set() and time.monotonic() < deadline:
                response = http.post("/search", json={"query": "written document", "k": 100})
                if response.status_code != 200:
                    problems.append(f"search: {response.status_code} {response.text}")
                    return
                count = sum(hit["id"].startswith("w") for hit in response.json()["results"][0])
                if count < seen:
                    problems.append(f"reader {slot} saw {count} written documents after {seen}")
                seen = count
                searches[slot] += 1

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert not problems, problems[:5]
    assert sum(searches) >= 8 and min(searches) >= 1
    with httpx.Client(base_url=served) as http:
        final = http.get("/info").json()
    assert final["documents"] == len(DOCS) + 25 and final["commits"] >= 1


# ---------------------------------------------------------------------- command line
def server_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", **extra,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(index_dir: Path, *arguments: str, env: dict[str, str],
                 entry: tuple[str, ...] = ("m2v_search.server",)) -> tuple[subprocess.Popen[str], str]:
    """``python -m m2v_search.server`` (or another ``entry``) on a free port, once it answers /health:
    (process, base URL)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", *entry, str(index_dir), "--port", str(port),
                                "--log-level", "warning", *arguments],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.2)


def test_python_m_server_with_api_key_env(index_dir: Path) -> None:
    process, url = start_server(index_dir, "--api-key-env", "M2V_TEST_KEY", env=server_env(M2V_TEST_KEY="from-the-env"))
    try:
        assert httpx.get(f"{url}/info").status_code == 401
        assert httpx.get(f"{url}/info", headers={"Authorization": "Bearer from-the-env"}).json()["documents"] == 5
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.parametrize(("arguments", "words"), [
    (["--api-key-env", "M2V_SURELY_UNSET_VARIABLE"], "M2V_SURELY_UNSET_VARIABLE"),
    (["--max-k", "0"], "--max-k"),
    (["--request-threads", "many"], "--request-threads"),
    (["--port", "70000"], "--port"),
])
def test_python_m_server_refuses_bad_options(index_dir: Path, arguments: list[str], words: str) -> None:
    env = server_env()
    env.pop("M2V_SURELY_UNSET_VARIABLE", None)
    done = subprocess.run([sys.executable, "-m", "m2v_search.server", str(index_dir), *arguments],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_python_m_server_on_a_missing_index(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "m2v_search.server", str(tmp_path / "nothing")],
                          env=server_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "nothing" in done.stderr and "Traceback" not in done.stderr


def test_importing_the_server_package_stays_light() -> None:
    code = ("import sys, m2v_search, m2v_search.server; limits = m2v_search.server.ServerLimits(max_k=5); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'faiss', 'starlette') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], env=server_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# ---------------------------------------------------------------------- the service behind the routes
def test_a_reader_keeps_its_snapshot_through_a_commit(index_dir: Path) -> None:
    from m2v_search.server.service import IndexService, WriteResult

    service = IndexService.open(index_dir)
    try:
        with service.reading() as before:
            future = service.submit(lambda index: WriteResult(index.add_texts(["a new text"], ids=["new"]), True))
            assert future.result(timeout=30) == ["new"]
            assert len(before) == len(DOCS)  # still the generation it started with, and usable
            assert before.search("cat", k=1)[0].id == "cat"
            with service.reading() as after:
                assert len(after) == len(DOCS) + 1 and after.get(["new"])
        assert service.commits == 1
    finally:
        service.close()


def test_a_failing_write_is_dropped_and_the_others_commit(index_dir: Path) -> None:
    from m2v_search.server.service import IndexService, WriteResult

    def add(doc_id: str):
        return lambda index: WriteResult(index.add_texts([f"text of {doc_id}"], ids=[doc_id]), True)

    def add_then_fail(index: VectorIndex) -> WriteResult:
        index.add_texts(["half written"], ids=["half"])
        raise RuntimeError("this write fails after changing its copy")

    service = IndexService.open(index_dir)
    try:
        futures = [service.submit(add("one")), service.submit(add_then_fail), service.submit(add("two"))]
        assert futures[0].result(timeout=30) == ["one"] and futures[2].result(timeout=30) == ["two"]
        with pytest.raises(RuntimeError, match="fails after"):
            futures[1].result(timeout=30)
        with service.reading() as index:
            assert [r.id for r in index.get(["one", "half", "two"])] == ["one", "two"]
        reopened = VectorIndex.open(index_dir)
        assert len(reopened) == len(DOCS) + 2 and not reopened.get(["half"])
        reopened.close()
    finally:
        service.close()
    with pytest.raises(Exception, match="shutting down"):
        service.submit(add("three"))


def test_too_many_waiting_writes_get_503(index_dir: Path) -> None:
    limits = ServerLimits(max_pending_writes=1)
    with running(create_app(index_dir, limits=limits)) as url:
        def write(number: int) -> Any:
            with httpx.Client(base_url=url, timeout=60) as http:
                return http.post("/documents", json={"ids": [f"n{number}"], "texts": [f"text {number}"]})

        threads_results: list[Any] = [None] * 16
        workers = [threading.Thread(target=lambda i=i: threads_results.__setitem__(i, write(i))) for i in range(16)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        statuses = sorted(response.status_code for response in threads_results)
        assert set(statuses) <= {200, 503} and 200 in statuses, statuses
        for response in threads_results:
            if response.status_code == 503:
                assert_error(response, 503, "waiting")
                assert response.headers["retry-after"] == "1"
        with httpx.Client(base_url=url) as http:
            assert http.get("/info").json()["documents"] == len(DOCS) + statuses.count(200)


# ---------------------------------------------------------------------- hostile use
def test_a_port_in_use_is_one_line_and_exit_2_before_the_index_opens(tmp_path: Path) -> None:
    # Before: uvicorn logged the error and called sys.exit(3), which m2v-index reads as "bad input".
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in ([sys.executable, "-m", "m2v_search.server"],
                        [sys.executable, "-m", "m2v_search.cli", "index", "serve"]):
            # the index does not exist: the address is checked first, so that is the error seen
            done = subprocess.run([*command, str(tmp_path / "not-opened"), "--port", str(port)],
                                  env=server_env(), capture_output=True, text=True, timeout=60)
            assert done.returncode == 2, done.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "m2v_search.server", str(tmp_path), "--host", "no-such-host.invalid"],
                          env=server_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cannot listen on no-such-host.invalid" in done.stderr, done.stderr


def test_filter_errors_name_the_filter_param(shared_server: str) -> None:
    deep: dict[str, Any] = {"kind": "food"}
    for _ in range(24):  # 24 nested $not: SQLite's parser overflowed before ("parser stack overflow")
        deep = {"$not": deep}
    with httpx.Client(base_url=shared_server) as http:
        assert sorted(h["id"] for h in http.post("/search", json={"query": "x", "filter": deep}).json()["results"][0]) \
            == ["bread", "pie"]  # the two foods, in the model's order
        many = {"year": {"$in": list(range(3000, 203_000)) + [2020]}}  # one SQL parameter per value before
        assert [h["id"] for h in http.post("/search", json={"query": "x", "filter": many}).json()["results"][0]] \
            == ["cat"]
        for bad, words in [({"kind": {"$regex": "."}}, "$regex"), ({"kind": "a\u0000b"}, "NUL"),
                           ({"$or": [{"year": n} for n in range(1001)]}, "1000 conditions")]:
            error = assert_error(http.post("/search", json={"query": "x", "filter": bad}), 400, words)
            assert error["param"] == "filter" and error["code"] == "invalid_filter"


def test_every_acknowledged_write_survives_a_shutdown_during_writes(index_dir: Path) -> None:
    process, url = start_server(index_dir, env=server_env())
    acknowledged: list[str] = []
    refused: list[Any] = []

    def write(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for number in range(40):
                doc_id = f"w{worker}-{number}"
                try:
                    response = http.post("/documents", json={"ids": [doc_id], "texts": [f"text {doc_id}"]})
                except httpx.TransportError:
                    return  # the server has gone: nothing was promised
                if response.status_code == 200:
                    acknowledged.append(doc_id)
                else:
                    refused.append(response)

    writers = [threading.Thread(target=write, args=(worker,)) for worker in range(6)]
    for writer in writers:
        writer.start()
    while len(acknowledged) < 6 and any(writer.is_alive() for writer in writers):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    for writer in writers:
        writer.join(60)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr
    for response in refused:
        assert_error(response, 503, "shutting down")
    reopened = VectorIndex.open(index_dir)  # checksums verified
    try:
        assert [record.id for record in reopened.get(acknowledged)] == acknowledged
        assert len(reopened) >= len(DOCS) + len(acknowledged)
    finally:
        reopened.close()


@pytest.mark.parametrize("entry", [("m2v_search.server",), ("m2v_search.index", "serve")])
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_server_cleanly_from_either_entry_point(index_dir: Path, entry: tuple[str, ...],
                                                                   stop: signal.Signals) -> None:
    # Before: `m2v-index serve` answered SIGTERM with exit 143 and "the index on disk is unchanged" (its
    # committed writes were there), and `python -m m2v_search.server` died by the signal (-15).
    process, url = start_server(index_dir, env=server_env(), entry=entry)
    assert httpx.post(f"{url}/documents", json={"ids": ["late"], "texts": ["written before the stop"]}
                      ).status_code == 200
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and "unchanged" not in stderr and "Traceback" not in stderr, stderr
    with VectorIndex.open(index_dir) as reopened:
        assert reopened.get(["late"])[0].text == "written before the stop"


@pytest.mark.parametrize("key", ["sëcret", " padded", "with space", "tab\there", "", "nul\x00"])
def test_an_api_key_no_http_client_can_send_is_refused_at_start(index_dir: Path, key: str) -> None:
    # Before: the server started, and httpx (so the openai client) could not even send a non-ASCII
    # key, while a key with an outer space could never match the header's token.
    with pytest.raises(ValueError, match="API key"):
        create_app(index_dir, api_key=key)


def test_an_api_key_env_no_http_client_can_send_is_exit_2(index_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "m2v_search.server", str(index_dir), "--api-key-env", "M2V_TEST_KEY"],
                          env=server_env(M2V_TEST_KEY="clé"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "M2V_TEST_KEY" in done.stderr and "'é'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_queries_times_k_is_bounded(index_dir: Path) -> None:
    # Before: max_batch queries x max_k hits (2048 x 1000) were accepted in one request, an answer
    # of gigabytes on a large index.
    with running(create_app(index_dir, limits=ServerLimits(max_hits=10, max_k=8))) as url, \
            httpx.Client(base_url=url) as http:
        assert len(http.post("/search", json={"queries": ["a", "b"], "k": 5}).json()["results"]) == 2
        error = assert_error(http.post("/search", json={"queries": ["a", "b", "c"], "k": 4}), 422, "12 hits", "10")
        assert error["param"] == "k" and error["code"] == "too_many_hits"
        assert_error(http.post("/search", json={"vectors": [[0.0] * 256] * 11, "k": 1}), 422, "11 hits")
        assert http.post("/search", json={"query": "a", "k": 8}).status_code == 200
        assert http.get("/info").json()["limits"]["max_hits"] == 10
    with pytest.raises(ValueError, match="max_hits"):
        ServerLimits(max_hits=0)


def test_concurrent_upserts_and_deletes_of_one_id_leave_a_consistent_index(served: str, index_dir: Path) -> None:
    def hammer(worker: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=served, timeout=60) as http:
            for round_ in range(6):
                if (worker + round_) % 2:
                    response = http.post("/documents", json={"ids": ["same"], "texts": [f"v{worker}-{round_}"]})
                else:
                    response = http.delete("/documents/same")
                statuses.append(response.status_code)
        return statuses

    with ThreadPoolExecutor(8) as pool:
        statuses = [status for result in pool.map(hammer, range(8)) for status in result]
    assert set(statuses) <= {200, 404}, statuses  # 404: deleted before, never a 500
    with httpx.Client(base_url=served) as http:
        served_count = http.get("/info").json()["documents"]
        served_same = http.get("/documents/same")
    reopened = VectorIndex.open(index_dir)  # checksums verified
    try:
        on_disk = reopened.get(["same"])
        assert len(reopened) == served_count == len(DOCS) + len(on_disk)
        if on_disk:
            assert served_same.json()["text"] == on_disk[0].text and on_disk[0].text.startswith("v")
            assert [hit.id for hit in reopened.search(on_disk[0].text, k=1)] == ["same"]
        else:
            assert served_same.status_code == 404
    finally:
        reopened.close()


def test_the_listening_socket_says_tcp_so_connections_get_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on connections of a socket whose protocol is IPPROTO_TCP; a
    socket made with protocol 0 left Nagle's algorithm on, and every answer on a kept-alive
    connection waited ~40 ms for the client's delayed ACK."""
    from m2v_search.server.app import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_a_full_disk_in_sqlite_is_a_storage_error_not_a_bad_filter() -> None:
    # Before: sqlite3's "database or disk is full" during a write answered 400 "the filter could not be
    # evaluated" (param "filter"); a full disk hit while writing the FAISS file already answered 507.
    import sqlite3

    from m2v_search.server.errors import api_error_from

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # SQLITE_FULL, as sqlite3 sets it on a real error
    answer = api_error_from(full)
    assert answer.status == 507 and answer.code == "storage_error" and answer.param is None
    other = api_error_from(sqlite3.OperationalError("malformed JSON"))
    assert other.status == 400 and other.param == "filter"
