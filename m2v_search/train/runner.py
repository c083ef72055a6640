"""Run a training recipe end to end: ``run_recipe("default", "out/m2v-base")`` rebuilds m2v-base.

Steps (each timed in the report, which is rewritten after every step):

1. data: find the teacher, corpus sources, STS-B and GCIDE, or fail at once saying how to
   get what is missing (``m2v_search.train.recipe_data``);
2. corpus: read the given file, or build it from the recipe's sources into the work folder
   (kept there, so a rerun resumes with the same texts);
3. init: the plain distill of the recipe (``m2v_search.train.init_model``), or a given model;
4. split, crops, teacher features (resumable shards in the work folder);
5. fit every variant, each also whitened over the corpus when the recipe says so, and keep
   the best on the recipe's selection score (STS-B dev or the held-out corpus; never test);
6. with a ``retrieval`` section: tune the chosen model on query -> document pairs (the
   contrastive term with its token anchor); with a ``similarity`` section: then tune it to
   follow a teacher's cosines on sentence pairs; with a ``word_term`` section: then on pairs of
   vocabulary words (``m2v_search.train.terms``);
7. evaluate teacher, init and result, write the recipe and the scores into the model card,
   save the model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from m2v_search.model import StaticModel
from m2v_search.train.corpus import vocabulary_words
from m2v_search.train.model_card_recipe import card_recipe, recipe_provenance
from m2v_search.train.recipe import Recipe, load_recipe
from m2v_search.train.recipe_data import RecipeData, find_recipe_data
from m2v_search.train.training_set import make_training_set
from m2v_search.train.variants import Candidate, fit_variants

logger = logging.getLogger(__name__)

CORPUS_FILE = "corpus.txt.gz"
CORPUS_SETTINGS_FILE = "corpus.recipe.json"
# Small enough that an interrupted CPU teacher pass loses minutes, not an hour; the same on
# every device, so a work folder started on a CPU can be finished on a GPU.
FEATURE_SHARD_SIZE = 10_000


def run_recipe(
    recipe: str | os.PathLike[str] | Recipe,
    output_dir: str | os.PathLike[str],
    *,
    teacher: str | os.PathLike[str] | None = None,
    corpus: str | os.PathLike[str] | None = None,
    init: str | os.PathLike[str] | StaticModel | None = None,
    max_texts: int | None = None,
    variants: Sequence[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    report_path: str | os.PathLike[str] | None = None,
    stsb_dir: str | os.PathLike[str] | None = None,
    gcide_pairs: str | os.PathLike[str] | None = None,
    similarity_teacher: str | os.PathLike[str] | None = None,
    fit_budget: float | None = None,
    model_name: str | None = None,
    device: str = "auto",
    teacher_dtype: str = "auto",
    show_progress_bar: bool = True,
) -> dict[str, Any]:
    """Rebuild a model from its recipe (``m2v train --recipe NAME``).

    Args:
        recipe: a shipped recipe name ("default" is m2v-base), a recipe JSON file, or a ``Recipe``.
        output_dir: the folder the model is saved to.
        teacher: the teacher's local folder (default: the recipe's teacher package).
        corpus: a corpus file, one text per line (default: built from the recipe's sources).
        init: a starting static model (folder, name or model) instead of the recipe's distill.
        max_texts: use only the first texts of the corpus (quick trials).
        variants: fit only these variants of the recipe (by name).
        work_dir: corpus, plain distill and teacher features (default: ``OUTPUT_DIR.work``);
            a rerun with the same work folder resumes the teacher pass.
        report_path: the JSON report (default: ``WORK_DIR/train_report.json``).
        stsb_dir: a folder of ``sts-{train,dev,test}.csv`` (default: the STS-B package).
        gcide_pairs: a GCIDE pairs JSON file (default: the GCIDE package).
        similarity_teacher: the similarity term's teacher folder (default: the one the recipe's
            ``similarity`` section names, else the teacher).
        fit_budget: seconds for all variants (default: the recipe's ``fit.time_budget``).
        model_name: the name in the model card (default: the recipe's ``output.model_name``).
        device: "auto" (cuda, then mps, then cpu) or a torch device.
        teacher_dtype: the teacher pass's compute type: "auto" (float16 on cuda, else float32),
            "float32", "float16" or "bfloat16" (about 2x faster on CPUs with AVX512-BF16 or AMX;
            all-mpnet-base-v2's vectors agree with float32 at cosine >= 0.9999).
        show_progress_bar: tqdm bars on stderr.

    Returns:
        The report: the recipe, each step's figures and seconds, every variant's scores, the
        final variant and its evaluation.

    Raises:
        RecipeError: unknown recipe or variant, invalid recipe file.
        MissingRecipeDataError: data the recipe needs is missing (the message says how to get it).
    """
    from m2v_search.train.featurize import resolve_device

    started = time.perf_counter()
    recipe = load_recipe(recipe)
    provenance = recipe_provenance(recipe, corpus=corpus, init=init, max_texts=max_texts, variants=variants)
    if variants:
        recipe = recipe.with_variants(list(variants))
    if model_name:
        recipe = dataclasses.replace(recipe, output=dataclasses.replace(recipe.output, model_name=model_name))
    if max_texts is not None and max_texts < 20:
        raise ValueError(f"max_texts must be >= 20, got {max_texts}")
    data = find_recipe_data(recipe, teacher=teacher, corpus=corpus, stsb_dir=stsb_dir, gcide_pairs=gcide_pairs,
                            similarity_teacher=similarity_teacher)
    output = Path(output_dir)
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    report = _Report(Path(report_path) if report_path else work / "train_report.json")
    device = resolve_device(device)
    report.update(recipe=recipe.to_dict(), provenance=provenance, device=device, host=platform.node(),
                  output=str(output))

    texts, sources = _corpus_texts(recipe, data, work, max_texts)
    report.update(corpus={"texts": len(texts), "sources": sources})
    logger.info("corpus: %d texts", len(texts))
    init_model = _init_model(recipe, data, init, texts, work, device, show_progress_bar, report)
    words = vocabulary_words(init_model.tokens, recipe.corpus.vocabulary_words)
    training = make_training_set(texts, recipe.corpus, _in_domain_sentences(recipe, data), words)
    report.update_corpus(crops=training.crop_count, held_out=len(training.validation), vocabulary_words=len(words))
    targets = _teacher_features(training.all_texts, data.teacher, work, device, teacher_dtype, show_progress_bar,
                                report)

    budget = fit_budget if fit_budget is not None else recipe.fit.time_budget
    best = fit_variants(recipe, init_model, training, targets, device=device, stsb_dir=data.stsb_dir,
                        budget=budget, report=report, teacher=data.teacher)
    best = _terms(recipe, best, data, work, device, teacher_dtype, show_progress_bar, report)
    model = _final_model(best, init_model, recipe)
    scores = _evaluate(recipe, data, device, {"plain distill": init_model, "trained": model})
    report.update(final={"variant": best.name, "scores": scores})
    model.config["recipe"] = card_recipe(recipe, best, init_model, training, report.data)
    model.save_pretrained(output, model_name=recipe.output.model_name)
    report.update(seconds=time.perf_counter() - started)
    logger.info("saved %s in %.0fs", output, report.data["seconds"])
    return report.data


class _Report:
    """The run's report, rewritten atomically after every step."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self.save()

    def update_corpus(self, **values: Any) -> None:
        self.data.setdefault("corpus", {}).update(values)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(partial, self.path)


def _corpus_texts(recipe: Recipe, data: RecipeData, work: Path, max_texts: int | None
                  ) -> tuple[list[str], dict[str, Any]]:
    """The corpus texts and their sources (from the manifest beside the file, when there is one)."""
    from m2v_search.train.corpus import build_corpus, read_corpus

    if data.corpus is not None:
        path = data.corpus
    else:
        path = work / CORPUS_FILE
        settings_path = work / CORPUS_SETTINGS_FILE
        settings = json.loads(json.dumps(dataclasses.asdict(recipe.corpus)))
        if not path.is_file() or not settings_path.is_file() or json.loads(settings_path.read_text()) != settings:
            logger.info("building the corpus from %s", ", ".join(recipe.corpus.sources))
            build_corpus(path, recipe.corpus.sources, max_texts_per_source=recipe.corpus.max_texts_per_source,
                         seed=recipe.corpus.seed, stsb_dir=data.stsb_dir, skip_missing=False)
            settings_path.write_text(json.dumps(settings) + "\n", encoding="utf-8")
    texts = read_corpus(path)
    if max_texts is not None:
        texts = texts[:max_texts]
    if len(texts) < 20:
        raise ValueError(f"corpus {path} holds {len(texts)} texts; at least 20 are needed")
    manifest = Path(str(path) + ".json")
    sources = json.loads(manifest.read_text(encoding="utf-8")).get("sources", {}) if manifest.is_file() else {}
    return texts, sources or {path.name: {"texts": len(texts), "licence": "as given (corpus file)"}}


def _init_model(recipe: Recipe, data: RecipeData, init: str | os.PathLike[str] | StaticModel | None,
                texts: list[str], work: Path, device: str, show_progress_bar: bool, report: _Report) -> StaticModel:
    from m2v_search.train.init_model import distill_init

    if isinstance(init, StaticModel):
        report.update(init="a StaticModel given to run_recipe")
        return init
    if init is not None:
        report.update(init=str(init))
        return StaticModel.from_pretrained(init)
    started = time.perf_counter()
    model = distill_init(recipe.init, data.teacher, corpus=texts, device=device, show_progress_bar=show_progress_bar)
    _synchronize(device)
    model.save_pretrained(work / "plain-distill", model_name="plain-distill")
    report.update(init=f"recipe init {dataclasses.asdict(recipe.init)}", distill_seconds=time.perf_counter() - started)
    logger.info("plain distill on %s: %.1fs", device, report.data["distill_seconds"])
    return model


def _in_domain_sentences(recipe: Recipe, data: RecipeData) -> set[str]:
    from m2v_search.train.corpus import stsb_train_sentences

    if not any(variant.in_domain_repeat > 1 for variant in recipe.variants):
        return set()
    return set(stsb_train_sentences(data.stsb_dir))


def _teacher_features(texts: list[str], teacher: Path, work: Path, device: str, dtype: str,
                      show_progress_bar: bool, report: _Report) -> np.ndarray:
    from m2v_search.train.featurize import PROGRESS_FILE, featurize, load_features

    started = time.perf_counter()
    folder = featurize(texts, teacher, work / "features", device=device, dtype=dtype, shard_size=FEATURE_SHARD_SIZE,
                       batch_size=1024 if device.startswith("cuda") else 256, show_progress_bar=show_progress_bar)
    progress = json.loads((folder / PROGRESS_FILE).read_text(encoding="utf-8"))
    report.update(featurize_seconds=time.perf_counter() - started, teacher_seconds_all_runs=progress["seconds"],
                  teacher_dtypes=sorted(set(progress.get("dtypes", {}).values())))
    logger.info("teacher features of %d texts: %.1fs (%.1fs in all runs of this work folder)", len(texts),
                report.data["featurize_seconds"], progress["seconds"])
    return load_features(folder)


def _terms(recipe: Recipe, best: Candidate, data: RecipeData, work: Path, device: str, teacher_dtype: str,
           show_progress_bar: bool, report: _Report) -> Candidate:
    """The chosen candidate tuned by the recipe's retrieval term, then its similarity term, then its
    word term (each only when the recipe has its section)."""
    from m2v_search.train.terms import retrieval_term, similarity_term, word_term

    model = best.model
    if recipe.retrieval is not None:
        model, summary = retrieval_term(model, recipe.retrieval)
        report.update(retrieval=summary)
    if recipe.similarity is not None:
        teacher = data.similarity_teacher or data.teacher  # find_recipe_data resolves it for a similarity section
        model, summary = similarity_term(model, recipe.similarity, teacher, work,
                                         stsb_dir=data.stsb_dir, device=device, teacher_dtype=teacher_dtype,
                                         show_progress_bar=show_progress_bar)
        report.update(similarity=summary)
    if recipe.word_term is not None:
        model, summary = word_term(model, recipe.word_term, data.teacher, work, device=device,
                                   teacher_dtype=teacher_dtype, show_progress_bar=show_progress_bar)
        report.update(word_term=summary)
    return best if model is best.model else dataclasses.replace(best, model=model)


def _final_model(best: Candidate, init: StaticModel, recipe: Recipe) -> StaticModel:
    """The chosen candidate stored as the recipe's output says (dtype, normalisation, names)."""
    from m2v_search.quantization import quantize

    table, weights = quantize(best.model.embedding, None, recipe.output.dtype, best.model.vocabulary_size)
    config = dict(best.model.config)
    for key in ("apply_pca", "sif_coefficient", "pooling"):  # the distill's settings, no longer true
        config.pop(key, None)
    config["tokenizer_name"] = recipe.teacher.name
    return StaticModel(table, best.model.tokenizer, config=config, weights=weights, normalize=recipe.output.normalize,
                       base_model_name=recipe.teacher.name, language=init.language or ["en"],
                       max_length=init.max_length)._named(recipe.output.model_name)


def _evaluate(recipe: Recipe, data: RecipeData, device: str, models: dict[str, StaticModel]
              ) -> dict[str, dict[str, float]]:
    """The recipe's evaluations of the teacher (if asked) and of ``models``."""
    from m2v_search.distill.stsb import stsb_spearman
    from m2v_search.train.evaluation import gcide_pairs, retrieval_scores, static_encoder

    encoders = {name: static_encoder(model) for name, model in models.items()}
    if recipe.evaluation.teacher:
        from m2v_search.train.featurize import Teacher

        encoders = {"teacher": Teacher(data.teacher, device=device).encode, **encoders}
    pairs = (gcide_pairs(recipe.evaluation.gcide_pairs, path=data.gcide_pairs)
             if recipe.evaluation.gcide_pairs > 0 else None)
    scores: dict[str, dict[str, float]] = {}
    for name, encode in encoders.items():
        scores[name] = {}
        if recipe.evaluation.stsb_test:
            scores[name]["stsb_test"] = stsb_spearman(encode, "test", folder=data.stsb_dir)
        if pairs is not None:
            scores[name].update(retrieval_scores(encode, *pairs))
        logger.info("%s: %s", name, scores[name])
    return scores


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
