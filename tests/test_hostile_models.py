"""Model folders from careless or hostile hands, and saves that go wrong part way.

Interoperability is checked with the real model2vec and sentence-transformers packages.
"""

from __future__ import annotations

import json
import os
import time
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from m2v_search import StaticModel
from m2v_search.fingerprint import has_fingerprint, legacy_fingerprint
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
    (tmp_path / "v1" / "notes.txt").write_text("mine", encoding="utf-8")
    other = StaticModel(tiny_model.embedding[:, ::-1].copy(), tiny_model.tokenizer, normalize=tiny_model.normalize)
    other.save_pretrained(tmp_path / "current")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "v1"]
    # the link stays a link (it once became a real folder and v1 kept the old table)
    assert (tmp_path / "current").is_symlink() and os.readlink(tmp_path / "current") == "v1"
    np.testing.assert_allclose(StaticModel.from_pretrained(tmp_path / "v1").encode(TEXTS), other.encode(TEXTS),
                               atol=1e-6)
    assert (tmp_path / "v1" / "notes.txt").read_text(encoding="utf-8") == "mine"
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
    inode = folder.stat().st_ino
    tiny_model.save_pretrained(".")
    assert Path.cwd() == folder and (folder / "notes.txt").read_text(encoding="utf-8") == "mine"
    # written inside the folder, not by swapping it: a shell standing in it is not left in a deleted one
    assert folder.stat().st_ino == inode and os.stat(".").st_ino == inode
    assert not [p.name for p in tmp_path.iterdir() if p.name != "model"]
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


def _word_level_folder(folder: Path, vocabulary: dict[str, int], rows: int) -> Path:
    from safetensors.numpy import save_file
    from tokenizers import models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    save_file({"embeddings": np.ones((rows, 4), np.float32)}, str(folder / "model.safetensors"))
    return folder


def test_token_ids_past_the_table_are_refused_naming_the_tokenizer(tmp_path):
    """Before: ids skipping numbers (3 tokens, largest id 7, 3 rows) loaded, and encode read memory past
    the table (garbage vectors of norm 1e33 for 5+ texts, an IndexError for fewer)."""
    folder = _word_level_folder(tmp_path / "gap", {"[UNK]": 0, "hello": 1, "world": 7}, rows=3)
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json: token id 7 is past the 3 rows"):
        StaticModel.from_pretrained(folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    with pytest.raises(ValueError, match="token id 7, but there are only 3 vectors"):
        StaticModel(np.ones((3, 4), np.float32), tokenizer)


def test_a_table_without_columns_is_refused(tmp_path):
    folder = _word_level_folder(tmp_path / "flat", {"[UNK]": 0, "hello": 1}, rows=2)
    from safetensors.numpy import save_file

    save_file({"embeddings": np.ones((2, 0), np.float32)}, str(folder / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="no columns"):
        StaticModel.from_pretrained(folder)


def test_encoding_a_dataframe_is_refused_not_answered_with_uninitialised_rows(tiny_model):
    """Before: len() gave 6 rows, iterating gave the one column name: 5 rows of whatever memory held."""
    pandas = pytest.importorskip("pandas")
    with pytest.raises(TypeError, match=r"pandas DataFrame gives its column names: pass one column"):
        tiny_model.encode(pandas.DataFrame({"text": ["hello world"] * 6}))
    np.testing.assert_allclose(tiny_model.encode(pandas.Series(["hello world"] * 6)),
                               tiny_model.encode(["hello world"] * 6))


class _Lying:
    def __init__(self, items: list[str], length: int) -> None:
        self.items, self.length = items, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        return iter(self.items)


@pytest.mark.parametrize("items, length", [(["a b"] * 3, 5), (["a b"] * 5, 3)])
def test_a_len_that_disagrees_with_iteration_is_an_error(tiny_model, items, length):
    with pytest.raises(TypeError, match=f"len\\(\\) says {length} items"):
        tiny_model.encode(_Lying(items, length))


def test_saving_over_a_folder_keeps_user_links_as_links(tiny_model, tmp_path):
    """Before: a link to a data folder was copied whole on every save, a link to a parent folder
    recursed until RecursionError (writing gigabytes), and a dangling link failed every save."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(b"x" * 1000)
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    (folder / "data").symlink_to(data)
    (folder / "up").symlink_to("..")
    (folder / "gone").symlink_to(tmp_path / "missing")
    (folder / "notes").mkdir()
    (folder / "notes" / "up").symlink_to("../..")
    (folder / "notes" / "a.txt").write_text("mine")
    tiny_model.save_pretrained(folder)
    for name, target in (("data", str(data)), ("up", ".."), ("gone", str(tmp_path / "missing"))):
        assert (folder / name).is_symlink() and os.readlink(folder / name) == target, name
    assert (folder / "notes" / "up").is_symlink() and (folder / "notes" / "a.txt").read_text() == "mine"
    assert StaticModel.from_pretrained(folder).dim == tiny_model.dim


def test_a_local_model_folder_named_like_a_bundled_model_is_not_silently_replaced(tiny_model, tmp_path,
                                                                                  monkeypatch):
    """Before: a folder saved as ./m2v-base-v1 loaded the bundled 256-dim model instead."""
    monkeypatch.chdir(tmp_path)
    tiny_model.save_pretrained("m2v-base-v1")
    with pytest.raises(ModelLoadError, match="names both a bundled model and the model folder"):
        StaticModel.from_pretrained("m2v-base-v1")
    assert StaticModel.from_pretrained("./m2v-base-v1").dim == tiny_model.dim
    (tmp_path / "m2v-base").mkdir()  # a folder that holds no model is no clash
    assert StaticModel.from_pretrained("m2v-base").dim == 256


@pytest.mark.parametrize("name", ["", "   ", Path("no-such-models/x"), b"no-such-folder"])
def test_paths_and_empty_names_never_reach_the_hub(name, monkeypatch, tmp_path):
    """Before: Path objects and link loops were sent to the hub, "" loaded the working folder."""
    import m2v_search.persistence as persistence

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(persistence, "_download_from_hub", lambda *a: pytest.fail("asked the hub"))
    with pytest.raises(ModelLoadError, match="empty model name|does not exist"):
        StaticModel.from_pretrained(name)


def test_a_link_loop_is_named_as_one_not_sent_to_the_hub(tmp_path, monkeypatch):
    import m2v_search.persistence as persistence

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(persistence, "_download_from_hub", lambda *a: pytest.fail("asked the hub"))
    Path("loop").symlink_to("loop")
    with pytest.raises(ModelLoadError, match="broken symbolic link"):
        StaticModel.from_pretrained("loop")


def test_a_card_language_of_nested_yaml_aliases_is_not_expanded(tiny_model_folder, tmp_path):
    """Before: 300 bytes of nested aliases made str() build gigabytes (51 s and 2.2 GB at depth 8)."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    (folder / "README.md").write_text("---\n" + "\n".join(levels) + "\nlanguage: [en, *a11]\n---\n# card\n")
    assert StaticModel.from_pretrained(folder).language == ["en"]


def test_a_bfloat16_table_is_named_as_such(tiny_model_folder, tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    save_file({"embeddings": torch.ones((tiny_model_folder_rows(folder), 4), dtype=torch.bfloat16)},
              str(folder / "model.safetensors"))
    # numpy reads bfloat16 once a package such as ml_dtypes registers it: either way the message names it
    with pytest.raises(ModelLoadError, match=r"bfloat16.*float32, float16 or int8"):
        StaticModel.from_pretrained(folder)


def tiny_model_folder_rows(folder: Path) -> int:
    return Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size()


@pytest.mark.parametrize("kwargs", [{"normalize": "no"}, {"dimensionality": True}, {"dimensionality": 2.0}])
def test_load_arguments_of_the_wrong_type_are_refused(tiny_model_folder, kwargs):
    """Before: normalize="no" meant True and dimensionality=True meant 1."""
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        StaticModel.from_pretrained(tiny_model_folder, **kwargs)


def test_encode_refuses_a_normalize_that_is_not_a_bool(tiny_model):
    with pytest.raises(TypeError, match="normalize must be True, False or None"):
        tiny_model.encode(["a b"], normalize="no")


@pytest.mark.parametrize("scale", [1e20, 1e-30])
def test_unit_vectors_from_tables_of_extreme_scale(teacher_tokenizer, random_vectors, scale):
    """Before: float32 squares overflowed (all-zero vectors at 1e20) or underflowed (norm 200 at 1e-30)."""
    model = StaticModel((random_vectors * np.float32(scale)).astype(np.float32), teacher_tokenizer, normalize=True)
    norms = np.linalg.norm(model.encode(TEXTS), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_two_different_tables_in_one_folder_are_reported(tiny_model_folder, tmp_path, caplog):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    (folder / "0_StaticEmbedding").mkdir()
    shutil.copy(folder / "tokenizer.json", folder / "0_StaticEmbedding" / "tokenizer.json")
    from safetensors.numpy import save_file

    rows = tiny_model_folder_rows(folder)
    save_file({"embedding.weight": np.full((rows, 32), 2.0, np.float32)},
              str(folder / "0_StaticEmbedding" / "model.safetensors"))
    modules = [{"idx": 0, "name": "0", "path": "0_StaticEmbedding",
                "type": "sentence_transformers.models.StaticEmbedding"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    with caplog.at_level("WARNING", logger="m2v_search.persistence"):
        StaticModel.from_pretrained(folder)
    assert "two different tables" in caplog.text


def test_saving_into_the_working_folder_drops_what_the_new_model_lacks(tiny_model, tmp_path, monkeypatch):
    """Written in place, the folder still ends as a swap would leave it: a stale ``1_Normalize``
    (or an ``onnx/`` export of the old table) goes, the user's files stay."""
    folder = tmp_path / "model"
    folder.mkdir()
    monkeypatch.chdir(folder)
    StaticModel(tiny_model.embedding, tiny_model.tokenizer, normalize=True).save_pretrained(".")
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(b"old export")
    (folder / "mine.txt").write_text("kept", encoding="utf-8")
    assert (folder / "1_Normalize").is_dir()
    StaticModel(tiny_model.embedding, tiny_model.tokenizer, normalize=False).save_pretrained(".")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "mine.txt", "model.safetensors",
                                                        "modules.json", "tokenizer.json"]
    assert StaticModel.from_pretrained(".").normalize is False


def test_a_failed_rename_in_place_puts_every_entry_back(tiny_model, tmp_path, monkeypatch):
    """Written inside the working folder, entries are renamed into place one by one: when one rename
    fails, the ones already placed go back, so the old model still loads (a 64-dim table next to the
    old config once made the folder unloadable)."""
    folder = tmp_path / "model"
    folder.mkdir()
    monkeypatch.chdir(folder)
    tiny_model.save_pretrained(".")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    real = {"rename": os.rename, "replace": os.replace}

    def failing(how):
        def move(source, destination, *args, **kwargs):
            if Path(destination).name == "config.json" and ".m2v-save." in str(source):
                raise OSError(28, "No space left on device")
            return real[how](source, destination, *args, **kwargs)
        return move

    for how in real:  # files are swapped with replace, folders with rename
        monkeypatch.setattr(os, how, failing(how))
    smaller = StaticModel(tiny_model.embedding[:, :8].copy(), tiny_model.tokenizer, normalize=tiny_model.normalize)
    with pytest.raises(OSError, match="No space left"):
        smaller.save_pretrained(".")
    for how, function in real.items():
        monkeypatch.setattr(os, how, function)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert {p.name for p in folder.iterdir()} == set(before) | ({"1_Normalize"} if tiny_model.normalize else set())
    assert StaticModel.from_pretrained(".").dim == tiny_model.dim


def test_in_place_an_entry_that_is_a_link_is_replaced_and_leftovers_of_a_killed_save_go(tiny_model, tmp_path,
                                                                                          monkeypatch):
    pytest.importorskip("onnx")
    from m2v_search.onnx_export import export_onnx

    folder, elsewhere = tmp_path / "model", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "onnx").symlink_to(elsewhere)  # the swap path replaced it; in place, renaming over it failed
    (folder / ".m2v-save.0123abcd.tmp").mkdir()  # a killed save's staging folder, two hours old
    (folder / ".onnx.0123abcd.old").mkdir()
    for leftover in (".m2v-save.0123abcd.tmp", ".onnx.0123abcd.old"):
        os.utime(folder / leftover, (time.time() - 7200, time.time() - 7200))
    (folder / ".m2v-save.4567cdef.tmp").mkdir()  # a save running in another process now: left alone
    monkeypatch.chdir(folder)
    export_onnx(tiny_model, ".")
    assert (folder / "onnx").is_dir() and not (folder / "onnx").is_symlink()
    assert (folder / "onnx" / "model.onnx").is_file() and elsewhere.is_dir()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == [".m2v-save.4567cdef.tmp"]


def test_mount_points_are_read_from_mountinfo():
    from m2v_search.folder_swap import _in_place, _mount_points

    points = _mount_points()
    if not points:
        pytest.skip("no /proc/self/mountinfo here")
    assert "/" in points and "/proc" in points
    assert _in_place(Path("/proc"))


def test_sentence_transformers_reads_a_saved_folder_as_encode_does(tmp_path):
    """Before: Sentence Transformers averaged the unknown token's row in (cos 0.80 for "I love this
    😀" on m2v-base) and read texts past max_length whole (cos 0.29 for a 9,600-token text). A save
    now writes the unknown token's weight as 0 and truncation in tokenizer.json; encode, Model2Vec
    and the fingerprint see the same model."""
    st = pytest.importorskip("sentence_transformers")
    model = StaticModel.from_pretrained("m2v-base")
    model.save_pretrained(tmp_path / "copy")
    again = StaticModel.from_pretrained(tmp_path / "copy")
    assert again.weights is None and again.fingerprint == model.fingerprint
    assert has_fingerprint(again, legacy_fingerprint(model))  # what older index manifests recorded
    texts = ["I love this \U0001F600", "price in \u20bf and \u20ac", "plain text", " ".join(["word"] * 3000)]
    ours = again.encode(texts)
    np.testing.assert_array_equal(ours, model.encode(texts))
    theirs = st.SentenceTransformer(str(tmp_path / "copy"), device="cpu")
    theirs.float()
    np.testing.assert_allclose((ours * theirs.encode(texts)).sum(axis=1), 1.0, atol=1e-5)


def test_a_model_with_weights_keeps_its_fingerprint_through_a_save_and_accepts_the_old_one(tmp_path):
    """The unknown token's weight counts as 0 in the fingerprint (a save writes 0 there): a saved copy
    is the same model, and a manifest recorded before the change still matches (legacy_fingerprint)."""
    base = StaticModel.from_pretrained("m2v-base")
    weights = np.linspace(0.5, 1.5, base.vocabulary_size).astype(np.float32)
    weighted = StaticModel(np.asarray(base.embedding, dtype=np.float32), base.tokenizer, weights=weights)
    weighted.save_pretrained(tmp_path / "weighted")
    again = StaticModel.from_pretrained(tmp_path / "weighted")
    assert again.weights[base.unk_token_id] == 0 and again.fingerprint == weighted.fingerprint
    assert legacy_fingerprint(weighted) != weighted.fingerprint
    assert has_fingerprint(weighted, legacy_fingerprint(weighted))
    # an index recorded the old-style fingerprint; the model was then saved again by this version,
    # which rewrote the unknown token's weight: the saved config still names the old identity
    again.save_pretrained(tmp_path / "resaved")
    resaved = StaticModel.from_pretrained(tmp_path / "resaved")
    assert has_fingerprint(resaved, legacy_fingerprint(weighted)) and resaved.fingerprint == weighted.fingerprint
    np.testing.assert_allclose(again.encode(TEXTS), weighted.encode(TEXTS), atol=1e-6)


def test_a_model_loaded_with_fewer_dimensions_says_so_in_its_saved_card(tmp_path):
    """Before: from_pretrained(dimensionality=32).save_pretrained() wrote a card and config saying
    "pca | 64 dims" / apply_pca 64 for a 32-dim table."""
    model = StaticModel.from_pretrained("m2v-base", dimensionality=32)
    model.save_pretrained(tmp_path / "small")
    card = (tmp_path / "small" / "README.md").read_text(encoding="utf-8")
    assert "| dimensions kept | the first 32 of 256 (loaded with dimensionality=32) |" in card
    again = StaticModel.from_pretrained(tmp_path / "small")
    assert again.dim == 32 and again.config["recipe"]["dimensions kept"].startswith("the first 32 of 256")
