"""Model folders from careless or hostile hands, and saves that go wrong part way.

Interoperability is checked with the real model2vec and sentence-transformers packages.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from m2v_search import StaticModel
from m2v_search.errors import ModelLoadError
from m2v_search.persistence import read_card_metadata

TEXTS = ["The cat sat on the mat.", "Static embeddings are fast.", "a short third one"]


def _umask() -> int:
    mask = os.umask(0o022)  # os.umask has no read-only form: set it and put it back
    os.umask(mask)
    return mask


def test_a_save_stopped_between_its_two_renames_keeps_the_old_model_in_place(tiny_model, tmp_path,
                                                                             monkeypatch):
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    before = (folder / "model.safetensors").read_bytes()
    real_rename = os.rename

    def rename_then_stop(source, destination):
        if Path(source).name.endswith(".tmp"):  # the staged folder about to take the model's place
            raise KeyboardInterrupt
        return real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename_then_stop)
    with pytest.raises(KeyboardInterrupt):
        tiny_model.save_pretrained(folder)
    monkeypatch.undo()
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "staging or backup folder left behind"
    np.testing.assert_allclose(StaticModel.from_pretrained(folder).encode(TEXTS), tiny_model.encode(TEXTS),
                               atol=1e-6)


def test_a_saved_model_is_readable_by_others_as_the_umask_allows(tiny_model, tmp_path):
    mask = _umask()
    tiny_model.save_pretrained(tmp_path / "new")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o777 & ~mask
    for file in (tmp_path / "new").iterdir():
        if file.is_file():
            assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~mask, file.name

    existing = tmp_path / "existing"
    existing.mkdir()
    os.chmod(existing, 0o750)
    tiny_model.save_pretrained(existing)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o750  # a folder the user made keeps its mode


def test_saving_over_a_symlinked_folder_leaves_no_backup_link_behind(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "v1")
    (tmp_path / "current").symlink_to("v1")
    tiny_model.save_pretrained(tmp_path / "current")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "v1"]
    StaticModel.from_pretrained(tmp_path / "current")
    StaticModel.from_pretrained(tmp_path / "v1")


def test_an_int8_table_without_weights_saved_here_loads_in_sentence_transformers(teacher_tokenizer,
                                                                                  random_vectors, tmp_path):
    model2vec = pytest.importorskip("model2vec")
    st = pytest.importorskip("sentence_transformers")
    model2vec.StaticModel(random_vectors, Tokenizer.from_str(teacher_tokenizer.to_str())).save_pretrained(
        str(tmp_path / "float"))
    theirs = model2vec.StaticModel.from_pretrained(str(tmp_path / "float"), quantize_to="int8")
    assert theirs.embedding.dtype == np.int8 and theirs.weights is None
    ours = StaticModel(theirs.embedding, Tokenizer.from_str(teacher_tokenizer.to_str()))
    ours.save_pretrained(tmp_path / "int8")
    expected = theirs.encode(TEXTS)
    np.testing.assert_allclose(ours.encode(TEXTS), expected, atol=1e-4)
    loaded = st.SentenceTransformer(str(tmp_path / "int8"), device="cpu")
    np.testing.assert_allclose(loaded.encode(TEXTS), expected, atol=1e-4)
    reloaded_by_model2vec = model2vec.StaticModel.from_pretrained(str(tmp_path / "int8"))
    np.testing.assert_allclose(reloaded_by_model2vec.encode(TEXTS), expected, atol=1e-4)
    again = StaticModel.from_pretrained(tmp_path / "int8")
    assert again.fingerprint == ours.fingerprint  # weights of 1 are no weights: the same vectors, the same id
    np.testing.assert_allclose(again.encode(TEXTS), expected, atol=1e-4)


def test_a_model_card_that_is_a_folder_is_ignored_like_a_missing_one(tiny_model_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    (folder / "README.md").unlink()
    (folder / "README.md").mkdir()
    model = StaticModel.from_pretrained(folder)
    assert model.base_model_name is None
    expected = StaticModel.from_pretrained(tiny_model_folder).encode(TEXTS)
    np.testing.assert_allclose(model.encode(TEXTS), expected)


@pytest.mark.parametrize("field, value", [
    ("max_length", "512"), ("max_length", -5), ("max_length", 0), ("max_length", 1.5), ("max_length", True),
    ("normalize", "false"), ("normalize", 1),
])
def test_config_fields_of_the_wrong_type_are_refused_naming_file_and_field(tiny_model_folder, tmp_path, field,
                                                                           value):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=rf"config\.json.*'{field}'"):
        StaticModel.from_pretrained(folder)


@pytest.mark.parametrize("field, value", [("max_length", None), ("max_length", 16), ("normalize", False)])
def test_config_fields_of_the_right_type_load(tiny_model_folder, tmp_path, field, value):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert getattr(StaticModel.from_pretrained(folder), field) == value


@pytest.mark.parametrize("mapping", ["float", "nan"])
def test_a_token_mapping_that_is_not_whole_numbers_is_refused_naming_it(teacher_tokenizer, random_vectors,
                                                                       tmp_path, mapping):
    from safetensors.numpy import load_file, save_file

    vocabulary_size = teacher_tokenizer.get_vocab_size()
    model = StaticModel(random_vectors[:50], teacher_tokenizer, token_mapping=np.arange(vocabulary_size) % 50)
    model.save_pretrained(tmp_path / "model")
    tensors = load_file(str(tmp_path / "model" / "model.safetensors"))
    rows = (np.arange(vocabulary_size) % 50).astype(np.float32)
    tensors["mapping"] = rows + 0.5 if mapping == "float" else np.full_like(rows, np.nan)
    save_file(tensors, str(tmp_path / "model" / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors.*'mapping'.*float32"):
        StaticModel.from_pretrained(tmp_path / "model")


def test_saving_into_the_current_folder_or_its_parent(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    monkeypatch.chdir(folder)
    tiny_model.save_pretrained(".")
    assert Path.cwd() == folder and (folder / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert read_card_metadata(folder / "README.md")["model_name"] == "model"  # the folder's name, not ""
    reloaded = StaticModel.from_pretrained(".")
    np.testing.assert_allclose(reloaded.encode(TEXTS), tiny_model.encode(TEXTS), atol=1e-6)

    (folder / "inner").mkdir()
    monkeypatch.chdir(folder / "inner")
    tiny_model.save_pretrained("..")
    assert Path.cwd() == folder / "inner" and os.listdir(".") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    StaticModel.from_pretrained("..")


def test_quantizing_to_float16_refuses_values_float16_cannot_hold(teacher_tokenizer, random_vectors,
                                                                  tmp_path):
    table = random_vectors.copy()
    table[5, 3] = 1e5  # past float16's 65504: it would become infinity, and every text with the token NaN
    StaticModel(table, teacher_tokenizer).save_pretrained(tmp_path / "wide")
    with pytest.raises(ValueError, match="float16"):
        StaticModel.from_pretrained(tmp_path / "wide", quantize_to="float16")
    int8 = StaticModel.from_pretrained(tmp_path / "wide", quantize_to="int8")  # the range goes into its scale
    assert np.isfinite(int8.encode(TEXTS)).all()


def test_card_fields_yaml_reads_as_numbers_stay_text(tiny_model_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    (folder / "README.md").write_text("---\nmodel_name: 2024\nbase_model: 7\nlanguage: en\n---\n# by hand\n",
                                      encoding="utf-8")
    model = StaticModel.from_pretrained(folder)
    assert model.name == "2024" and model.base_model_name == "7" and model.language == ["en"]
    model.save_pretrained(tmp_path / "again")
    card = read_card_metadata(tmp_path / "again" / "README.md")
    assert card["base_model"] == "7" and card["language"] == ["en"]


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json"])
def test_a_fifo_in_place_of_a_model_file_is_refused_not_waited_on(tmp_path: Path, name: str) -> None:
    """Before: opening the FIFO blocked forever (in Rust for the first two, deaf to SIGTERM)."""
    from m2v_search.persistence import BUNDLED_MODELS_DIR

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODELS_DIR / "m2v-base", folder)
    (folder / name).unlink()
    os.mkfifo(folder / name)
    with pytest.raises(ModelLoadError, match=f"{name} is not a plain file"):
        StaticModel.from_pretrained(folder)
    if name == "config.json":  # the card is optional: a FIFO there is ignored, never read
        (folder / name).unlink()
        shutil.copy(BUNDLED_MODELS_DIR / "m2v-base" / name, folder / name)
        (folder / "README.md").unlink()
        os.mkfifo(folder / "README.md")
        assert StaticModel.from_pretrained(folder).dim == 256
