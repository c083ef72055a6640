"""Hub push and download for models and indexes, with the hub out of reach.

Uploads are checked at the ``huggingface_hub`` API boundary (``HfApi.create_repo`` and
``HfApi.upload_folder`` record what they are given, and any socket connection fails the
test). Downloads run the real ``huggingface_hub`` code: offline against a hub cache laid
out on disk from the recorded upload, online (in a subprocess, HF_ENDPOINT set) against a
small read-only hub server on loopback serving the recorded files. Unreachable-hub errors
run against a closed loopback port.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from m2v_search import StaticModel
from m2v_search.errors import HubUnavailableError
from m2v_search.index.errors import IndexConflictError, IndexCorruptError, IndexNotFoundError
from m2v_search.index.hub import index_from_hub, model_folder, push_index_to_hub

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    attempts: list[object] = []

    def refuse(self, address):
        attempts.append(address)
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture()
def recording_hub(monkeypatch, no_network):
    """Record create_repo / upload_folder calls and the bytes of every file uploaded."""
    import huggingface_hub

    calls: dict[str, list[dict]] = {"create_repo": [], "upload_folder": []}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"].append({"repo_id": repo_id, "token": self.token, **kwargs})
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, **kwargs):
        root = Path(folder_path)
        prefix = f"{path_in_repo.strip('/')}/" if path_in_repo else ""
        files = {prefix + p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        calls["upload_folder"].append({"repo_id": repo_id, "files": files, **kwargs})
        return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{FAKE_COMMIT}",
                                          commit_message=kwargs.get("commit_message"), commit_description="",
                                          oid=FAKE_COMMIT)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def write_files(files: dict[str, bytes], root: Path) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def lay_out_cache(cache: Path, repo_type: str, repo_id: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face hub cache holding ``files`` as the main branch of ``repo_id``."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    return write_files(files, repo / "snapshots" / FAKE_COMMIT)


class ReadOnlyHub:
    """The download side of the hub API for dataset repositories, on a free loopback port:
    repository info, file tree, and file resolution, all at one commit."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos, self.requests = repos, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.answer(self, head=False)

            def do_HEAD(self):
                hub.answer(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, request, head):
        parts = unquote(urlparse(request.path).path).strip("/").split("/")
        self.requests.append((request.command, request.path))
        api = parts[:2] == ["api", "datasets"]
        repo = "/".join(parts[2:4] if api else parts[1:3])
        files = self.repos.get(repo)
        status, body, headers = 404, b"{}", {"X-Error-Code": "RepoNotFound"}
        if files is not None and api and len(parts) > 4 and parts[4] == "tree":
            status, headers = 200, {"Content-Type": "application/json"}
            body = json.dumps([{"type": "file", "path": name, "size": len(data),
                                "oid": hashlib.sha1(data).hexdigest()} for name, data in files.items()]).encode()
        elif files is not None and api:
            status, headers = 200, {"Content-Type": "application/json"}
            body = json.dumps({"id": repo, "sha": FAKE_COMMIT, "private": False,
                               "siblings": [{"rfilename": name} for name in files]}).encode()
        elif files is not None and parts[0] == "datasets" and parts[3:4] == ["resolve"]:
            name = "/".join(parts[5:])
            status, body, headers = 404, b"", {"X-Error-Code": "EntryNotFound"}
            if name in files:
                status, body = 200, files[name]
                headers = {"X-Repo-Commit": FAKE_COMMIT, "ETag": f'"{hashlib.sha1(body).hexdigest()}"'}
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if not head:
            request.wfile.write(body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def download_online(hub: ReadOnlyHub, repo_id: str, cache: Path) -> subprocess.CompletedProcess:
    """``index_from_hub`` in a fresh interpreter whose HF_ENDPOINT is ``hub``."""
    code = ("from m2v_search.index.hub import index_from_hub\n"
            "try:\n"
            f"    print('OK', index_from_hub({repo_id!r}, cache_dir={str(cache)!r}))\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(cache.parent / "hf-home"),
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


# ---------------------------------------------------------------------- models
def test_push_model_uploads_a_loadable_folder(tiny_model, recording_hub, tmp_path):
    url = tiny_model.push_to_hub("me/tiny", True, "hf_secret")  # Model2Vec's positional order
    assert url.endswith(FAKE_COMMIT)
    assert recording_hub["create_repo"] == [{"repo_id": "me/tiny", "token": "hf_secret", "repo_type": "model",
                                             "private": True, "exist_ok": True}]
    (upload,) = recording_hub["upload_folder"]
    assert upload["repo_type"] == "model" and upload["repo_id"] == "me/tiny"
    assert {"config.json", "model.safetensors", "tokenizer.json", "modules.json", "README.md"} <= set(upload["files"])
    assert b"model_name: me/tiny" in upload["files"]["README.md"]
    loaded = StaticModel.from_pretrained(write_files(upload["files"], tmp_path / "got"))
    np.testing.assert_array_equal(loaded.encode(["a pushed model", ""]), tiny_model.encode(["a pushed model", ""]))


def test_push_model_into_subfolder(tiny_model, recording_hub):
    tiny_model.push_to_hub("me/tiny", subfolder="v2")
    files = recording_hub["upload_folder"][0]["files"]
    assert files and all(name.startswith("v2/") for name in files)


def test_push_offline_refuses_before_any_request(tiny_model, recording_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        tiny_model.push_to_hub("me/tiny")
    assert recording_hub == {"create_repo": [], "upload_folder": []}


def test_cached_hub_model_loads_offline(tiny_model, tiny_model_folder, tmp_path):
    """A hub id found in the local cache loads with HF_HUB_OFFLINE=1 (in a subprocess: the cache
    location is read when huggingface_hub is imported)."""
    files = {p.relative_to(tiny_model_folder).as_posix(): p.read_bytes()
             for p in tiny_model_folder.rglob("*") if p.is_file()}
    lay_out_cache(tmp_path / "hub", "model", "me/cached", files)
    code = ("import socket\n"
            "def refuse(*a): raise AssertionError('network')\n"
            "socket.socket.connect = refuse\n"
            "from m2v_search import StaticModel\n"
            "m = StaticModel.from_pretrained('me/cached')\n"
            "print(m.encode('hello cache').tolist())\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(eval(result.stdout), tiny_model.encode("hello cache"), atol=1e-6)


def test_local_folders_never_touch_the_network(tiny_model_folder, no_network, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = StaticModel.from_pretrained(str(tiny_model_folder), None, None, None, "float16")
    assert model.embedding_dtype == "float16" and no_network == []


# ---------------------------------------------------------------------- indexes
@pytest.fixture()
def saved_index(tiny_model_folder, tmp_path):
    from m2v_search.index import VectorIndex

    model = StaticModel.from_pretrained(tiny_model_folder)
    index = VectorIndex.create(tmp_path / "index", model, index_kind="flat", model_path=str(tiny_model_folder))
    index.upsert([{"id": f"doc-{i}", "text": f"document number {i} about topic {i % 7}", "metadata": {"n": i}}
                  for i in range(200)])
    index.save()
    index.close()
    return tmp_path / "index"


def test_push_index_payload_and_offline_download_round_trip(saved_index, recording_hub, tmp_path, monkeypatch):
    from m2v_search.index import VectorIndex

    url = push_index_to_hub(saved_index, "me/my-index", private=True, token="hf_x", include_model=True)
    assert url.endswith(FAKE_COMMIT)
    assert recording_hub["create_repo"][0]["repo_type"] == "dataset"
    (upload,) = recording_hub["upload_folder"]
    assert upload["repo_type"] == "dataset"
    files = upload["files"]
    manifest = json.loads(files["manifest.json"])
    for name in manifest["files"]:  # the uploaded bytes are the local, verified ones
        assert files[name] == (saved_index / name).read_bytes()
    assert "README.md" in files and "model/model.safetensors" in files
    assert not any(name.startswith(".") for name in files)  # no lock file, no staging leftovers
    assert not [p for p in saved_index.parent.iterdir() if p.name.startswith(".index.push-")]

    lay_out_cache(tmp_path / "hub-cache", "dataset", "me/my-index", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    directory = index_from_hub("me/my-index", cache_dir=tmp_path / "hub-cache")
    assert model_folder(directory) == directory / "model"
    original = VectorIndex.open(saved_index)
    downloaded = VectorIndex.open(directory, model=model_folder(directory))
    query = "document about topic 3"
    assert [h.id for h in downloaded.search(query, k=5)] == [h.id for h in original.search(query, k=5)]
    original.close()
    downloaded.close()


def test_online_download_from_a_loopback_hub(saved_index, recording_hub, tmp_path):
    from m2v_search.index import VectorIndex

    push_index_to_hub(saved_index, "me/my-index")
    files = dict(recording_hub["upload_folder"][0]["files"])
    files["unrelated.bin"] = b"not part of the index"
    hub = ReadOnlyHub({"me/my-index": files})
    try:
        result = download_online(hub, "me/my-index", tmp_path / "cache")
        assert result.stdout.startswith("OK "), result.stdout + result.stderr
        directory = Path(result.stdout.split(" ", 1)[1].strip())
        assert FAKE_COMMIT in directory.parts  # one pinned commit
        assert not (directory / "unrelated.bin").exists()  # only what the manifest lists
        index = VectorIndex.open(directory)  # the model: the folder the manifest records
        assert len(index.search("document about topic 3", k=3)) == 3
        index.close()

        missing = download_online(hub, "me/absent", tmp_path / "cache2")
        assert missing.stdout.startswith("IndexNotFoundError") and "me/absent" in missing.stdout, missing.stdout
        files[next(iter(json.loads(files["manifest.json"])["files"]))] += b"!"  # the hub serves a changed file
        corrupt = download_online(hub, "me/my-index", tmp_path / "cache3")
        assert corrupt.stdout.startswith("IndexCorruptError"), corrupt.stdout + corrupt.stderr
    finally:
        hub.close()


def test_download_detects_a_corrupt_file(saved_index, recording_hub, tmp_path, monkeypatch):
    push_index_to_hub(saved_index, "me/idx")
    files = dict(recording_hub["upload_folder"][0]["files"])
    victim = next(iter(json.loads(files["manifest.json"])["files"]))
    damaged = bytearray(files[victim])
    damaged[len(damaged) // 2] ^= 0xFF  # same size, different content
    files[victim] = bytes(damaged)
    lay_out_cache(tmp_path / "cache", "dataset", "me/idx", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IndexCorruptError, match=f"{victim}.*sha256.*force_download=True"):
        index_from_hub("me/idx", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name", ["*", "../secret", "index.[ab].faiss"])
def test_download_refuses_a_manifest_naming_files_by_pattern_or_path(saved_index, recording_hub, tmp_path,
                                                                     monkeypatch, name):
    push_index_to_hub(saved_index, "me/idx")
    files = dict(recording_hub["upload_folder"][0]["files"])
    manifest = json.loads(files["manifest.json"])
    manifest["files"][name] = {"bytes": 1, "sha256": "0" * 64}
    files["manifest.json"] = json.dumps(manifest).encode()
    lay_out_cache(tmp_path / "cache", "dataset", "me/idx", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IndexCorruptError, match="unsafe file"):
        index_from_hub("me/idx", cache_dir=tmp_path / "cache")


def test_offline_without_cache_is_a_clear_error(no_network, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE"):
        index_from_hub("me/absent", cache_dir=tmp_path / "empty-cache")
    assert no_network == []


def test_push_refuses_bad_or_corrupt_index_before_any_request(saved_index, recording_hub, tmp_path):
    with pytest.raises(IndexNotFoundError, match="manifest.json is missing"):
        push_index_to_hub(tmp_path, "me/idx")
    name = next(iter(json.loads((saved_index / "manifest.json").read_text())["files"]))
    with open(saved_index / name, "r+b") as handle:
        handle.seek(10)
        byte = handle.read(1)
        handle.seek(10)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(IndexCorruptError, match=name):
        push_index_to_hub(saved_index, "me/idx")
    assert recording_hub == {"create_repo": [], "upload_folder": []}


@pytest.mark.parametrize("call", [
    "from m2v_search.index.hub import index_from_hub; index_from_hub('me/idx')",
    "from m2v_search.index.hub import push_index_to_hub; push_index_to_hub(INDEX, 'me/idx')",
    "from m2v_search import StaticModel; StaticModel.from_pretrained(MODEL).push_to_hub('me/m')",
])
def test_unreachable_hub_is_a_clear_error(call, saved_index, tiny_model_folder, tmp_path):
    code = (f"INDEX, MODEL = {str(saved_index)!r}, {str(tiny_model_folder)!r}\n"
            "try:\n    " + call + "\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.startswith("HubUnavailableError"), result.stdout + result.stderr
    assert "Connect" in result.stdout and "Traceback" not in result.stdout


# ---------------------------------------------------------------------- VectorIndex.push_to_hub / from_hub
def test_index_methods_push_the_saved_directory_and_open_the_download(saved_index, recording_hub, tmp_path,
                                                                      monkeypatch):
    from m2v_search.index import VectorIndex

    with VectorIndex.open(saved_index) as index:
        url = index.push_to_hub("me/my-index", private=True, token="hf_x", include_model=True)
        expected = [h.id for h in index.search("document about topic 3", k=5)]
    assert url.endswith(FAKE_COMMIT) and recording_hub["create_repo"][0]["private"] is True
    (upload,) = recording_hub["upload_folder"]
    files = upload["files"]
    for name in json.loads(files["manifest.json"])["files"]:
        assert files[name] == (saved_index / name).read_bytes()
    assert "model/model.safetensors" in files

    lay_out_cache(tmp_path / "hub-cache", "dataset", "me/my-index", files)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with VectorIndex.from_hub("me/my-index", cache_dir=tmp_path / "hub-cache") as downloaded:
        assert downloaded.path == index_from_hub("me/my-index", cache_dir=tmp_path / "hub-cache")
        assert downloaded.model_path == str(downloaded.path / "model")  # the uploaded model, not the recorded one
        assert len(downloaded) == 200
        assert [h.id for h in downloaded.search("document about topic 3", k=5)] == expected
    with pytest.raises(HubUnavailableError, match="not in the local Hugging Face cache"):
        VectorIndex.from_hub("me/absent", cache_dir=tmp_path / "hub-cache")


def test_index_push_refuses_unsaved_or_stale_state(saved_index, tiny_model_folder, recording_hub, tmp_path):
    from m2v_search.index import VectorIndex

    fresh = VectorIndex.create(None, str(tiny_model_folder))
    with pytest.raises(ValueError, match="never saved"):
        fresh.push_to_hub("me/idx")
    fresh.close()

    index = VectorIndex.open(saved_index)
    index.upsert([{"id": "doc-1", "text": "document number 1 about topic 1", "metadata": {"n": 1}}])
    assert index.last_upsert.skipped == 1  # the same content: nothing changed, so it may be pushed
    index.push_to_hub("me/idx")
    writes = [
        lambda: index.add_texts(["a new document"], ids=["new"]),
        lambda: index.upsert([{"id": "doc-2", "text": "document number 2, changed"}]),
        lambda: index.upsert([{"id": "doc-3", "text": "document number 3 about topic 3", "metadata": {"n": -3}}]),
        lambda: index.delete(["doc-4"]),
        lambda: (index.delete(["doc-5"]), index.add_texts(["same count again"], ids=["doc-5b"])),
        index.clear,
    ]
    for write in writes:
        write()
        with pytest.raises(ValueError, match=f"changes not saved to {saved_index}"):
            index.push_to_hub("me/idx")
        index.save()
        index.push_to_hub("me/idx")
    assert len(recording_hub["upload_folder"]) == 1 + len(writes)

    other = VectorIndex.open(saved_index)  # another writer saves meanwhile
    other.add_texts(["from elsewhere"], ids=["elsewhere"])
    other.save()
    other.close()
    with pytest.raises(IndexConflictError, match="changed by another writer"):
        index.push_to_hub("me/idx")
    index.close()
    assert len(recording_hub["upload_folder"]) == 1 + len(writes)  # nothing uploaded by a refusal
