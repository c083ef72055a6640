"""StaticModel: encode semantics, Model2Vec / Sentence Transformers compatibility, quantization."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from m2v_search import StaticModel

TEXTS = [
    "The cat sat on the mat.",
    "Static embeddings are fast.",
    "",
    "naïve café, 東京 and ☃ snowmen",
    "zzzqqqxxx ✓✓ ⟁⟁",
    "word " * 700,
    "x" * 6000,
]


def test_encode_shapes_and_types(tiny_model):
    single = tiny_model.encode("hello world")
    assert single.shape == (tiny_model.dim,) and single.dtype == np.float32
    many = tiny_model.encode(TEXTS)
    assert many.shape == (len(TEXTS), tiny_model.dim)
    assert many.dtype == np.float32 and many.flags["C_CONTIGUOUS"]
    assert tiny_model.encode([]).shape == (0, tiny_model.dim)
    from_generator = tiny_model.encode(text for text in TEXTS)
    np.testing.assert_array_equal(from_generator, many)
    np.testing.assert_allclose(tiny_model.encode(TEXTS, batch_size=2), many, atol=1e-6)
    np.testing.assert_array_equal(tiny_model.encode(tuple(TEXTS)), many)


def test_empty_text_is_zero_vector_even_normalized(tiny_model):
    vectors = tiny_model.encode(["", "   ", "a real sentence"], normalize=True)
    assert not vectors[0].any() and not vectors[1].any()
    assert np.isclose(np.linalg.norm(vectors[2]), 1.0, atol=1e-5)


def test_non_str_item_names_its_position(tiny_model):
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        tiny_model.encode(["fine", 3, "also fine"])
    with pytest.raises(TypeError, match=r"texts\[5\] is NoneType"):
        tiny_model.encode(iter(["a", "b", "c", "d", "e", None]), batch_size=2)
    with pytest.raises(TypeError, match="bytes"):
        tiny_model.encode(b"raw bytes")
    with pytest.raises(TypeError, match=r"got a mapping \(dict\)"):  # would encode the keys alone
        tiny_model.encode({"id-1": "a text"})


def test_unknown_tokens_are_dropped(tiny_model):
    unk = tiny_model.unk_token_id
    assert unk is not None
    ids = tiny_model.tokenize(["⟁⟁ hello ⟁"])[0]
    assert unk not in ids and len(ids) == 1
    np.testing.assert_allclose(tiny_model.encode("⟁⟁ hello ⟁"), tiny_model.encode("hello"), atol=1e-6)


def test_tokenize_flat_is_the_csr_form_of_tokenize(tiny_model):
    texts = ["alpha beta", "", "⟁⟁ hello ⟁", "alpha beta " * 10]
    ids, offsets = tiny_model.tokenize_flat(texts, max_length=4)
    assert offsets[0] == 0 and offsets[-1] == len(ids) and len(offsets) == len(texts) + 1
    per_text = [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(texts))]
    assert per_text == tiny_model.tokenize(texts, max_length=4)
    assert per_text[1] == [] and len(per_text[3]) == 4


def test_max_length_truncates(tiny_model):
    long_text = "alpha beta " * 100
    np.testing.assert_allclose(
        tiny_model.encode(long_text, max_length=4), tiny_model.encode("alpha beta alpha beta"), atol=1e-6
    )


def test_encode_as_sequence_matches_mean(tiny_model):
    sequences = tiny_model.encode_as_sequence(["one two three", ""])
    assert sequences[0].shape == (3, tiny_model.dim) and sequences[1].shape == (0, tiny_model.dim)
    np.testing.assert_allclose(
        sequences[0].mean(axis=0), tiny_model.encode("one two three", normalize=False), atol=1e-6
    )
    assert tiny_model.encode_as_sequence("one two").shape == (2, tiny_model.dim)


@pytest.mark.parametrize("normalize", [None, True, False])
def test_pool_of_tokenize_flat_is_encode(tiny_model, normalize):
    texts = ["the cat sat on the mat", "", "dogs bark at night " * 50]
    ids, offsets = tiny_model.tokenize_flat(texts)
    np.testing.assert_array_equal(tiny_model.pool(ids, offsets, normalize=normalize),
                                  tiny_model.encode(texts, normalize=normalize))


def test_fingerprint_follows_a_replaced_part():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    vocabulary = {"[UNK]": 0, "cat": 1, "dog": 2}
    tokenizer = Tokenizer(WordLevel(vocabulary, unk_token="[UNK]"))
    model = StaticModel(np.eye(3, dtype=np.float32), tokenizer)
    first = model.fingerprint
    assert model.fingerprint == first  # asked again: the same parts, the same answer
    changed = model.embedding.copy()
    changed[1, 1] = 2.0
    model.embedding = changed
    assert model.fingerprint != first
    model.embedding = np.eye(3, dtype=np.float32)
    assert model.fingerprint == first
    model.weights = np.array([1.0, 2.0, 1.0], dtype=np.float32)
    assert model.fingerprint != first


def test_progress_bar_goes_to_stderr(tiny_model, capsys):
    tiny_model.encode(["a", "b", "c"], show_progress_bar=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "Encoding" in captured.err


# ---------------------------------------------------------------- Model2Vec compatibility
@pytest.fixture(scope="module")
def model2vec_folder(tmp_path_factory, teacher_tokenizer, random_vectors):
    """A model built and saved by the real model2vec package (random vectors, real tokenizer)."""
    model2vec = pytest.importorskip("model2vec")
    folder = tmp_path_factory.mktemp("m2v") / "from-model2vec"
    model2vec.StaticModel(random_vectors, teacher_tokenizer, normalize=False).save_pretrained(str(folder))
    return folder


def test_vectors_match_model2vec(model2vec_folder):
    import model2vec

    theirs = model2vec.StaticModel.from_pretrained(str(model2vec_folder))
    ours = StaticModel.from_pretrained(model2vec_folder)
    assert ours.normalize is False
    np.testing.assert_allclose(ours.encode(TEXTS), theirs.encode(TEXTS).astype(np.float32), atol=1e-4)
    np.testing.assert_allclose(
        ours.encode(TEXTS, normalize=True), theirs.encode(TEXTS, normalize=True), atol=1e-4
    )


def test_vectors_match_model2vec_with_mapping_and_weights(tmp_path, teacher_tokenizer):
    model2vec = pytest.importorskip("model2vec")
    rng = np.random.default_rng(7)
    vocabulary_size = teacher_tokenizer.get_vocab_size()
    clusters = rng.standard_normal((500, 24)).astype(np.float32)
    mapping = rng.integers(0, 500, vocabulary_size)
    weights = rng.uniform(0.1, 2.0, vocabulary_size).astype(np.float32)
    theirs = model2vec.StaticModel(clusters, teacher_tokenizer, weights=weights, token_mapping=mapping)
    theirs.save_pretrained(str(tmp_path / "quantized"))
    ours = StaticModel.from_pretrained(tmp_path / "quantized")
    np.testing.assert_allclose(ours.encode(TEXTS), theirs.encode(TEXTS), atol=1e-4)


def test_saved_model_loads_in_model2vec(tiny_model, tiny_model_folder):
    import model2vec

    theirs = model2vec.StaticModel.from_pretrained(str(tiny_model_folder))
    np.testing.assert_allclose(theirs.encode(TEXTS), tiny_model.encode(TEXTS), atol=1e-4)


# ---------------------------------------------------------------- Sentence Transformers
CLEAN_TEXTS = ["The cat sat on the mat.", "Static embeddings are fast.", "a short third one"]


def test_saved_model_loads_in_sentence_transformers(tiny_model, tiny_model_folder):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(tiny_model_folder), device="cpu")
    theirs = model.encode(CLEAN_TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(theirs, tiny_model.encode(CLEAN_TEXTS), atol=1e-5)


def test_loads_sentence_transformers_static_embedding_layout(tmp_path, teacher_tokenizer, random_vectors):
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.models import Normalize, StaticEmbedding

    from tokenizers import Tokenizer

    # StaticEmbedding turns padding off on the tokenizer it gets: give it a copy, not the shared fixture
    module = StaticEmbedding(Tokenizer.from_str(teacher_tokenizer.to_str()), embedding_weights=random_vectors)
    model = st.SentenceTransformer(modules=[module, Normalize()], device="cpu")
    model.save(str(tmp_path / "st-static"))
    ours = StaticModel.from_pretrained(tmp_path / "st-static")
    assert ours.normalize is True
    np.testing.assert_allclose(ours.encode(CLEAN_TEXTS), model.encode(CLEAN_TEXTS), atol=1e-5)


# ---------------------------------------------------------------- quantization
def test_float16_and_dimensionality(tiny_model_folder, tiny_model):
    half = StaticModel.from_pretrained(tiny_model_folder, quantize_to="float16", normalize=False)
    assert half.embedding_dtype == "float16"
    reference = tiny_model.encode(CLEAN_TEXTS, normalize=False)
    np.testing.assert_allclose(half.encode(CLEAN_TEXTS), reference, atol=2e-3)
    cut = StaticModel.from_pretrained(tiny_model_folder, dimensionality=8, normalize=False)
    assert cut.dim == 8
    np.testing.assert_allclose(cut.encode(CLEAN_TEXTS), reference[:, :8], atol=1e-6)
    with pytest.raises(ValueError, match="dimensionality"):
        StaticModel.from_pretrained(tiny_model_folder, dimensionality=999)


def test_int8_keeps_unnormalized_scale_and_round_trips(tmp_path, tiny_model_folder, tiny_model):
    import model2vec

    int8 = StaticModel.from_pretrained(tiny_model_folder, quantize_to="int8", normalize=False)
    assert int8.embedding_dtype == "int8"
    reference = tiny_model.encode(CLEAN_TEXTS, normalize=False)
    relative_error = np.abs(int8.encode(CLEAN_TEXTS) - reference).max() / np.abs(reference).max()
    assert relative_error < 0.02
    int8.save_pretrained(tmp_path / "int8")
    again = StaticModel.from_pretrained(tmp_path / "int8")
    assert again.embedding_dtype == "int8"
    np.testing.assert_allclose(again.encode(CLEAN_TEXTS), int8.encode(CLEAN_TEXTS), atol=1e-6)
    theirs = model2vec.StaticModel.from_pretrained(str(tmp_path / "int8"))
    np.testing.assert_allclose(theirs.encode(CLEAN_TEXTS), int8.encode(CLEAN_TEXTS), atol=1e-4)


def test_unsupported_quantize_dtype(tiny_model_folder):
    with pytest.raises(ValueError, match="unsupported dtype"):
        StaticModel.from_pretrained(tiny_model_folder, quantize_to="int4")


# ---------------------------------------------------------------- import cost
def test_import_is_light():
    code = (
        "import m2v_search, sys; m2v_search.__version__; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'torch','transformers','faiss','langchain_core','llama_index','sklearn'}))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize("backend", ["auto", "hf"])
def test_a_model_pickles_and_deep_copies_like_model2vec(backend: str) -> None:
    """Before: TypeError (nanotoken's tokenizer, or a local lambda of the hf backend), so spawn-based
    multiprocessing, joblib and copy.deepcopy could not take a model; model2vec's StaticModel can."""
    import copy
    import pickle

    model = StaticModel.from_pretrained(tokenizer_backend=backend)
    texts = ["the cat sat", "Ünïcödé 🙂", ""]
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert twin.tokenizer_backend == model.tokenizer_backend
        np.testing.assert_array_equal(twin.encode(texts), model.encode(texts))
        assert twin.fingerprint == model.fingerprint
    assert len(pickle.dumps(model)) < 1.2 * model.embedding.nbytes + 2_000_000  # not the float32 copy too


@pytest.mark.parametrize("batch_size", [None, 0, -1, 2.5, True])
def test_a_bad_batch_size_is_named_even_for_a_short_list(tiny_model, batch_size):
    """``batch_size=None`` once raised "'<=' not supported between int and NoneType"."""
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        tiny_model.encode(["a", "b"], batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        tiny_model.encode("a single text", batch_size=batch_size)  # was not checked for one str
