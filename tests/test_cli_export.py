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
