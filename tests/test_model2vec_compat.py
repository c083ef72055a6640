"""model2vec's own README examples, run against m2v_search with only the import changed.

The examples are read from the installed model2vec 0.10.0 package's README (its metadata),
not copied here. The hub is unreachable: each example that names a hub id runs twice, once
as written (it must fail with a clear HubUnavailableError) and once with the id replaced by
a local folder (it must work and, where model2vec can run too, give model2vec's numbers).
"""

from __future__ import annotations

import re
import warnings
from importlib import metadata

import numpy as np
import pytest

from m2v_search import StaticModel
from m2v_search.errors import HubUnavailableError

IMPORTS = {
    "from model2vec import StaticModel": "from m2v_search import StaticModel",
    "from model2vec.distill import distill": "from m2v_search.distill import distill",
}


def readme_examples() -> list[str]:
    """The ```python blocks of model2vec's README, as installed."""
    # The README is the body of METADATA, after the headers. Read the file itself: the parsed
    # message's get_payload() comes back empty once some packages (dask.distributed) are imported.
    text = metadata.distribution("model2vec").read_text("METADATA") or ""
    description = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    return re.findall(r"```python\n(.*?)```", description, flags=re.DOTALL)


def example(marker: str) -> str:
    (code,) = [block for block in readme_examples() if marker in block]
    return code


def ported(code: str) -> str:
    for theirs, ours in IMPORTS.items():
        code = code.replace(theirs, ours)
    assert "model2vec" not in code.replace("m2v_model", ""), "an import without an m2v_search equivalent"
    return code


def hub_ids(code: str) -> list[str]:
    return re.findall(r"\"([\w.-]+/[\w.-]+)\"", code)


@pytest.fixture(scope="module")
def model2vec_saved(tmp_path_factory, teacher_tokenizer, random_vectors):
    """A model saved by model2vec itself (the kind of folder its README loads)."""
    model2vec = pytest.importorskip("model2vec")
    folder = tmp_path_factory.mktemp("readme") / "potion-like"
    model2vec.StaticModel(random_vectors[:, :24] * 2, teacher_tokenizer, normalize=True).save_pretrained(str(folder))
    return folder


def test_readme_has_the_examples_we_port():
    blocks = readme_examples()
    assert any("StaticModel.from_pretrained" in b for b in blocks)
    assert any("distill(model_name=" in b for b in blocks)


def test_quickstart_example_offline_gives_clear_error(monkeypatch):
    code = example("model.encode_as_sequence")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match=f"{hub_ids(code)[0]}.*HF_HUB_OFFLINE.*pass its folder"):
        exec(ported(code), {})


def test_quickstart_example_on_a_local_folder_matches_model2vec(model2vec_saved):
    import model2vec

    code = example("model.encode_as_sequence")
    local = code.replace(hub_ids(code)[0], str(model2vec_saved))
    ours: dict = {}
    exec(ported(local), ours)
    theirs: dict = {}
    exec(local, theirs)
    assert isinstance(ours["model"], StaticModel) and isinstance(theirs["model"], model2vec.StaticModel)
    np.testing.assert_allclose(ours["embeddings"], theirs["embeddings"], atol=1e-5)
    assert len(ours["token_embeddings"]) == len(theirs["token_embeddings"])
    for mine, reference in zip(ours["token_embeddings"], theirs["token_embeddings"]):
        np.testing.assert_allclose(mine, reference, atol=1e-5)


def test_distill_example_offline_gives_clear_error(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    code = example("distill(model_name=")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match=hub_ids(code)[0]):
        exec(ported(code), {})
    assert list(tmp_path.iterdir()) == []


def test_distill_example_on_a_local_teacher(monkeypatch, tmp_path, teacher_folder):
    """The README's distill-then-save example, full vocabulary, on the local MiniLM teacher;
    the folder it saves loads in model2vec with the same vectors."""
    pytest.importorskip("torch")
    model2vec = pytest.importorskip("model2vec")
    code = example("distill(model_name=")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(ported(code.replace(hub_ids(code)[0], str(teacher_folder))), namespace)
    model = namespace["m2v_model"]
    assert model.dim == 256 and model.vocabulary_size > 20_000
    texts = ["It's dangerous to go alone!", "It's a secret to everybody.", ""]
    theirs = model2vec.StaticModel.from_pretrained(str(tmp_path / "m2v_model"))
    np.testing.assert_allclose(theirs.encode(texts), model.encode(texts), atol=1e-3)


# ---------------------------------------------------------------------- the documented calls
def test_constructor_takes_model2vec_positional_order(teacher_tokenizer, random_vectors):
    import model2vec

    size = teacher_tokenizer.get_vocab_size()
    weights = np.linspace(0.5, 1.5, size).astype(np.float32)
    # vectors, tokenizer, config, normalize, base_model_name, language, weights, token_mapping, max_length
    args = (random_vectors, teacher_tokenizer, {"note": "x"}, False, "teacher", ["en"], weights, None, 8)
    ours, theirs = StaticModel(*args), model2vec.StaticModel(*args)
    assert (ours.base_model_name, ours.language, ours.max_length, ours.normalize) == ("teacher", ["en"], 8, False)
    texts = ["positional construction works the same", "word " * 30]
    np.testing.assert_allclose(ours.encode(texts), theirs.encode(texts), atol=1e-5)


def test_encode_takes_model2vec_positional_order(tiny_model):
    texts = ["one text", "another text here", ""] * 5
    reference = tiny_model.encode(texts)
    # sentences, show_progress_bar, max_length, batch_size, use_multiprocessing, multiprocessing_threshold
    positional = tiny_model.encode(texts, False, 512, 2, False, 10)
    np.testing.assert_allclose(positional, reference, atol=1e-6)
    np.testing.assert_allclose(tiny_model.encode(texts, False, 1), tiny_model.encode(texts, max_length=1), atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_model.encode(texts, use_multiprocessing=True, multiprocessing_threshold=1)  # accepted, no warning
    with pytest.warns(UserWarning, match="convert_to_numpy"):
        tiny_model.encode(texts, convert_to_numpy=True)


def test_encode_as_sequence_takes_model2vec_keywords(tiny_model):
    one = tiny_model.encode_as_sequence(["a b c"], max_length=2, batch_size=1, show_progress_bar=False,
                                        use_multiprocessing=False, multiprocessing_threshold=5)
    assert one[0].shape == (2, tiny_model.dim)


def test_from_pretrained_model2vec_positional_order(model2vec_saved, tmp_path):
    import model2vec

    # path, token, normalize, subfolder, quantize_to, dimensionality, vocabulary_quantization, max_length,
    # force_download: the same call works in both libraries
    args = (str(model2vec_saved), None, False, None, "float16", 16, None, 64, False)
    ours, theirs = StaticModel.from_pretrained(*args), model2vec.StaticModel.from_pretrained(*args)
    assert (ours.dim, ours.normalize, ours.max_length, ours.embedding_dtype) == (16, False, 64, "float16")
    texts = ["dimensionality and precision", "word " * 100]
    np.testing.assert_allclose(ours.encode(texts), theirs.encode(texts).astype(np.float32), atol=1e-3)
    assert ours.tokens == list(theirs.tokens)
    assert ours.median_token_length == theirs.median_token_length


def test_subfolder_saves_and_loads(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "repo", subfolder="nested")
    loaded = StaticModel.from_pretrained(tmp_path / "repo", subfolder="nested")
    np.testing.assert_array_equal(loaded.encode("nested model"), tiny_model.encode("nested model"))
    from m2v_search.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="subfolder 'absent'"):
        StaticModel.from_pretrained(tmp_path / "repo", subfolder="absent")


def test_vocabulary_quantization_is_refused_clearly(tiny_model_folder):
    with pytest.raises(ValueError, match="vocabulary_quantization.*not supported"):
        StaticModel.from_pretrained(tiny_model_folder, vocabulary_quantization=100)
    import m2v_search

    with pytest.raises(ValueError, match="vocabulary_quantization"):  # m2v_search.distill(model_name=...) too
        m2v_search.distill(model_name="unused", vocabulary_quantization=100)


def test_from_sentence_transformers(tiny_model, tiny_model_folder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    loaded = sentence_transformers.SentenceTransformer(str(tiny_model_folder), device="cpu")
    ours = StaticModel.from_sentence_transformers(loaded)
    assert ours.normalize is True  # the folder has a Normalize module
    texts = ["sentence transformers static model", "the cat sat on the mat"]  # no unknown tokens
    np.testing.assert_allclose(ours.encode(texts), loaded.encode(texts), atol=1e-5)
    np.testing.assert_allclose(StaticModel.from_sentence_transformers(loaded[0]).encode(texts, normalize=True),
                               ours.encode(texts), atol=1e-6)
    from_path = StaticModel.from_sentence_transformers(str(tiny_model_folder))
    np.testing.assert_allclose(from_path.encode(texts), ours.encode(texts), atol=1e-6)


def test_from_sentence_transformers_refuses_a_transformer(teacher_folder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    transformer = sentence_transformers.SentenceTransformer(str(teacher_folder), device="cpu")
    with pytest.raises(TypeError, match="distill"):
        StaticModel.from_sentence_transformers(transformer)
