"""Model folders: bad input gets errors naming the file; saves are atomic; hub ids offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from m2v_search import StaticModel
from m2v_search.errors import HubUnavailableError, ModelLoadError
from m2v_search.persistence import read_card_metadata


def copy_model(source, destination):
    shutil.copytree(source, destination)
    return destination


def test_missing_folder():
    with pytest.raises(ModelLoadError, match="does not exist"):
        StaticModel.from_pretrained("./no/such/model")


def test_missing_tokenizer_names_file(tiny_model_folder, tmp_path):
    folder = copy_model(tiny_model_folder, tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json is missing"):
        StaticModel.from_pretrained(folder)


def test_corrupt_safetensors_names_file(tiny_model_folder, tmp_path):
    folder = copy_model(tiny_model_folder, tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors"):
        StaticModel.from_pretrained(folder)


def test_corrupt_tokenizer_names_file(tiny_model_folder, tmp_path):
    folder = copy_model(tiny_model_folder, tmp_path / "m")
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json"):
        StaticModel.from_pretrained(folder)


def test_shape_mismatch_names_file(tiny_model_folder, tmp_path):
    from safetensors.numpy import save_file

    folder = copy_model(tiny_model_folder, tmp_path / "m")
    save_file({"embeddings": np.zeros((100, 8), dtype=np.float32)}, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: 100 embedding rows, but the tokenizer has 30522"):
        StaticModel.from_pretrained(folder)


def test_non_finite_embeddings_or_weights_are_refused(tiny_model_folder, tmp_path):
    from safetensors.numpy import save_file

    folder = copy_model(tiny_model_folder, tmp_path / "m")
    table = np.ones((30522, 8), dtype=np.float16)
    table[[5, 70], 3] = [np.nan, np.inf]
    save_file({"embeddings": table}, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: 2 of 30522 embedding rows hold NaN"):
        StaticModel.from_pretrained(folder)
    weights = np.ones(30522, dtype=np.float32)
    weights[9] = np.nan
    save_file({"embeddings": np.ones((30522, 8), dtype=np.float32), "weights": weights},
              str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="1 token weights are NaN"):
        StaticModel.from_pretrained(folder)


def test_unsupported_dtype_names_file(tiny_model_folder, tmp_path):
    from safetensors.numpy import save_file

    folder = copy_model(tiny_model_folder, tmp_path / "m")
    save_file({"embeddings": np.zeros((30522, 8), dtype=np.int32)}, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="unsupported dtype int32"):
        StaticModel.from_pretrained(folder)


def test_transformer_folder_is_refused_with_advice(teacher_folder):
    with pytest.raises(ModelLoadError, match="m2v distill"):
        StaticModel.from_pretrained(teacher_folder)


def test_hub_id_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="pass its folder instead"):
        StaticModel.from_pretrained("minishlab/potion-base-8M")


def test_hub_unreachable_gives_clear_error():
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": "/tmp/m2v-empty-hf"}
    code = (
        "from m2v_search import StaticModel\n"
        "try:\n    StaticModel.from_pretrained('someone/some-model')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.startswith("HubUnavailableError"), result.stdout + result.stderr
    assert "pass its folder instead" in result.stdout


def test_save_keeps_foreign_files_and_is_atomic(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    (folder / "notes.txt").write_text("mine")
    before = (folder / "model.safetensors").read_bytes()

    import safetensors.numpy

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        tiny_model.save_pretrained(folder)
    monkeypatch.undo()
    assert (folder / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"
    tiny_model.save_pretrained(folder)
    assert (folder / "notes.txt").read_text() == "mine"
    StaticModel.from_pretrained(folder)


def test_model_card_front_matter_and_sections(tiny_model, tmp_path):
    tiny_model.base_model_name = "sentence-transformers/all-MiniLM-L6-v2"
    try:
        tiny_model.save_pretrained(tmp_path / "carded", model_name="tiny-card")
    finally:
        tiny_model.base_model_name = None
    metadata = read_card_metadata(tmp_path / "carded" / "README.md")
    assert metadata["model_name"] == "tiny-card"
    assert metadata["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert {"license", "tags", "library_name"} <= set(metadata)
    text = (tmp_path / "carded" / "README.md").read_text()
    for heading in ("## Installation", "## Usage", "Sentence Transformers", "## Distilling", "## How it works", "## Citation"):
        assert heading in text
    config = json.loads((tmp_path / "carded" / "config.json").read_text())
    assert config["model_type"] == "model2vec" and config["hidden_dim"] == tiny_model.dim
    assert StaticModel.from_pretrained(tmp_path / "carded").base_model_name == "sentence-transformers/all-MiniLM-L6-v2"
