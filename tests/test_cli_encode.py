"""`m2v encode` through a real subprocess: texts in (lines, JSONL, stdin), vectors out."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from m2v_search import StaticModel


def m2v(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "m2v_search.cli", "encode", "--quiet", *args], input=stdin,
                          capture_output=True, env=env, timeout=300)


def rows(result: subprocess.CompletedProcess[bytes]) -> list[dict]:
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]


@pytest.fixture(scope="module")
def model(tiny_model_folder) -> StaticModel:
    return StaticModel.from_pretrained(tiny_model_folder)


def test_a_text_file_gives_one_vector_per_non_blank_line_keyed_by_line_number(tmp_path, model, tiny_model_folder):
    source = tmp_path / "notes.txt"
    source.write_bytes("\ufefffirst note about rivers\n\n  \nsecond note, caf\u00e9\r\n{not json} third\n".encode())
    out = rows(m2v(str(source), "--model", str(tiny_model_folder)))
    assert [row["id"] for row in out] == [1, 4, 5]  # the BOM is no part of line 1; blank lines skipped
    expected = model.encode(["first note about rivers", "second note, caf\u00e9", "{not json} third"])
    np.testing.assert_allclose(np.array([row["embedding"] for row in out]), expected, rtol=1e-6, atol=1e-7)


def test_jsonl_on_stdin_is_sniffed_and_keeps_the_ids(model, tiny_model_folder):
    records = [{"id": "doc-a", "text": "a sentence about cats"}, {"id": "doc-b", "body": "x", "text": "dogs bark"}]
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    for payload in (data, gzip.compress(data)):
        out = rows(m2v("-", "--model", str(tiny_model_folder), stdin=payload))
        assert [row["id"] for row in out] == ["doc-a", "doc-b"]
        np.testing.assert_allclose(np.array([row["embedding"] for row in out]),
                                   model.encode(["a sentence about cats", "dogs bark"]), rtol=1e-6, atol=1e-7)
    out = rows(m2v("-", "--model", str(tiny_model_folder), "--format", "lines", stdin=data))
    assert [row["id"] for row in out] == [1, 2]  # forced lines: the JSON text itself is encoded


def test_texts_given_and_a_numpy_matrix(tmp_path, model, tiny_model_folder):
    target = tmp_path / "vectors.npy"
    result = m2v("--text", "one", "--text", "two words", "--model", str(tiny_model_folder), "-o", str(target))
    assert result.returncode == 0 and result.stdout == b""
    np.testing.assert_allclose(np.load(target, allow_pickle=False), model.encode(["one", "two words"]), atol=1e-7)
    rounded = rows(m2v("--text", "one", "--model", str(tiny_model_folder), "--decimals", "2"))
    assert rounded[0]["embedding"] == [round(float(v), 2) for v in model.encode(["one"])[0]]


def test_bad_input_names_file_and_line_and_leaves_the_old_output(tmp_path, tiny_model_folder):
    target = tmp_path / "out.jsonl"
    target.write_text("previous results\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\n\xff\xfe broken\n")
    result = m2v(str(bad), "--model", str(tiny_model_folder), "-o", str(target), "--batch-size", "1")
    assert result.returncode == 3 and f"{bad}: line 3: not valid UTF-8" in result.stderr.decode()
    assert target.read_text() == "previous results\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.txt", "out.jsonl"]
    record = tmp_path / "c.jsonl"
    record.write_text('{"id": 1, "text": "ok"}\n{"id": 2, "body": "no text"}\n')
    result = m2v(str(record), "--model", str(tiny_model_folder))
    assert result.returncode == 3 and "line 2: missing text field 'text'" in result.stderr.decode()
    for args, message in ((["--text", "x", str(bad)], "give INPUT or --text, not both"),
                          (["-o", str(tmp_path)], "is a folder"), (["-o", str(tmp_path / "no" / "x.npy")],
                                                                     "does not exist")):
        result = m2v(*args, "--model", str(tiny_model_folder))
        assert result.returncode == 2 and message in result.stderr.decode()
        assert b"Traceback" not in result.stderr


def test_auto_format_on_a_pipe_asks_for_the_format(tmp_path: Path) -> None:
    """Before: sniffing read the pipe's first bytes, then the reader found it empty: no output, exit 0."""
    fifo = tmp_path / "texts"
    os.mkfifo(fifo)
    result = m2v(str(fifo))
    assert result.returncode == 2 and b"--format" in result.stderr and b"pipe" in result.stderr


def test_a_hub_id_says_the_cli_does_not_download(tmp_path: Path) -> None:
    """Before: 'HF_HUB_OFFLINE is set', though the CLI had set it, and a Python call as the advice."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    result = subprocess.run([sys.executable, "-m", "m2v_search.cli", "encode", "--text", "hi", "--model",
                             "sentence-transformers/foo"], capture_output=True, env=env, timeout=120)
    assert result.returncode == 6
    assert b"do not download models" in result.stderr and b"give a model folder" in result.stderr
    assert b"m2v-base" in result.stderr


def test_a_full_disk_names_the_output_file(tmp_path: Path) -> None:
    """Before: numpy's 'Not enough free space to write ...' named no file."""
    code = ("import sys, numpy as np\n"
            "def full(*args, **kwargs):\n    raise OSError(28, 'No space left on device')\n"
            "np.save = full\n"
            "from m2v_search.cli.app import main\n"
            f"sys.exit(main(['encode', '--quiet', '--text', 'hi', '-o', {str(tmp_path / 'out.npy')!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 7
    assert f"cannot write {tmp_path / 'out.npy'}: No space left".encode() in result.stderr
    assert list(tmp_path.iterdir()) == []  # no partial file


def test_long_texts_are_cut_at_the_models_max_length_as_the_api_and_the_index_cut_them(model, tiny_model_folder):
    """Without --max-length the CLI once encoded every token (cosine 0.43 to ``encode`` for a long text)."""
    words = "rivers cats dogs bark sentence about note".split()
    long_text = " ".join(words[i % len(words)] for i in range(model.max_length * 3)) + " " + "zebra " * 2000
    out = rows(m2v("--text", long_text, "--model", str(tiny_model_folder)))
    np.testing.assert_allclose(out[0]["embedding"], model.encode([long_text])[0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(out[0]["embedding"], model.encode([long_text], max_length=None)[0], atol=1e-3)
    cut = rows(m2v("--text", long_text, "--model", str(tiny_model_folder), "--max-length", "5"))
    np.testing.assert_allclose(cut[0]["embedding"], model.encode([long_text], max_length=5)[0], rtol=1e-6, atol=1e-7)


def test_streams_are_written_to_never_replaced(tmp_path, model, tiny_model_folder):
    """``-o -``, a FIFO or a device is a stream; a link's file is replaced and the link kept
    (``-o /dev/stdout`` once turned the device into a regular file)."""
    out = m2v("--text", "one", "--model", str(tiny_model_folder), "-o", "-")
    assert rows(out)[0]["id"] == 1 and not (Path.cwd() / "-").exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert m2v("--text", "one", "--model", str(tiny_model_folder), "-o", str(fifo)).returncode == 0
    streamed = reader.communicate(timeout=60)[0]
    assert fifo.is_fifo() and json.loads(streamed)["id"] == 1
    real = tmp_path / "real.jsonl"
    real.write_text("old\n", encoding="utf-8")
    (tmp_path / "link.jsonl").symlink_to("real.jsonl")
    assert m2v("--text", "one", "--model", str(tiny_model_folder), "-o", str(tmp_path / "link.jsonl")).returncode == 0
    assert (tmp_path / "link.jsonl").is_symlink() and json.loads(real.read_text())["id"] == 1
    real.chmod(0o640)  # a replaced file keeps its permissions (it got the umask's before)
    assert m2v("--text", "two", "--model", str(tiny_model_folder), "-o", str(real)).returncode == 0
    assert real.stat().st_mode & 0o777 == 0o640


def test_stdin_whose_first_write_is_blank_is_still_sniffed_as_jsonl(tiny_model_folder):
    """The format was guessed from the first chunk only: a producer that wrote a blank line first
    had its JSON lines encoded as plain text."""
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-m', 'm2v_search.cli', 'encode', '--quiet', '--model', "
            f"{str(tiny_model_folder)!r}], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
            "p.stdin.write(b'\\n'); p.stdin.flush(); time.sleep(0.5)\n"
            "p.stdin.write(b'{\"id\": \"x\", \"text\": \"hello\"}\\n'); p.stdin.close()\n"
            "sys.stdout.write(p.stdout.read().decode()); sys.exit(p.wait())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert [row["id"] for row in rows(result)] == ["x"]


def test_output_mistakes_are_refused_and_repeated_ids_are_not_called_overwritten(tmp_path, tiny_model_folder):
    for args, message in ((["-o", str(tmp_path / "x.npz")], ".npz is not written"),
                          (["-o", str(tmp_path / "x.npy"), "--decimals", "2"], "--decimals rounds JSON"),
                          (["-o", ""], "output file name is empty")):
        result = m2v("--text", "one", "--model", str(tiny_model_folder), *args)
        assert result.returncode == 2 and message in result.stderr.decode(), result.stderr
    np.save(tmp_path / "upper.NPY", np.zeros(1))
    assert m2v("--text", "one", "--model", str(tiny_model_folder), "-o", str(tmp_path / "upper.NPY")).returncode == 0
    assert np.load(tmp_path / "upper.NPY").shape[0] == 1
    data = b'{"id": "a", "text": "one"}\n{"id": "a", "text": "two"}\n'
    result = m2v("-", "--model", str(tiny_model_folder), stdin=data)
    assert [row["id"] for row in rows(result)] == ["a", "a"] and b"later record wins" not in result.stderr


def test_dev_stdout_of_a_shell_append_writes_to_that_descriptor(tmp_path, tiny_model_folder):
    """``{ m2v encode -o /dev/stdout; echo later; } >> log``: /dev/stdout names the log file, which a
    rename over it once replaced (the earlier lines lost, the later ones written to the unlinked file)."""
    log = tmp_path / "log.jsonl"
    log.write_text("earlier line\n", encoding="utf-8")
    script = (f"{sys.executable} -m m2v_search.cli encode --quiet --model {tiny_model_folder} --text hi "
              f"-o /dev/stdout; echo later line")
    subprocess.run(["bash", "-c", f"{{ {script}; }} >> {log}"], check=True, timeout=120,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "earlier line" and json.loads(lines[1])["id"] == 1 and lines[2] == "later line"


def test_stdin_read_in_process_leaves_the_callers_stdin_alone(tiny_model_folder, monkeypatch, capsys):
    """The sniff once rebound ``sys.stdin``; a caller's only reference to its stream went with it
    and the stream was closed under the reader ('I/O operation on closed file')."""
    import io

    from m2v_search.cli import main

    stream = io.TextIOWrapper(io.BytesIO(b"foo\n\nbar\n"))
    monkeypatch.setattr(sys, "stdin", stream)
    assert main(["encode", "--quiet", "--model", str(tiny_model_folder), "-"]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [1, 3]
    assert sys.stdin is stream and not stream.closed


def test_parquet_bytes_on_stdin_or_under_a_jsonl_name_are_named_as_parquet(tmp_path, tiny_model_folder):
    # Before: encode read Parquet on stdin as text lines (one vector per line of binary noise, rc 0), and
    # m2v-index build said "line 1: invalid JSON".
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    parquet = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["cats purr", "dogs bark"]}), parquet)
    misnamed = tmp_path / "corpus.jsonl"
    misnamed.write_bytes(parquet.read_bytes())
    on_stdin = m2v("-", "--model", str(tiny_model_folder), stdin=parquet.read_bytes())
    assert on_stdin.returncode == 3 and b"<stdin> is a Parquet file" in on_stdin.stderr, on_stdin.stderr
    renamed = m2v(str(misnamed), "--model", str(tiny_model_folder))
    assert renamed.returncode == 3 and b"with a .parquet suffix" in renamed.stderr, renamed.stderr
    assert [row["id"] for row in rows(m2v(str(parquet), "--model", str(tiny_model_folder)))] == ["a", "b"]
    build = subprocess.run([sys.executable, "-m", "m2v_search.index", "build", "-", "-o", str(tmp_path / "index"),
                            "--quiet"], input=parquet.read_bytes(), capture_output=True, timeout=300,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert build.returncode == 3 and b"<stdin> is a Parquet file" in build.stderr, build.stderr
