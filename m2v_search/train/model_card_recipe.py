"""The recipe rows of a trained model's card (``config["recipe"]``, rendered by ``m2v_search.model_card``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from m2v_search.model import StaticModel
from m2v_search.train.init_model import describe_init
from m2v_search.train.recipe import Recipe, RecipeError, SimilaritySpec, VariantSpec, WordTermSpec, load_recipe
from m2v_search.train.training_set import TrainingSet
from m2v_search.train.variants import Candidate

SCORE_ROWS = (("stsb_test", "STS-B test"), ("mrr@10", "GCIDE def->def MRR@10"))


def describe_variant(recipe: Recipe, variant: VariantSpec, whitened: bool) -> str:
    """The loss and training data of a variant, in words."""
    rate = variant.learning_rate or recipe.fit.learning_rate
    parts = [f"{variant.loss} to the PCA-reduced teacher embedding", f"Adam lr {rate:g}"]
    if variant.whiten_targets:
        parts.append("whitened targets")
    if variant.sif_in_pooling:
        parts.append(f"SIF a={recipe.fit.sif_coefficient:g} from real corpus token frequencies in pooling")
    if not variant.crops:
        parts.append("no crops")
    if not variant.words:
        parts.append("no vocabulary words")
    if variant.in_domain_repeat > 1:
        parts.append(f"STS-B train sentences (and their crops) seen {variant.in_domain_repeat} times an epoch")
    parts.append("early stopping on the held-out corpus")
    text = ", ".join(parts)
    return text + ("; then the outputs whitened over the corpus (folded into the table)" if whitened else "")


def recipe_provenance(recipe: Recipe, *, corpus: str | os.PathLike[str] | None = None,
                      init: str | os.PathLike[str] | StaticModel | None = None, max_texts: int | None = None,
                      variants: Sequence[str] | None = None) -> str:
    """Whether a run is the shipped recipe as is (and how to rebuild it), or what differs.

    Args:
        recipe: the recipe as loaded (before any variant filter).
        corpus: a corpus file given instead of the recipe's sources.
        init: a starting model given instead of the recipe's distill.
        max_texts: a corpus cut.
        variants: a subset of the variants.
    """
    changes = [f"{flag} {value}" for flag, value in (
        ("--corpus", None if corpus is None else os.fspath(corpus)),
        ("--init", None if init is None else init.name if isinstance(init, StaticModel) else os.fspath(init)),
        ("--max-texts", max_texts), ("--variants", ",".join(variants) if variants else None)) if value is not None]
    try:
        shipped = load_recipe(recipe.name) == recipe
    except RecipeError:
        shipped = False
    if not shipped:
        return (f"{recipe.name}, not a shipped recipe (the whole recipe is in the training report)"
                + "".join(f"; {change}" for change in changes))
    if changes:
        return f"{recipe.name} (m2v_search/train/recipes) run with {', '.join(changes)}"
    return f"{recipe.name} (m2v_search/train/recipes/{recipe.name}.json; rebuild: m2v train --recipe {recipe.name})"


def card_recipe(recipe: Recipe, best: Candidate, init: StaticModel, training: TrainingSet,
                report: dict[str, Any]) -> dict[str, str]:
    """What the model card records: the recipe, the data and its licences, the choice, the scores.

    Args:
        recipe: the recipe run.
        best: the chosen candidate.
        init: the starting model.
        training: the corpus, crops and split.
        report: the run's report so far (corpus sources, timings, final scores, device).
    """
    sources = report.get("corpus", {}).get("sources", {})
    crops = training.crop_count if best.variant.crops else 0
    words = len(training.train_words) if best.variant.words else 0
    held = "best of {} variants{}".format(len(report.get("variants", {})),
                                          " (each also whitened)" if recipe.post_whiten else "")
    selected_on = {"stsb-dev": "STS-B dev", "held-out": "held-out corpus pair-similarity Spearman",
                   "dev-mix": "the mean of the dev tasks (STS-B dev, held-out word agreement with the teacher, "
                              "GCIDE held-out headwords, docstrings of the dev modules)"}[recipe.selection]
    rows = {
        "method": "plain distill of the teacher, then its table fitted to the teacher's mean-pooled sentence "
                  f"embeddings (PCA to {best.model.dim} dims) over an offline corpus (m2v_search.train)",
        "recipe": str(report.get("provenance", recipe.name)),
        "teacher": f"{recipe.teacher.name} ({recipe.teacher.licence})",
        "init": describe_init(init) or str(report.get("init", "")),
        "corpus": f"{len(training.texts)} texts (+{crops} random word-span crops"
                  + (f", +{words} single vocabulary words" if words else "")
                  + f"; {len(training.validation)} held out): " + "; ".join(f"{name} {entry['texts']} texts, {entry['licence']}"
                                       for name, entry in sources.items()),
        "loss": describe_variant(recipe, best.variant, best.whitened),
        "variant": best.name,
        "selection": f"{held} on {selected_on} ({best.score:.4g}); STS-B test never used for tuning",
        "epochs (best / run)": f"{best.result.best_epoch} / {len(best.result.history) - 1}",
    }
    retrieval = report.get("retrieval")
    if recipe.retrieval is not None and retrieval:
        rows["retrieval term"] = (
            f"then tuned on {retrieval['pairs']} query -> document pairs of standard-library docstrings "
            f"({', '.join(recipe.retrieval.pairs)}; training modules only), contrastive with a token anchor "
            f"(weight {recipe.retrieval.anchor_weight:g}); held-out MRR@10 {retrieval['held_out_mrr@10_before']} -> "
            f"{retrieval['held_out_mrr@10_best']}")
    similarity = report.get("similarity")
    if recipe.similarity is not None and similarity:
        rows["similarity term"] = similarity_row(recipe.similarity, similarity)
    words = report.get("word_term")
    if recipe.word_term is not None and words:
        rows["word term"] = word_term_row(recipe.word_term, words, recipe.teacher.name)
    scores = report.get("final", {}).get("scores", {})
    for key, label in SCORE_ROWS:
        names = [name for name in scores if key in scores[name]]
        if names:
            rows[f"{label} ({' / '.join(n if n != 'trained' else 'this' for n in names)})"] = " / ".join(
                f"{scores[name][key]:.2f}" for name in names)
    teacher_seconds = report.get("teacher_seconds_all_runs", report.get("featurize_seconds", 0))
    rows["wall time"] = (f"teacher pass {teacher_seconds:.0f}s + fit {best.result.seconds:.0f}s (the kept variant) "
                         f"on {report.get('device', '?')}")
    return rows


def similarity_row(spec: SimilaritySpec, summary: dict[str, Any]) -> str:
    """The model card's line for a similarity term (``SimilaritySpec`` and its report)."""
    teacher = f"{spec.teacher.name} ({spec.teacher.licence})" if spec.teacher is not None else "the teacher"
    return (f"then tuned so that its cosines on {summary['pairs']} STS-B train sentence pairs (the pairing only; "
            f"human scores never read) correlate with {teacher}'s cosines, with a token anchor "
            f"(weight {spec.anchor_weight:g}); held-out Spearman with the teacher's cosines "
            f"{summary['held_out_spearman_before']} -> {summary['held_out_spearman_best']}")


def word_term_row(spec: WordTermSpec, summary: dict[str, Any], teacher: str) -> str:
    """The model card's line for a word term (``WordTermSpec``, its report, the teacher's name)."""
    part = "one square map of the table" if spec.train == "map" else "the table"
    return (f"then {part} tuned so that its cosines on {summary['pairs']} random pairs of {summary['words']} "
            f"vocabulary words (never a held-out word of the dev tasks) correlate with {teacher}'s cosines, with a "
            f"token anchor (weight {spec.anchor_weight:g}); held-out Spearman with the teacher's cosines "
            f"{summary['held_out_spearman_before']} -> {summary['held_out_spearman_best']}")
