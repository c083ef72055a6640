"""The sentence-similarity term (m2v_search.train.similarity) and its recipe plumbing (m2v_search.train.terms)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from m2v_search import StaticModel  # noqa: E402
from m2v_search.train.corpus import stsb_train_pairs, stsb_train_sentences  # noqa: E402
from m2v_search.train.heldout import is_heldout_headword, is_heldout_word  # noqa: E402
from m2v_search.train.recipe import SimilaritySpec, WordTermSpec  # noqa: E402
from m2v_search.train.similarity import (  # noqa: E402
    SimilarityOptions,
    pair_cosines,
    pearson_loss,
    similarity_finetune,
)
from m2v_search.train.terms import similarity_pairs, word_pairs  # noqa: E402

WORDS = ("red blue green yellow cat dog horse bird car bus train plane apple bread cheese milk "
         "run walk swim fly city river mountain sea happy sad angry calm").split()


@pytest.fixture(scope="module")
def model() -> StaticModel:
    return StaticModel.from_pretrained()


def _pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    first = [" ".join(rng.choice(WORDS, 4)) for _ in range(n)]
    second = [" ".join(rng.choice(WORDS, 4)) for _ in range(n)]
    return first, second


def _spearman(model: StaticModel, first: list[str], second: list[str], targets: np.ndarray) -> float:
    from scipy.stats import spearmanr

    cosines = np.einsum("ij,ij->i", model.encode(first, normalize=True), model.encode(second, normalize=True))
    return float(spearmanr(cosines, targets).correlation)


def test_pearson_loss_ignores_scale_and_shift() -> None:
    x = torch.tensor([0.1, 0.5, 0.2, 0.9])
    assert pearson_loss(x, 3 * x + 1).item() == pytest.approx(0.0, abs=1e-6)
    assert pearson_loss(x, -x).item() == pytest.approx(2.0, abs=1e-6)
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(pair_cosines(a, torch.tensor([[2.0, 0.0], [1.0, 0.0]])).numpy(), [1.0, 0.0])


def test_finetune_follows_the_teacher_and_the_anchor_holds_tokens(model: StaticModel, tmp_path) -> None:
    first, second = _pairs(400)
    # a "teacher" that grades pairs by how many words they share: the start model only partly agrees
    targets = np.array([len(set(a.split()) & set(b.split())) + 0.1 * (a.split()[0] == b.split()[0])
                        for a, b in zip(first, second)], dtype=np.float32)
    free, report = similarity_finetune(model, first, second, targets, SimilarityOptions(
        epochs=4, batch_size=32, anchor_weight=0.0, learning_rate=0.1, patience=4))
    assert free.embedding.shape == model.embedding.shape and free.embedding.dtype == model.embedding.dtype
    assert report["held_out_spearman_best"] > report["held_out_spearman_before"]
    assert report["train_pairs"] + report["validation_pairs"] == 400 and report["validation_pairs"] >= 3
    assert _spearman(free, first, second, targets) > _spearman(model, first, second, targets) + 0.02
    free.save_pretrained(tmp_path / "tuned")
    reloaded = StaticModel.from_pretrained(tmp_path / "tuned")
    assert reloaded.config["similarity"]["best_epoch"] == report["best_epoch"]
    np.testing.assert_allclose(reloaded.encode(["red cat"]), free.encode(["red cat"]), atol=1e-6)

    held, _ = similarity_finetune(model, first, second, targets, SimilarityOptions(
        epochs=4, batch_size=32, anchor_weight=1e4, learning_rate=0.1, patience=4))
    start = model.embedding.astype(np.float32)
    drift = lambda tuned: np.linalg.norm(tuned.embedding.astype(np.float32) - start)  # noqa: E731
    assert drift(held) < drift(free)


def test_finetune_refuses_bad_input(model: StaticModel) -> None:
    first, second = _pairs(50)
    with pytest.raises(ValueError, match="differ"):
        similarity_finetune(model, first, second[:-1], np.zeros(50))
    with pytest.raises(ValueError, match="no known token"):
        similarity_finetune(model, first[:-1] + ["\u2603\u2603"], second, np.arange(50.0))
    with pytest.raises(ValueError, match="at least 3 each"):
        similarity_finetune(model, first[:4], second[:4], np.arange(4.0))
    with pytest.raises(ValueError, match="train must be"):
        SimilarityOptions(train="rows")
    with pytest.raises(ValueError, match="batch_size"):
        SimilarityOptions(batch_size=2)


def test_stsb_train_pairs_read_only_the_pairing(tmp_path) -> None:
    (tmp_path / "sts-train.csv").write_text(
        "main\tcaptions\t2012\t0001\t5.000\tA man plays.\tA man is playing.\n"
        "main\tcaptions\t2012\t0002\t0.500\tA cat sleeps.\tA dog barks.\textra\tfields\n", encoding="utf-8")
    assert list(stsb_train_pairs(tmp_path)) == [("A man plays.", "A man is playing."), ("A cat sleeps.", "A dog barks.")]
    assert list(stsb_train_sentences(tmp_path))[:2] == ["A man plays.", "A man is playing."]
    (tmp_path / "sts-train.csv").write_text("only\tfour\tfields\there\n", encoding="utf-8")
    with pytest.raises(ValueError, match="sts-train.csv:1: expected >= 7"):
        list(stsb_train_pairs(tmp_path))


def test_similarity_pairs_drop_repeats_identical_and_unknown_sentences(model: StaticModel, tmp_path) -> None:
    lines = [("a red car", "a blue car"), ("a red car", "a blue car"), ("same", "same"), ("\u2603", "a dog"),
             ("a cat", "a dog")] + [(f"cat {i}", f"dog {i}") for i in range(30)]
    (tmp_path / "sts-train.csv").write_text("".join(f"g\tc\t2012\t{i}\t1.0\t{a}\t{b}\n" for i, (a, b) in enumerate(lines)),
                                            encoding="utf-8")
    pairs = similarity_pairs(model, SimilaritySpec(), tmp_path)
    assert pairs[:2] == [("a red car", "a blue car"), ("a cat", "a dog")] and len(pairs) == 32
    assert len(similarity_pairs(model, SimilaritySpec(max_pairs=20), tmp_path)) == 20
    (tmp_path / "sts-train.csv").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="sts-train.csv gave 0 usable sentence pairs"):
        similarity_pairs(model, SimilaritySpec(), tmp_path)


def test_word_pairs_never_hold_a_held_out_word(model: StaticModel) -> None:
    spec = WordTermSpec(words=3000, pairs=5000, seed=3)
    pairs = word_pairs(model, spec)
    assert len(pairs) == 5000 and pairs == word_pairs(model, spec)  # the same draw for the same seed
    words = {word for pair in pairs for word in pair}
    assert all(a != b for a, b in pairs) and len(words) > 2000
    assert not any(is_heldout_word(word) or is_heldout_headword(word) for word in words)
    assert pairs != word_pairs(model, WordTermSpec(words=3000, pairs=5000, seed=4))


def test_a_word_map_reaches_words_it_never_saw(model: StaticModel) -> None:
    """Trained as one square map, the word term changes held-out words' vectors too; as a table it
    moves only the rows of the words it trains on."""
    first, second = zip(*word_pairs(model, WordTermSpec(words=400, pairs=1500)))
    rng = np.random.default_rng(0)
    targets = rng.uniform(-1, 1, len(first)).astype(np.float32)
    unseen = [w for w in ("zebra", "harbour", "violin", "glacier") if w not in set(first) | set(second)]
    assert unseen
    before = model.encode(unseen)
    for train, moves in (("map", True), ("table", False)):
        tuned, _ = similarity_finetune(model, list(first), list(second), targets, SimilarityOptions(
            train=train, epochs=2, patience=2, batch_size=64, anchor_weight=0.0, learning_rate=0.1),
            record_as="word_term")
        assert "word_term" in tuned.config and "similarity" not in tuned.config
        changed = not np.allclose(tuned.encode(unseen), before, atol=1e-3)
        assert changed == moves, train
