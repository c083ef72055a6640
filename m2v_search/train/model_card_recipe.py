"""The recipe rows of a trained model's card (``config["recipe"]``, rendered by ``m2v_search.model_card``)."""

from __future__ import annotations

from typing import Any

from m2v_search.model import StaticModel
from m2v_search.train.init_model import describe_init
from m2v_search.train.recipe import Recipe, VariantSpec
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
    if variant.in_domain_repeat > 1:
        parts.append(f"STS-B train sentences (and their crops) seen {variant.in_domain_repeat} times an epoch")
    parts.append("early stopping on the held-out corpus")
    text = ", ".join(parts)
    return text + ("; then the outputs whitened over the corpus (folded into the table)" if whitened else "")


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
    held = "best of {} variants{}".format(len(report.get("variants", {})),
                                          " (each also whitened)" if recipe.post_whiten else "")
    selected_on = {"stsb-dev": "STS-B dev", "held-out": "held-out corpus pair-similarity Spearman"}[recipe.selection]
    rows = {
        "method": "plain distill of the teacher, then its table fitted to the teacher's mean-pooled sentence "
                  f"embeddings (PCA to {best.model.dim} dims) over an offline corpus (m2v_search.train)",
        "recipe": f"{recipe.name} (rebuild: m2v train --recipe {recipe.name})",
        "teacher": f"{recipe.teacher.name} ({recipe.teacher.licence})",
        "init": describe_init(init) or str(report.get("init", "")),
        "corpus": f"{len(training.texts)} texts (+{crops} random word-span crops; {len(training.validation)} held "
                  "out): " + "; ".join(f"{name} {entry['texts']} texts, {entry['licence']}"
                                       for name, entry in sources.items()),
        "loss": describe_variant(recipe, best.variant, best.whitened),
        "variant": best.name,
        "selection": f"{held} on {selected_on} ({best.score:.4g}); STS-B test never used for tuning",
        "epochs (best / run)": f"{best.result.best_epoch} / {len(best.result.history) - 1}",
    }
    scores = report.get("final", {}).get("scores", {})
    for key, label in SCORE_ROWS:
        names = [name for name in scores if key in scores[name]]
        if names:
            rows[f"{label} ({' / '.join(n if n != 'trained' else 'this' for n in names)})"] = " / ".join(
                f"{scores[name][key]:.2f}" for name in names)
    rows["wall time"] = (f"featurize {report.get('featurize_seconds', 0):.0f}s + fit {best.result.seconds:.0f}s "
                         f"(the kept variant) on {report.get('device', '?')}")
    return rows
