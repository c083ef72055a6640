"""Distillation: a small vocabulary subset of the real all-MiniLM-L6-v2 teacher (fast), the
vocabulary surgery on WordPiece, BPE and Unigram tokenizers, SIF, PCA, devices, bad input."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tokenizers import Tokenizer  # noqa: E402

from m2v_search import StaticModel  # noqa: E402
from m2v_search.distill import distill_from_model, select_device  # noqa: E402
from m2v_search.distill.device import select_dtype  # noqa: E402
from m2v_search.distill.embed import embed_sequences  # noqa: E402
from m2v_search.distill.sif import token_counts, zipf_probabilities  # noqa: E402
from m2v_search.distill.vocabulary import build_vocabulary, special_ids  # noqa: E402
from m2v_search.errors import HubUnavailableError, ModelLoadError  # noqa: E402

SENTENCES = [
    "A man is playing a guitar on the street.",
    "The cat sat on the mat and looked at the dog.",
    "Stock markets fell sharply after the announcement.",
    "She is cooking dinner for her family tonight.",
]


@pytest.fixture(scope="module")
def plain_tokenizer(teacher_tokenizer) -> Tokenizer:
    """The teacher's tokenizer without its padding to 128 and truncation."""
    copy = Tokenizer.from_str(teacher_tokenizer.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


@pytest.fixture(scope="module")
def teacher(teacher_folder):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(teacher_folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(teacher_folder, local_files_only=True)
    return model, tokenizer


@pytest.fixture(scope="module")
def keep(teacher_tokenizer) -> list[str]:
    """A few hundred real tokens: those of the test sentences, plus common ids."""
    vocabulary = teacher_tokenizer.get_vocab()
    by_id = {i: t for t, i in vocabulary.items()}
    tokens = {t for e in teacher_tokenizer.encode_batch(SENTENCES, add_special_tokens=False) for t in e.tokens}
    tokens |= {by_id[i] for i in range(1996, 2296)}  # the ~300 most frequent words
    return sorted(tokens)


@pytest.fixture(scope="module")
def small(teacher, keep):
    model, tokenizer = teacher
    return distill_from_model(model, tokenizer, keep_tokens=keep, pca_dims=32, show_progress_bar=False,
                              device="cpu")


def cls_output(model, ids: list[int]) -> np.ndarray:
    with torch.inference_mode():
        x = torch.tensor([ids])
        return model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0, 0].numpy()


# ----------------------------------------------------------------------------- the pipeline
def test_small_distill_shapes_and_recipe(small, keep, plain_tokenizer):
    specials = 5  # [PAD] [UNK] [CLS] [SEP] [MASK]
    assert small.vocabulary_size == len(set(keep) | {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
    assert small.vocabulary_size >= len(keep) and small.vocabulary_size <= len(keep) + specials
    assert small.embedding.shape == (small.vocabulary_size, 32)
    assert small.embedding_dtype == "float16"
    assert small.normalize is True
    vectors = small.encode(SENTENCES)
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-3)
    recipe = small.config["recipe"]
    assert recipe["pca"].startswith("32 dims") and recipe["pooling"] == "first"
    assert recipe["token input"] == "[CLS] token" and "Zipf" in recipe["sif"]
    # encode sees the same tokens as the teacher's tokenizer (ids renumbered, strings equal)
    for sentence in SENTENCES:
        ours = [small.tokenizer.id_to_token(i) for i in small.tokenize([sentence])[0]]
        theirs = plain_tokenizer.encode(sentence, add_special_tokens=False).tokens
        assert ours == theirs


def test_rows_are_the_teacher_outputs(teacher, keep):
    model, tokenizer = teacher
    raw = distill_from_model(model, tokenizer, keep_tokens=keep, pca_dims=None, sif_coefficient=None,
                             quantize_to="float32", show_progress_bar=False, device="cpu")
    assert raw.dim == 384
    for word in ("guitar", "the", "##s"):
        expected = cls_output(model, [101, tokenizer.convert_tokens_to_ids(word)])
        np.testing.assert_allclose(raw.embedding[raw.tokenizer.token_to_id(word)], expected, atol=1e-4)
    both = distill_from_model(model, tokenizer, keep_tokens=keep, pca_dims=None, sif_coefficient=None,
                              quantize_to="float32", show_progress_bar=False, device="cpu",
                              token_context="both", pooling="mean")
    guitar = tokenizer.convert_tokens_to_ids("guitar")
    with torch.inference_mode():
        x = torch.tensor([[101, guitar, 102]])
        expected = model(input_ids=x).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(both.embedding[both.tokenizer.token_to_id("guitar")], expected, atol=1e-4)
    assert model.training is False and next(model.parameters()).dtype == torch.float32


def test_sif_weights_zipf_and_corpus(teacher, keep):
    model, tokenizer = teacher
    common = dict(keep_tokens=keep, pca_dims=None, quantize_to="float32", show_progress_bar=False, device="cpu")
    plain = distill_from_model(model, tokenizer, sif_coefficient=None, **common)
    zipf = distill_from_model(model, tokenizer, sif_coefficient=1e-3, **common)
    ratio = np.linalg.norm(zipf.embedding, axis=1) / np.linalg.norm(plain.embedding, axis=1)
    p = zipf_probabilities(plain.vocabulary_size)
    np.testing.assert_allclose(ratio, 1e-3 / (1e-3 + p), rtol=1e-4)

    corpus = ["the the the the guitar"] * 50 + ["a cat"]
    counted = distill_from_model(model, tokenizer, sif_coefficient=1e-3, sif_corpus=iter(corpus), **common)
    ratio = np.linalg.norm(counted.embedding, axis=1) / np.linalg.norm(plain.embedding, axis=1)
    the, guitar, cat = (counted.tokenizer.token_to_id(t) for t in ("the", "guitar", "cat"))
    assert ratio[the] < ratio[guitar] < ratio[cat] < 1.0
    assert "corpus texts" in counted.config["recipe"]["sif"]


def test_token_counts_vectorised(plain_tokenizer):
    counts, n = token_counts(plain_tokenizer, ["the cat", "the dog", "", "the"])
    assert n == 4 and counts.sum() == 5
    assert counts[plain_tokenizer.token_to_id("the")] == 3
    with pytest.raises(TypeError, match=r"sif_corpus\[1\]"):
        token_counts(plain_tokenizer, ["fine", 3])


def test_custom_words(teacher, keep):
    model, tokenizer = teacher
    words = ["xylophonist", "New York", "the", "", "   ", "xylophonist", "[unused3]"]
    result = distill_from_model(model, tokenizer, keep_tokens=keep, vocabulary=words, pca_dims=None,
                                sif_coefficient=None, quantize_to="float32", show_progress_bar=False, device="cpu")
    assert "2 custom words added" in result.config["recipe"]["vocabulary changes"]
    word_id = result.tokenizer.token_to_id("xylophonist")
    assert word_id is not None and result.tokenize(["xylophonist"])[0] == [word_id]
    teacher_ids = tokenizer("xylophonist")["input_ids"]
    assert len(teacher_ids) > 3  # several subwords in the teacher
    np.testing.assert_allclose(result.embedding[word_id], cls_output(model, teacher_ids[:-1]), atol=1e-4)
    new_york = result.tokenizer.token_to_id("new york")
    assert result.tokenize(["new york"])[0] == [new_york]
    # a phrase matches as whole words only (before: "renew yorkshire" and "a new yorker" held it)
    for text in ("renew yorkshire pudding", "a new yorker", "I love New York."):
        assert (new_york in result.tokenize([text])[0]) == (text == "I love New York."), text


def test_pca_variance_and_too_many_dims(teacher, keep):
    model, tokenizer = teacher
    common = dict(keep_tokens=keep, show_progress_bar=False, device="cpu")
    by_variance = distill_from_model(model, tokenizer, pca_dims=0.8, **common)
    assert 1 < by_variance.dim < 384
    share = float(by_variance.config["recipe"]["pca"].split(", ")[1].split(" ")[0])
    assert share >= 0.8
    with pytest.warns(UserWarning, match="number of tokens"):
        capped = distill_from_model(model, tokenizer, pca_dims=5000, **common)
    assert capped.dim == 384 or capped.dim == capped.vocabulary_size


def test_save_and_reload(small, tmp_path):
    small.save_pretrained(tmp_path / "m")
    again = StaticModel.from_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(again.encode(SENTENCES), small.encode(SENTENCES))
    assert again.config["recipe"] == small.config["recipe"]
    card = (tmp_path / "m" / "README.md").read_text()
    assert "| pooling | first |" in card and "| token input | [CLS] token |" in card
    model2vec = pytest.importorskip("model2vec")
    theirs = model2vec.StaticModel.from_pretrained(str(tmp_path / "m"))
    np.testing.assert_allclose(theirs.encode(SENTENCES), small.encode(SENTENCES), atol=2e-3)  # float16 sums


def test_distill_from_a_local_folder_end_to_end(teacher_folder, keep, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("distill of a local folder touched the hub")

    monkeypatch.setattr(huggingface_hub, "model_info", no_network)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    from m2v_search import distill

    model = distill(teacher_folder, keep_tokens=keep[:50], pca_dims=8, show_progress_bar=False)
    assert model.dim == 8 and model.base_model_name == "all-MiniLM-L6-v2"  # the card title, not "model"


def test_package_is_callable_whatever_was_imported_first():
    import m2v_search
    import m2v_search.distill.pca  # noqa: F401  (binds the attribute to the subpackage)

    assert callable(m2v_search.distill)
    assert callable(m2v_search.distill_from_model)


# ----------------------------------------------------------------------------- teacher pass
def test_embed_sorts_by_length_and_pads_correctly(teacher):
    model, _ = teacher
    sequences = [[101, 2000, 2001, 2002, 2003], [101, 2004], [101, 2005, 2006]]
    batched = embed_sequences(model, sequences, pad_token_id=0, device="cpu", dtype=torch.float32,
                              pooling="mean", batch_size=8, show_progress_bar=False)
    for row, ids in enumerate(sequences):
        with torch.inference_mode():
            alone = model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0).numpy()
        np.testing.assert_allclose(batched[row], alone, atol=1e-4)


# ----------------------------------------------------------------------------- vocabulary surgery
def test_unused_tokens_removed_and_tokenization_kept(teacher_tokenizer, plain_tokenizer):
    built = build_vocabulary(teacher_tokenizer, None, r"\[unused\d+\]")
    assert built.removed == 994 and built.size == teacher_tokenizer.get_vocab_size() - 994
    assert built.tokenizer.get_vocab_size() == built.size
    assert not any(t.startswith("[unused") for t in built.tokenizer.get_vocab())
    for sentence in SENTENCES + ["Ünïcödé and [unused5] text"]:
        ours = built.tokenizer.encode(sentence, add_special_tokens=False).tokens
        assert ours == plain_tokenizer.encode(sentence, add_special_tokens=False).tokens
    assert special_ids(teacher_tokenizer) == ([101], [102])
    data = json.loads(built.tokenizer.to_str())
    assert data["post_processor"] is None and data["model"]["unk_token"] == "[UNK]"


def _trained(kind: str) -> Tokenizer:
    from tokenizers import decoders, models, pre_tokenizers, trainers

    corpus = [
        "the quick brown fox jumps over the lazy dog", "static embeddings are fast",
        "tokenizers split words into pieces", "[unused1] [unused2] markers", "new york is a big city",
    ] * 20
    if kind == "BPE":
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>", "[unused7]"])
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>", "[unused7]"],
                                          unk_token="<unk>")
    tokenizer.train_from_iterator(corpus, trainer)
    return tokenizer


@pytest.mark.parametrize("kind", ["BPE", "Unigram"])
def test_bpe_and_unigram_surgery(kind):
    tokenizer = _trained(kind)
    specials = {"<unk>", "<s>", "</s>", "[unused7]"}
    longest = max((t for t in tokenizer.get_vocab() if t not in specials), key=len)  # a whole word
    pattern = "^" + re.escape(longest) + "$"
    built = build_vocabulary(tokenizer, ["zebrafish", "new york", "zebrafish", ""], pattern)
    output = built.tokenizer
    assert built.removed == 1 and built.added == 2 and built.skipped == 2
    assert output.get_vocab_size() == built.size == len(built.teacher_ids)
    assert output.token_to_id(longest) is None
    assert output.token_to_id("[unused7]") is not None  # special tokens are never removed
    (word_id,) = output.encode("zebrafish", add_special_tokens=False).ids
    assert output.id_to_token(word_id).endswith("zebrafish")
    assert built.teacher_ids[word_id] == tokenizer.encode("zebrafish").ids
    word = longest.lstrip("\u2581")
    for text in ["the quick brown fox jumps over the lazy dog", "static embeddings are fast", "a big city"]:
        if word not in text:
            assert output.encode(text, add_special_tokens=False).tokens == tokenizer.encode(text).tokens
    assert output.encode("", add_special_tokens=False).ids == []


def test_bad_patterns(teacher_tokenizer):
    with pytest.raises(ValueError, match="not a valid regular expression"):
        build_vocabulary(teacher_tokenizer, None, "[unclosed")
    with pytest.raises(ValueError, match="removes every token"):
        build_vocabulary(teacher_tokenizer, None, ".*")


# ----------------------------------------------------------------------------- devices
def test_device_selection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == "cuda" and select_device(None) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert select_device("auto") == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        select_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        select_device("tpu")
    assert select_device("cpu") == "cpu"


def test_dtype_selection():
    assert select_dtype(None, "cpu") == torch.float32
    assert select_dtype("bfloat16", "cuda") == torch.bfloat16
    with pytest.raises(ValueError, match="needs a GPU"):
        select_dtype("float16", "cpu")
    with pytest.raises(ValueError, match="dtype must be one of"):
        select_dtype("int4", "cuda")


# ----------------------------------------------------------------------------- bad input
def test_missing_path_and_offline_hub_id(tmp_path):
    from m2v_search import distill

    with pytest.raises(ModelLoadError, match="does not exist"):
        distill(tmp_path / "nowhere", show_progress_bar=False)
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        distill("sentence-transformers/all-MiniLM-L6-v2", show_progress_bar=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        distill(tmp_path / "empty", show_progress_bar=False)


def test_slow_tokenizer_refused(teacher):
    model, _ = teacher

    class SlowTokenizer:
        is_fast = False

    with pytest.raises(TypeError, match="fast tokenizer"):
        distill_from_model(model, SlowTokenizer(), show_progress_bar=False, device="cpu")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pca_dims": 0}, "pca_dims must be >= 1"),
        ({"pca_dims": 1.5}, "must be in \\(0, 1\\)"),
        ({"pca_dims": "256"}, "pca_dims must be an int"),
        ({"sif_coefficient": 2.0}, "sif_coefficient"),
        ({"quantize_to": "int4"}, "unsupported dtype"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"token_context": "left"}, "token_context must be one of"),
    ],
)
def test_bad_options_fail_before_the_teacher_runs(teacher, options, message):
    model, tokenizer = teacher
    with pytest.raises((ValueError, TypeError), match=message):
        distill_from_model(model, tokenizer, show_progress_bar=False, device="cpu", **options)


def test_hidden_size_warning(teacher, keep):
    model, tokenizer = teacher
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distill_from_model(model, tokenizer, keep_tokens=keep, pca_dims=1000, show_progress_bar=False, device="cpu")
    assert any("hidden size" in str(w.message) or "number of tokens" in str(w.message) for w in caught)


def test_int8_storage_keeps_the_scale(teacher, keep):
    model, tokenizer = teacher
    common = dict(keep_tokens=keep, pca_dims=np.int64(16), show_progress_bar=False, device="cpu")
    exact = distill_from_model(model, tokenizer, quantize_to="float32", **common)
    small = distill_from_model(model, tokenizer, quantize_to="int8", **common)
    assert small.embedding_dtype == "int8" and small.dim == 16
    a, b = exact.encode(SENTENCES, normalize=False), small.encode(SENTENCES, normalize=False)
    np.testing.assert_allclose(b, a, atol=0.02 * np.abs(a).max())


def test_a_teacher_whose_inputs_start_with_s_is_warned_about_the_prefix_input(teacher, teacher_tokenizer, keep,
                                                                             caplog):
    """<s> ... </s> teachers (RoBERTa, MPNet) distil badly from '<s> token' alone: the log says what to use."""
    import logging

    model, _ = teacher
    renamed = Tokenizer.from_str(teacher_tokenizer.to_str().replace('"[CLS]"', '"<s>"'))
    assert renamed.encode("a").tokens[0] == "<s>"
    with caplog.at_level(logging.WARNING, logger="m2v_search.distill.pipeline"):
        distill_from_model(model, renamed, keep_tokens=keep[:20], pca_dims=None, show_progress_bar=False, device="cpu")
    assert "token_context='both'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="m2v_search.distill.pipeline"):
        distill_from_model(model, renamed, keep_tokens=keep[:20], pca_dims=None, show_progress_bar=False,
                           device="cpu", token_context="both", pooling="mean")
        distill_from_model(model, teacher_tokenizer, keep_tokens=keep[:20], pca_dims=None, show_progress_bar=False,
                           device="cpu")
    assert "token_context" not in caplog.text


def test_a_teacher_in_a_generic_folder_is_named_by_its_card_or_its_hub_cache_path(tmp_path):
    """Before: the installed MiniLM's folder ("model") gave cards "teacher | model" and a link to
    https://huggingface.co/model; a hub-cache snapshot gave its hash."""
    from m2v_search.distill.pipeline import _teacher_name

    named = tmp_path / "model"
    named.mkdir()
    (named / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# all-MiniLM-L6-v2\nText.\n")
    snapshot = tmp_path / "models--org--name" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    plain = tmp_path / "my-teacher"
    plain.mkdir()
    assert [_teacher_name(p) for p in (named, snapshot, plain)] == ["all-MiniLM-L6-v2", "org/name", "my-teacher"]
