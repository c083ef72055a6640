"""`m2v export-onnx` through a real subprocess: onnxruntime on the written files gives encode's vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from m2v_search import StaticModel

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tests.test_onnx import TEXTS, fastembed_style_run, run_bag  # noqa: E402


def m2v(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "m2v_search.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_export_the_bundled_model_by_default(tmp_path):
    out = tmp_path / "onnx-export"
    result = m2v("export-onnx", "-o", str(out))
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert written == {"output_dir": str(out), "model": str(out / "onnx" / "model.onnx"),
                       "padded_model": str(out / "onnx" / "model_padded.onnx"),
                       "tokenizer": str(out / "tokenizer.json"), "config": str(out / "config.json")}
    assert all(os.path.isfile(path) for key, path in written.items() if key != "output_dir")
    expected = StaticModel.from_pretrained().encode(TEXTS)
    np.testing.assert_allclose(run_bag(out, TEXTS), expected, atol=1e-5)
    np.testing.assert_allclose(fastembed_style_run(out, TEXTS), expected, atol=1e-5)


def test_export_a_model_folder_without_the_padded_graph(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "tiny")
    out = tmp_path / "out"
    result = m2v("export-onnx", str(tmp_path / "tiny"), "-o", str(out), "--no-padded")
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert written["padded_model"] is None and not (out / "onnx" / "model_padded.onnx").exists()
    np.testing.assert_allclose(run_bag(out, TEXTS), tiny_model.encode(TEXTS), atol=1e-5)


def test_missing_model_is_one_line_exit_6(tmp_path):
    result = m2v("export-onnx", str(tmp_path / "no-such-model"), "-o", str(tmp_path / "out"))
    assert result.returncode == 6, result.stderr
    assert result.stderr.count("\n") == 1 and "no-such-model" in result.stderr and "does not exist" in result.stderr
    assert result.stdout == "" and not (tmp_path / "out").exists()
    result = m2v("export-onnx", str(tmp_path))
    assert result.returncode == 2 and "-o/--output" in result.stderr


@pytest.mark.parametrize("command", [
    ["export-onnx"],
    ["distill", "TEACHER"],
    ["train", "TEACHER", "--corpus", "c.txt"],
])
@pytest.mark.parametrize("below", [False, True])
def test_an_output_folder_that_is_a_file_is_a_usage_error_before_any_work(command, below, tmp_path, capsys):
    from m2v_search.cli import main

    (tmp_path / "a-file").write_text("mine", encoding="utf-8")
    output = tmp_path / "a-file" / "model" if below else tmp_path / "a-file"
    with pytest.raises(SystemExit) as stop:
        main([*command, "-o", str(output)])
    error = capsys.readouterr().err
    assert stop.value.code == 2
    last = error.strip().splitlines()[-1]
    assert last.startswith(f"m2v {command[0]}: error: argument -o/--output: ") and "a-file" in last, error
    assert "is a file" in last
    assert (tmp_path / "a-file").read_text(encoding="utf-8") == "mine"


def test_an_empty_output_is_refused_and_the_working_folder_is_written_in_place(tmp_path, capsys):
    """``-o ""`` once meant the working folder; ``-o .`` swapped the folder away from under the shell
    (which was left in a deleted one) and a link given as ``-o`` became a real folder."""
    from m2v_search.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["export-onnx", "-o", ""])
    assert stop.value.code == 2 and "the output folder is empty" in capsys.readouterr().err
    here = tmp_path / "here"
    here.mkdir()
    (here / "mine.txt").write_text("kept", encoding="utf-8")
    inode = here.stat().st_ino
    result = subprocess.run([sys.executable, "-m", "m2v_search.cli", "export-onnx", "-o", "."], cwd=here,
                            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert here.stat().st_ino == inode and (here / "onnx" / "model.onnx").is_file()
    assert (here / "mine.txt").read_text(encoding="utf-8") == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]  # no staging or backup left beside it
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    assert m2v("export-onnx", "-o", str(tmp_path / "link")).returncode == 0
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "onnx" / "model.onnx").is_file()


def test_both_programs_report_their_version(capsys):
    import m2v_search
    from m2v_search.cli import index_main, main

    for program, run in (("m2v", main), ("m2v-index", index_main)):
        with pytest.raises(SystemExit) as stop:
            run(["--version"])
        assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"{program} {m2v_search.__version__}"
