"""``m2v train``: fit a static model to a teacher's sentence embeddings over a corpus, or rebuild
a model from its recipe.

    m2v train TEACHER --corpus FILE -o OUT [--init MODEL] [--work-dir DIR] [--loss cosine] ...
    m2v train --recipe NAME|FILE -o OUT [TEACHER] [--corpus FILE] [--variants A,B] [--max-texts N] ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from m2v_search.cli.exit_codes import EXIT_OK, UsageError
from m2v_search.cli.groups import M2V
from m2v_search.cli.options import (
    bounded_int,
    output_folder,
    path_of_kind,
    positive_float,
    positive_int,
    sif_coefficient,
)
from m2v_search.errors import InvalidInputError, ModelLoadError

# Settings of a plain fit: a recipe sets them itself, so they are refused with --recipe. The
# parser's defaults are None (so a given flag can be told from an absent one); these apply.
PLAIN_DEFAULTS: dict[str, Any] = {
    "loss": "cosine", "sif_coefficient": None, "no_whiten": False, "epochs": 30, "batch_size": 1024,
    "learning_rate": 3e-3, "patience": 3, "max_steps": None, "quantize_to": "float16",
}
# Settings only a recipe run takes.
RECIPE_ONLY = ("variants", "max_texts", "fit_budget", "stsb_dir", "gcide_pairs", "similarity_teacher", "report")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teacher", nargs="?", default=None,
                        help="teacher: a local Sentence Transformer folder (required without --recipe; "
                             "with --recipe, default: the recipe's teacher package)")
    parser.add_argument("--recipe", default=None, metavar="NAME|FILE",
                        help="rebuild a model from a recipe: a shipped name ('default' = m2v-base) or a recipe "
                             "JSON file; the recipe sets the loss, epochs, whitening and the rest")
    parser.add_argument("--corpus", type=path_of_kind("file", "the corpus"), default=None,
                        help="training texts, one per line (UTF-8; .gz or .xz read as such); required without "
                             "--recipe; with --recipe, default: built from the recipe's sources")
    parser.add_argument("-o", "--output", required=True, type=output_folder,
                        help="folder to write the trained model to")
    parser.add_argument("--init", default=None,
                        help="starting static model (folder or name); default: distil the teacher (256 dims, "
                             "or as the recipe says)")
    parser.add_argument("--work-dir", type=path_of_kind("folder", "--work-dir"), default=None,
                        help="folder for the teacher features (default: OUTPUT.work); rerun to resume")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    parser.add_argument("--name", help="model name for the model card (default: the output folder's name, "
                                       "or the recipe's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (also: --quiet)")
    plain = parser.add_argument_group("plain training (without --recipe; a recipe sets these itself)")
    plain.add_argument("--loss", choices=("cosine", "contrastive"), default=None, help="default cosine")
    plain.add_argument("--sif-coefficient", type=sif_coefficient, default=None,
                       help="SIF a from the corpus's token frequencies used in pooling, or 'none' (default)")
    plain.add_argument("--no-whiten", action="store_true", default=None,
                       help="skip whitening the outputs over the corpus")
    plain.add_argument("--epochs", type=positive_int, default=None, help="default 30")
    plain.add_argument("--batch-size", type=bounded_int(2), default=None, help="default 1024 (at least 2)")
    plain.add_argument("--learning-rate", type=positive_float, default=None, help="default 3e-3")
    plain.add_argument("--patience", type=positive_int, default=None,
                       help="epochs without held-out progress before stopping (default 3)")
    plain.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimiser steps")
    plain.add_argument("--quantize-to", choices=("float32", "float16", "int8"), default=None,
                       help="default float16")
    recipe = parser.add_argument_group("recipe runs (with --recipe)")
    recipe.add_argument("--teacher-dtype", choices=("auto", "float32", "float16", "bfloat16"), default="auto",
                        help="compute type of the teacher pass (default: float16 on cuda, else float32; "
                             "bfloat16 is ~2x faster on CPUs with AVX512-BF16 or AMX)")
    recipe.add_argument("--variants", default=None, help="comma-separated names of the recipe's variants to fit")
    recipe.add_argument("--max-texts", type=bounded_int(20), default=None,
                        help="use only the first N corpus texts (quick trials; at least 20)")
    recipe.add_argument("--fit-budget", type=positive_float, default=None,
                        help="seconds for all variants (default: the recipe's)")
    recipe.add_argument("--stsb-dir", type=Path, default=None,
                        help="folder of sts-{train,dev,test}.csv (default: the STS-B package)")
    recipe.add_argument("--gcide-pairs", type=Path, default=None,
                        help="GCIDE pairs JSON (default: the GCIDE package)")
    recipe.add_argument("--similarity-teacher", type=Path, default=None,
                        help="folder of the similarity term's teacher (default: the one the recipe names)")
    recipe.add_argument("--report", type=path_of_kind("file", "the report"), default=None,
                        help="JSON report (default: WORK_DIR/train_report.json)")


def checked_mode(args: argparse.Namespace) -> None:
    """Refuse flags that do not belong to the chosen mode, and fill in the plain-training defaults.

    Raises:
        UsageError: a plain-training flag with ``--recipe``, a recipe flag without it, or no
            teacher or ``--corpus`` without ``--recipe``.
    """
    if args.recipe is not None:
        given = [_flag(dest) for dest in PLAIN_DEFAULTS if getattr(args, dest) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: set by the recipe with --recipe; edit a copy of its JSON file "
                             f"and pass its path to --recipe instead")
        return
    given = [_flag(dest) for dest in RECIPE_ONLY if getattr(args, dest) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: only with --recipe")
    missing = [what for what, value in (("TEACHER", args.teacher), ("--corpus", args.corpus)) if value is None]
    if missing:
        raise UsageError(f"{' and '.join(missing)} required without --recipe")
    for dest, default in PLAIN_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)


@M2V.command("train", help="train a static model on a teacher's sentence embeddings, or rebuild one from a recipe",
             arguments=_arguments,
             description="Featurize a corpus with the teacher (resumable shards in --work-dir), fit the static "
                         "table of --init to the teacher's embeddings, whiten, and save (Model2Vec layout, "
                         "model card). With --recipe, rebuild a model from a recipe (e.g. 'default', the shipped "
                         "m2v-base): it checks first for every piece of data it needs and lists what is missing "
                         "with how to get it (exit 3).")
def run_train(args: argparse.Namespace) -> int:
    """Run ``m2v train``."""
    checked_mode(args)
    if args.no_progress or args.quiet:  # transformers draws its own "Loading weights" bar for every teacher load
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    if args.recipe is not None:
        return _run_recipe(args)
    from m2v_search.train.corpus import read_corpus
    from m2v_search.train.pipeline import train_static_model

    show_progress = not (args.no_progress or args.quiet)
    if not Path(args.teacher).is_dir():
        raise ModelLoadError(f"teacher folder {args.teacher} does not exist")
    if not args.corpus.is_file():
        what = "is a folder, not a file" if args.corpus.is_dir() else "does not exist"
        raise InvalidInputError(f"corpus file {args.corpus} {what}")
    texts = read_corpus(args.corpus)
    if not texts:
        raise InvalidInputError(f"corpus file {args.corpus} holds no text")
    if args.init is None:
        from m2v_search.distill import distill

        init = distill(args.teacher, pca_dims=256, device=args.device, show_progress_bar=show_progress)
    else:
        init = args.init
    model, report = train_static_model(
        texts, args.teacher, init, args.work_dir or Path(f"{args.output}.work"), loss=args.loss,
        sif_coefficient=args.sif_coefficient, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, patience=args.patience, max_steps=args.max_steps, device=args.device,
        quantize_to=args.quantize_to, post_whiten=not args.no_whiten, show_progress_bar=show_progress,
    )
    model.save_pretrained(args.output, model_name=args.name)
    print(f"{args.output}: {model.vocabulary_size} tokens x {model.dim} dims ({model.embedding_dtype}); "
          f"held-out pair Spearman {report['initial_validation']:.4f} -> {report['best_validation']:.4f}; "
          f"{report['seconds']:.0f}s")
    print(f"featurize {report['featurize_seconds']:.0f}s, fit {report['fit_seconds']:.0f}s", file=sys.stderr)
    return EXIT_OK


def _run_recipe(args: argparse.Namespace) -> int:
    """``m2v train --recipe``: progress is logged (INFO, stderr); the final variant and its scores on stdout."""
    from m2v_search.train.runner import run_recipe

    variants = [name.strip() for name in args.variants.split(",") if name.strip()] if args.variants else None
    report = run_recipe(
        args.recipe, args.output, teacher=args.teacher, corpus=args.corpus, init=args.init,
        max_texts=args.max_texts, variants=variants, work_dir=args.work_dir, report_path=args.report,
        stsb_dir=args.stsb_dir, gcide_pairs=args.gcide_pairs, similarity_teacher=args.similarity_teacher,
        fit_budget=args.fit_budget, model_name=args.name,
        device=args.device, teacher_dtype=args.teacher_dtype, show_progress_bar=not (args.no_progress or args.quiet),
    )
    final = report["final"]
    scores = "; ".join(f"{name}: " + ", ".join(f"{metric} {value:.4f}" for metric, value in figures.items())
                       for name, figures in final["scores"].items())
    print(f"{args.output}: variant {final['variant']}; {scores}")
    return EXIT_OK
