"""Fast tokenizer backends: exact parity with Hugging Face tokenizers, or not used."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from m2v_search import StaticModel
from m2v_search.tokenization import PARITY_STRINGS, HFTokenizerBackend, select_backend

from corpora import gcide_definitions


def test_nanotoken_is_chosen_for_wordpiece_when_installed(teacher_tokenizer):
    pytest.importorskip("nanotoken")
    assert select_backend(teacher_tokenizer, "auto").name == "nanotoken"
    assert select_backend(teacher_tokenizer, "hf").name == "hf"


def test_environment_variable_disables_accelerator(teacher_tokenizer, monkeypatch):
    monkeypatch.setenv("M2V_TOKENIZER_BACKEND", "hf")
    assert select_backend(teacher_tokenizer).name == "hf"


def test_bad_backend_name(teacher_tokenizer):
    with pytest.raises(ValueError, match="tokenizer_backend must be one of"):
        select_backend(teacher_tokenizer, "sentencepiece-turbo")


def test_same_vectors_on_100k_real_texts_and_hard_strings(teacher_tokenizer, random_vectors):
    pytest.importorskip("nanotoken")
    texts = list(gcide_definitions()[:100_000]) + list(PARITY_STRINGS)
    assert len(texts) >= 100_000
    fast = StaticModel(random_vectors, teacher_tokenizer, tokenizer_backend="nanotoken")
    reference = StaticModel(random_vectors, teacher_tokenizer, tokenizer_backend="hf")
    for max_length in (512, 16):
        difference = np.abs(fast.encode(texts, max_length=max_length) - reference.encode(texts, max_length=max_length))
        assert difference.max() <= 1e-6


def _trained_tokenizer(kind: str) -> Tokenizer:
    texts = list(gcide_definitions()[:5000])
    if kind == "bytelevel-bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "nfkc-bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["[UNK]"])
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=2000, special_tokens=["<unk>"], unk_token="<unk>")
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


@pytest.mark.parametrize("kind", ["bytelevel-bpe", "nfkc-bpe", "unigram"])
def test_other_tokenizer_types_encode_exactly_like_reference(kind):
    tokenizer = _trained_tokenizer(kind)
    backend = select_backend(tokenizer, "auto")
    texts = list(gcide_definitions()[5000:15000]) + list(PARITY_STRINGS)
    reference = HFTokenizerBackend(tokenizer)
    for max_length in (None, 32):
        ids, offsets = backend.encode_flat(texts, max_length)
        want_ids, want_offsets = reference.encode_flat(texts, max_length)
        np.testing.assert_array_equal(offsets, want_offsets)
        np.testing.assert_array_equal(ids, want_ids)


def test_forcing_an_unusable_backend_explains_why():
    tokenizer = _trained_tokenizer("unigram")
    with pytest.raises(ValueError, match="WordPiece tokenizers only"):
        select_backend(tokenizer, "nanotoken")


def test_unigram_model_drops_unknown_like_model2vec(tmp_path):
    model2vec = pytest.importorskip("model2vec")
    tokenizer = _trained_tokenizer("unigram")
    vectors = np.random.default_rng(3).standard_normal((tokenizer.get_vocab_size(), 16)).astype(np.float32)
    texts = ["a definition of a word", "東京 ☃ unknown glyphs", ""]
    theirs = model2vec.StaticModel(vectors, tokenizer)
    ours = StaticModel(vectors, tokenizer)
    np.testing.assert_allclose(ours.encode(texts), theirs.encode(texts), atol=1e-4)
