"""ONNX export: onnxruntime gives StaticModel.encode's vectors from the exported files alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from m2v_search import StaticModel
from m2v_search.onnx_export import export_onnx

ort = pytest.importorskip("onnxruntime")

TEXTS = [
    "",
    "   ",
    "The cat sat on the mat.",
    "naïve café, 東京 and ☃ snowmen — ünïcödé ∑ 🙂",
    "⟁⟁ hello ⟁",  # unknown tokens around a known one
    "zzzqqqxxx ✓✓",
    "word " * 700,  # longer than max_length
    "x" * 6000,
    "Static embeddings are fast. " * 40,
]


def flat_inputs(tokenizer_file, texts):
    """What an EmbeddingBag caller feeds: every text's ids one after another, and start offsets."""
    from tokenizers import Tokenizer

    encodings = Tokenizer.from_file(str(tokenizer_file)).encode_batch(texts)
    ids = [encoding.ids for encoding in encodings]
    flat = np.array([i for row in ids for i in row], dtype=np.int64)
    offsets = np.cumsum([0] + [len(row) for row in ids[:-1]]).astype(np.int64)
    return flat, offsets


def fastembed_style_run(folder, texts):
    """Run the padded graph as fastembed's loader does: tokenizer.json with truncation at the
    tokenizer_config's model_max_length, padding with config.json's pad id, special tokens on
    (the default), and the graph's own input names."""
    from tokenizers import Tokenizer

    config = json.loads((folder / "config.json").read_text())
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=tokenizer_config["model_max_length"])
    tokenizer.enable_padding(pad_id=config["pad_token_id"], pad_token=tokenizer_config["pad_token"])
    encodings = tokenizer.encode_batch(texts)
    feeds = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
             "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
             "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
    session = ort.InferenceSession(str(folder / config["onnx"]["padded_model"]))
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {name: value for name, value in feeds.items() if name in names})[0]


def run_bag(folder, texts):
    session = ort.InferenceSession(str(folder / "onnx" / "model.onnx"))
    flat, offsets = flat_inputs(folder / "tokenizer.json", texts)
    return session.run(["embeddings"], {"input_ids": flat, "offsets": offsets})[0]


@pytest.fixture(scope="module")
def bundled():
    return StaticModel.from_pretrained()


def test_bundled_model_matches_encode_in_both_graphs(bundled, tmp_path):
    returned = export_onnx(bundled, tmp_path / "out")
    assert returned == tmp_path / "out" / "onnx" / "model.onnx"
    expected = bundled.encode(TEXTS)
    bag = run_bag(tmp_path / "out", TEXTS)
    assert bag.dtype == np.float32 and bag.shape == expected.shape
    np.testing.assert_allclose(bag, expected, atol=1e-5)
    np.testing.assert_allclose(fastembed_style_run(tmp_path / "out", TEXTS), expected, atol=1e-5)
    assert not bag[0].any() and not bag[1].any()  # empty text: a zero vector, even normalised
    np.testing.assert_allclose(np.linalg.norm(bag[2]), 1.0, atol=1e-5)


def test_single_text_and_one_token(bundled, tmp_path):
    export_onnx(bundled, tmp_path / "out", padded=False)
    assert not (tmp_path / "out" / "onnx" / "model_padded.onnx").exists()
    for texts in (["hello"], ["a longer single text with several tokens"], [""]):
        np.testing.assert_allclose(run_bag(tmp_path / "out", texts), bundled.encode(texts), atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_weights_mapping_dtype_and_unnormalised(tmp_path, teacher_tokenizer, dtype):
    from m2v_search.quantization import quantize

    rng = np.random.default_rng(5)
    size = teacher_tokenizer.get_vocab_size()
    clusters = rng.standard_normal((300, 16)).astype(np.float32) * 3
    mapping = rng.integers(0, 300, size)
    weights = rng.uniform(0.1, 2.0, size).astype(np.float32)
    table, weights = quantize(clusters, weights, dtype, size)
    model = StaticModel(table, teacher_tokenizer, normalize=False, weights=weights, token_mapping=mapping)
    model.to_onnx(tmp_path / "q")
    expected = model.encode(TEXTS)
    np.testing.assert_allclose(run_bag(tmp_path / "q", TEXTS), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(fastembed_style_run(tmp_path / "q", TEXTS), expected, atol=1e-5, rtol=1e-5)
    assert np.abs(expected).max() > 1.5  # really unnormalised, so the scale is checked too


def test_transformers_tokenizer_loads_the_folder(bundled, tmp_path):
    transformers = pytest.importorskip("transformers")
    export_onnx(bundled, tmp_path / "out")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"), local_files_only=True)
    batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="np")
    session = ort.InferenceSession(str(tmp_path / "out" / "onnx" / "model_padded.onnx"))
    got = session.run(None, {"input_ids": batch["input_ids"].astype(np.int64),
                             "attention_mask": batch["attention_mask"].astype(np.int64)})[0]
    np.testing.assert_allclose(got, bundled.encode(TEXTS), atol=1e-5)


def test_layout_files_and_config(bundled, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "NOTES.txt").write_text("mine")
    export_onnx(bundled, tmp_path / "out")
    names = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert names == {"onnx/model.onnx", "onnx/model_padded.onnx", "tokenizer.json", "tokenizer_config.json",
                     "special_tokens_map.json", "config.json", "README.md", "NOTES.txt"}
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "model2vec" and config["hidden_size"] == bundled.dim
    assert config["normalize"] is True and config["onnx"]["inputs"] == ["input_ids", "offsets"]
    tokenizer = json.loads((tmp_path / "out" / "tokenizer.json").read_text())
    assert tokenizer["post_processor"] is None and tokenizer["truncation"]["max_length"] == bundled.max_length
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_exporting_into_the_models_own_folder_keeps_its_card_and_config(tiny_model, tmp_path):
    """Model2Vec's hub layout: onnx/ beside model.safetensors. The model must stay as it was."""
    from m2v_search.persistence import read_card_metadata

    tiny_model.base_model_name = "sentence-transformers/all-MiniLM-L6-v2"
    tiny_model.config["recipe"] = {"method": "by hand"}
    try:
        tiny_model.save_pretrained(tmp_path / "model", model_name="my-model")
    finally:
        tiny_model.base_model_name = None
        tiny_model.config.pop("recipe")
    export_onnx(StaticModel.from_pretrained(tmp_path / "model"), tmp_path / "model")
    card = read_card_metadata(tmp_path / "model" / "README.md")
    assert card["model_name"] == "my-model" and card["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["recipe"] == {"method": "by hand"} and config["onnx"]["inputs"] == ["input_ids", "offsets"]
    again = StaticModel.from_pretrained(tmp_path / "model")
    assert again.name == "my-model" and again.base_model_name == "sentence-transformers/all-MiniLM-L6-v2"
    np.testing.assert_allclose(again.encode(TEXTS), tiny_model.encode(TEXTS), atol=1e-6)
    np.testing.assert_allclose(run_bag(tmp_path / "model", TEXTS), tiny_model.encode(TEXTS), atol=1e-5)


def test_saving_a_model_over_its_onnx_export_drops_the_stale_graphs(tiny_model, teacher_tokenizer, tmp_path):
    """The graphs hold the old table: after a new model is saved into the folder they must not remain
    (nor the config's description of them), while files of other tools stay."""
    folder = tmp_path / "model"
    tiny_model.save_pretrained(folder)
    export_onnx(StaticModel.from_pretrained(folder), folder)
    (folder / "notes.txt").write_text("mine")
    assert (folder / "onnx" / "model.onnx").is_file()
    retrained = StaticModel(np.random.default_rng(5).standard_normal((teacher_tokenizer.get_vocab_size(), 32))
                            .astype(np.float32), teacher_tokenizer, normalize=True)
    reloaded = StaticModel.from_pretrained(folder)  # its config carries "onnx"; a re-save must not
    assert "onnx" in reloaded.config
    reloaded.embedding = retrained.embedding
    reloaded.save_pretrained(folder)
    assert not (folder / "onnx").exists() and (folder / "notes.txt").read_text() == "mine"
    assert "onnx" not in json.loads((folder / "config.json").read_text())
    np.testing.assert_allclose(StaticModel.from_pretrained(folder).encode(TEXTS[2:4]),
                               retrained.encode(TEXTS[2:4]), atol=1e-3)
