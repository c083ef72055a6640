"""The m2v-index command: build/search/add/delete/info/verify, bad input, exit codes, kill -9 and --resume."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("faiss")

from m2v_search.index import VectorIndex  # noqa: E402
from m2v_search.cli import index_main as main  # noqa: E402

EXAMPLES = Path(__file__).parents[1] / "examples" / "corpus.jsonl"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rows(prefix: str, n: int, start: int = 0) -> list[dict]:
    return [{"id": f"{prefix}-{i}", "text": f"{prefix} document number {i} about topic {i % 7}", "group": i % 3}
            for i in range(start, start + n)]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def built(tmp_path: Path, tiny_model_folder: Path, capsys) -> Path:
    directory = tmp_path / "idx"
    code, out, _ = run(capsys, "build", write_jsonl(tmp_path / "a.jsonl", rows("a", 300)), "-o", directory,
                       "--model", tiny_model_folder, "--quiet")
    assert code == 0 and json.loads(out)["documents"] == 300
    return directory


def test_build_examples_search_info_verify(tmp_path: Path, tiny_model_folder: Path, capsys) -> None:
    directory = tmp_path / "examples-index"
    code, out, err = run(capsys, "build", EXAMPLES, "-o", directory, "--model", tiny_model_folder,
                         "--metadata-fields", "module,kind")
    summary = json.loads(out)
    assert code == 0 and summary["documents"] == summary["records_read"] > 3000
    assert "texts/s" in err and "indexed" in err  # progress and logs on stderr
    first = json.loads(EXAMPLES.read_text(encoding="utf-8").splitlines()[10])
    code, out, _ = run(capsys, "search", directory, "-q", first["text"], "-k", "3")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 3 and lines[0]["id"] == first["id"] and lines[0]["rank"] == 1
    assert set(lines[0]["metadata"]) == {"module", "kind"}
    code, out, _ = run(capsys, "search", directory, "-q", "open a file", "-k", "5", "--filter", "kind=class")
    assert code == 0 and [json.loads(line)["metadata"]["kind"] for line in out.splitlines()] == ["class"] * 5
    code, out, _ = run(capsys, "search", directory, "-q", "open a file", "-k", "2", "--format", "table")
    assert code == 0 and out.startswith("query: open a file\nrank") and len(out.splitlines()) >= 4
    code, out, _ = run(capsys, "info", directory)
    assert code == 0 and str(tiny_model_folder.resolve()) in out
    assert any(line.split() in (["tokenizer_backend", "nanotoken"], ["tokenizer_backend", "hf"])
               for line in out.splitlines())
    assert "IDMap2,Flat" in out
    code, out, _ = run(capsys, "verify", directory)
    assert code == 0 and json.loads(out)["ok"] is True


def test_queries_file_add_delete(built: Path, tmp_path: Path, capsys) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("a document number 5 about topic 5\na document number 9 about topic 2\n")
    code, out, _ = run(capsys, "search", built, "--queries", queries, "-k", "1")
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(h["query_index"], h["id"]) for h in hits] == [(0, "a-5"), (1, "a-9")]
    change = write_jsonl(tmp_path / "c.jsonl", [{"id": "a-5", "text": "replaced text"}, *rows("n", 2)])
    code, out, _ = run(capsys, "add", built, change, "--quiet")
    assert code == 0 and {k: json.loads(out)[k] for k in ("added", "replaced", "documents")} == \
        {"added": 2, "replaced": 1, "documents": 302}
    ids = tmp_path / "ids.txt"
    ids.write_text("a-1\nn-0\nunknown\n")
    code, out, _ = run(capsys, "delete", built, "a-2", "--ids-file", ids, "--quiet")
    assert code == 0 and json.loads(out)["deleted"] == 3
    code, out, _ = run(capsys, "search", built, "-q", "replaced text", "-k", "1", "--filter", "group=2")
    assert code == 0 and json.loads(out)["id"] != "a-5"  # replaced without metadata: no longer in group 2
    code, out, _ = run(capsys, "search", built, "-q", "replaced text", "-k", "1")
    assert json.loads(out)["id"] == "a-5"


def test_stdin_gzip_beir_rows(tmp_path: Path, tiny_model_folder: Path, capsys, monkeypatch) -> None:
    beir = [{"_id": f"d{i}", "title": f"Title {i}", "text": f"body text {i}"} for i in range(20)]
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in beir).encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run(capsys, "build", "-", "-o", tmp_path / "beir", "--model", tiny_model_folder, "--quiet")
    assert code == 0 and json.loads(out)["documents"] == 20
    record = VectorIndex.open(tmp_path / "beir").get(["d3"])[0]
    assert record.text == "Title 3 body text 3" and record.metadata == {}


@pytest.mark.parametrize(("content", "message"), [
    (b'{"id": "1", "text": "ok"}\n{"id": "2", "text": "ok"}\n{"id": "3", "text": oops}\n',
     "bad.jsonl: line 3: invalid JSON"),
    (b'{"id": "1", "text": "ok"}\n{"id": "2", "text": "caf\xe9"}\n', "bad.jsonl: line 2: not valid UTF-8"),
    (b'{"id": "1", "text": "ok"}\n{"id": "2", "body": "no text"}\n', "bad.jsonl: line 2: missing text field 'text'"),
    (b'{"id": "1", "text": 7}\n', "bad.jsonl: line 1: field 'text' must be a string"),
    (b'["not", "an", "object"]\n', "bad.jsonl: line 1: expected a JSON object"),
    (b"", "no records"),
])
def test_bad_input_names_file_and_line(built: Path, tmp_path: Path, tiny_model_folder: Path, capsys,
                                       content: bytes, message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    code, out, err = run(capsys, "build", bad, "-o", built, "--model", tiny_model_folder, "--quiet")
    assert code == 3 and message in err and out == ""
    assert len(VectorIndex.open(built)) == 300  # the previous index is untouched


def test_skip_invalid_counts(tmp_path: Path, tiny_model_folder: Path, capsys) -> None:
    bad = tmp_path / "mixed.jsonl"
    bad.write_bytes(b'{"id": "1", "text": "ok"}\n{broken\n{"id": "2"}\n\xff\xfe\n{"id": "3", "text": "fine"}\n')
    code, out, err = run(capsys, "build", bad, "-o", tmp_path / "i", "--model", tiny_model_folder,
                         "--skip-invalid", "--quiet")
    summary = json.loads(out)
    assert code == 0 and summary["documents"] == 2 and summary["skipped_invalid"] == 3
    assert "skipped 3 invalid line(s)" in err and "mixed.jsonl: line 2" in err


def test_exit_codes(built: Path, tmp_path: Path, capsys, teacher_tokenizer) -> None:
    import numpy as np

    from m2v_search import StaticModel

    code, _, err = run(capsys, "search", tmp_path / "missing", "-q", "x")
    assert code == 2 and "does not exist" in err
    with pytest.raises(SystemExit) as usage:
        main(["search", str(built)])
    assert usage.value.code == 2
    other = tmp_path / "other-model"
    StaticModel(np.ones((teacher_tokenizer.get_vocab_size(), 32), np.float32), teacher_tokenizer,
                tokenizer_backend="hf").save_pretrained(other)
    code, _, err = run(capsys, "search", built, "-q", "x", "--model", other)
    assert code == 6 and "fingerprint" in err
    code, out, _ = run(capsys, "search", built, "-q", "x", "-k", "1", "--model", other, "--force-model")
    assert code == 0 and len(out.splitlines()) == 1
    manifest = json.loads((built / "manifest.json").read_text())
    index_file = built / manifest["index"]["file"]
    index_file.write_bytes(index_file.read_bytes()[:-10])
    code, _, err = run(capsys, "search", built, "-q", "x")
    assert code == 4 and "truncated" in err
    code, _, _ = run(capsys, "verify", built)
    assert code == 4


def test_kill_during_build_keeps_old_index_then_resume(built: Path, tmp_path: Path, tiny_model_folder: Path,
                                                       tiny_model, capsys) -> None:
    """kill -9 in the middle of a build: the old index still loads; --resume finishes the job."""
    new_rows = rows("b", 200)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "m2v_search.index", "build", "-", "-o", str(built), "--model",
               str(tiny_model_folder), "--batch-size", "20", "--checkpoint-every", "40", "--quiet"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env)
    try:
        process.stdin.write("".join(json.dumps(r) + "\n" for r in new_rows[:100]).encode())
        process.stdin.flush()  # the build now waits for more input, slow-producer style
        checkpoint = built / ".build" / "manifest.json"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            staged = json.loads(checkpoint.read_text())["counts"]["documents"] if checkpoint.exists() else 0
            if staged >= 80:
                break
            time.sleep(0.1)
        assert process.poll() is None, process.stderr.read().decode()
        # a second writer is refused while the build runs
        code, _, err = run(capsys, "add", built, write_jsonl(tmp_path / "x.jsonl", rows("x", 1)), "--quiet")
        assert code == 5 and "locked" in err
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    old = VectorIndex.open(built, model=tiny_model)
    assert len(old) == 300 and old.get(["b-0"]) == [] and old.verify() == []
    full = write_jsonl(tmp_path / "b.jsonl", new_rows)
    code, out, _ = run(capsys, "build", full, "-o", built, "--model", tiny_model_folder, "--resume", "--quiet")
    summary = json.loads(out)
    assert code == 0 and summary["resumed"] is True
    assert summary["unchanged"] == 80 and summary["added"] == 120 and summary["documents"] == 200
    rebuilt = VectorIndex.open(built, model=tiny_model)
    assert len(rebuilt) == 200 and rebuilt.get(["a-0"]) == [] and rebuilt.verify() == []
    assert rebuilt.lexical is not None and len(rebuilt.lexical) == 200  # the checkpoint carried it
    assert not (built / ".build").exists()


def test_logs_follow_the_current_stderr_and_loggers_are_restored(tmp_path: Path, tiny_model_folder: Path,
                                                                  capsys) -> None:
    import logging

    library = logging.getLogger("m2v_search")
    before = (library.handlers[:], library.propagate, library.level)
    corpus = write_jsonl(tmp_path / "a.jsonl", rows("a", 50))
    for attempt in range(2):  # the second in-process run logs to the stream pytest captures then
        code, _, err = run(capsys, "build", corpus, "-o", tmp_path / f"idx{attempt}", "--model", tiny_model_folder)
        assert code == 0 and "m2v-index: " in err
        logging.getLogger("m2v_search.index").warning("a log line from outside a command")
        assert "m2v-index: a log line" not in capsys.readouterr().err  # our handler is gone again
    assert (library.handlers[:], library.propagate, library.level) == before
