"""Fit each variant of a recipe, whiten it over the corpus if asked, and keep the best.

Selection never reads STS-B test: either STS-B dev ("stsb-dev") or the held-out corpus
pair-similarity score of the fit ("held-out"; a whitened candidate wins a tie with its own
unwhitened fit, as whitening does not change that score's meaning).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from m2v_search.model import StaticModel
from m2v_search.train.fit import FitOptions, FitResult, fit
from m2v_search.train.recipe import Recipe, VariantSpec
from m2v_search.train.training_set import TrainingSet

logger = logging.getLogger(__name__)

MIN_SECONDS_LEFT = 10.0


class ReportLike(Protocol):
    """Where the variants' results go (the runner's report)."""

    data: dict[str, Any]

    def save(self) -> None: ...


@dataclass
class Candidate:
    """A model that may become the result: a variant's fit, or that fit whitened."""

    name: str
    variant: VariantSpec
    model: StaticModel
    result: FitResult
    whitened: bool
    score: float

    def beats(self, other: Candidate | None) -> bool:
        """Strictly better; on the held-out score, whitening wins a tie with its own fit."""
        if other is None:
            return True
        if self.score != other.score:
            return self.score > other.score
        return self.result is other.result and self.whitened and not other.whitened


def variant_options(recipe: Recipe, variant: VariantSpec, device: str, time_limit: float | None) -> FitOptions:
    """The ``FitOptions`` of one variant: the recipe's shared fit settings, then the variant's."""
    return FitOptions(loss=variant.loss, whiten_targets=variant.whiten_targets, epochs=recipe.fit.epochs,
                      batch_size=recipe.fit.batch_size,
                      learning_rate=variant.learning_rate or recipe.fit.learning_rate,
                      patience=recipe.fit.patience, time_limit=time_limit, device=device, show_progress_bar=False)


def fit_variants(recipe: Recipe, init: StaticModel, training: TrainingSet, targets: np.ndarray, *, device: str,
                 stsb_dir: str | os.PathLike[str] | None, budget: float | None, report: ReportLike,
                 teacher: str | os.PathLike[str] | None = None) -> Candidate:
    """Fit every variant of ``recipe`` from ``init`` and return the best candidate.

    Args:
        recipe: variants, shared fit settings, post-whitening and selection.
        init: the starting model.
        training: texts, crops and rows.
        targets: the teacher's embeddings of ``training.all_texts``.
        device: torch device.
        stsb_dir: STS-B folder for dev scores (default: the package).
        budget: seconds for all variants: no variant starts with less than 10 s left.
        report: receives ``plain_distill``, ``corpus`` token counts and one entry per variant.
        teacher: the teacher's folder (selection ``dev-mix``: the word task's reference).

    Returns:
        The chosen candidate.

    Raises:
        RuntimeError: every variant failed or none could start.
    """
    from m2v_search.train.sif import sif_weights
    from m2v_search.train.tokens import tokenize_corpus

    tokens = tokenize_corpus(init, training.all_texts)
    counts = np.bincount(tokens.ids[:tokens.offsets[len(training.texts)]], minlength=init.vocabulary_size)
    report.data.setdefault("corpus", {}).update(tokens=int(counts.sum()), vocabulary_seen=int((counts > 0).sum()))
    weights = sif_weights(counts, recipe.fit.sif_coefficient) if any(
        v.sif_in_pooling for v in recipe.variants) else None
    selection = _selection_score(recipe, stsb_dir, init, teacher, device)
    if recipe.selection in ("stsb-dev", "dev-mix"):
        report.data["plain_distill"] = {recipe.selection.replace("-", "_"): selection(init, None)}
    entries: dict[str, Any] = report.data.setdefault("variants", {})
    best: Candidate | None = None
    started = time.perf_counter()
    for variant in recipe.variants:
        left = None if budget is None else budget - (time.perf_counter() - started)
        if left is not None and left < MIN_SECONDS_LEFT:
            entries[variant.name] = {"skipped": "fit budget spent"}
            logger.info("fit budget spent: variant %s not run", variant.name)
            continue
        try:
            result = fit(init, training.all_texts, targets, variant_options(recipe, variant, device, left),
                         token_weights=weights if variant.sif_in_pooling else None, tokens=tokens,
                         train_indices=training.rows(variant), validation_indices=training.validation)
        except (ValueError, RuntimeError) as error:  # keep the other variants' results
            logger.warning("variant %s failed: %r", variant.name, error)
            entries[variant.name] = {"error": repr(error)}
            report.save()
            continue
        candidates = _candidates(recipe, variant, result, training.texts, selection)
        for candidate in candidates:
            if candidate.beats(best):
                best = candidate
        entries[variant.name] = _entry(result, recipe, candidates)
        report.save()
    if best is None:
        raise RuntimeError(f"recipe {recipe.name}: no variant was fitted ({entries})")
    return best


SelectionScore = Callable[[StaticModel, "FitResult | None"], float]


def _selection_score(recipe: Recipe, stsb_dir: str | os.PathLike[str] | None, init: StaticModel,
                     teacher: str | os.PathLike[str] | None, device: str) -> SelectionScore:
    from m2v_search.distill.stsb import stsb_spearman

    if recipe.selection == "dev-mix":
        return _dev_mix_score(init, teacher, device, stsb_dir)

    def score(model: StaticModel, result: FitResult | None) -> float:
        if recipe.selection == "stsb-dev":
            return stsb_spearman(model, "dev", folder=stsb_dir)
        return float("nan") if result is None else result.best_validation

    return score


def _dev_mix_score(init: StaticModel, teacher: str | os.PathLike[str] | None, device: str,
                   stsb_dir: str | os.PathLike[str] | None) -> SelectionScore:
    """The mean of the dev tasks (``m2v_search.train.dev_tasks``; STS-B dev from ``stsb_dir`` or
    the installed package), the teacher as the word task's reference, held-out words drawn from ``init``'s vocabulary."""
    from m2v_search.train import dev_tasks
    from m2v_search.train.featurize import Teacher

    if teacher is None:
        raise ValueError("selection 'dev-mix' needs the teacher's folder (the word task's reference)")
    data = dev_tasks.load_dev_data(Teacher(teacher, device=device).encode, list(init.tokens), stsb_dir=stsb_dir)

    def score(model: StaticModel, result: FitResult | None) -> float:
        return dev_tasks.combined_score(dev_tasks.evaluate(model.encode, data))

    return score


def _candidates(recipe: Recipe, variant: VariantSpec, result: FitResult, texts: list[str], selection: SelectionScore
                ) -> list[Candidate]:
    from m2v_search.train.whiten import whiten

    candidates = [Candidate(variant.name, variant, result.model, result, False, selection(result.model, result))]
    if recipe.post_whiten:
        whitened = whiten(result.model, texts)
        candidates.append(Candidate(variant.name + ", post-whiten", variant, whitened, result, True,
                                    selection(whitened, result)))
    logger.info("variant %s: held-out %.4f -> %.4f (epoch %d), %s, %.1fs", variant.name, result.initial_validation,
                result.best_validation, result.best_epoch,
                ", ".join(f"{c.name} {recipe.selection} {c.score:.4g}" for c in candidates), result.seconds)
    return candidates


def _entry(result: FitResult, recipe: Recipe, candidates: list[Candidate]) -> dict[str, Any]:
    scores = {candidate.name: candidate.score for candidate in candidates}
    return {"best_validation": result.best_validation, "initial_validation": result.initial_validation,
            "best_epoch": result.best_epoch, "epochs_run": len(result.history) - 1, "fit_seconds": result.seconds,
            "history": result.history, "selection": recipe.selection, "candidates": scores}
