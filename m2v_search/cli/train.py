"""``m2v train``: fit a static model to a teacher's sentence embeddings over a corpus.

    m2v train TEACHER --corpus FILE -o OUT [--init MODEL] [--work-dir DIR] [--loss cosine] ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from m2v_search.cli.exit_codes import EXIT_OK
from m2v_search.cli.groups import M2V
from m2v_search.cli.options import non_negative_int, positive_int, sif_coefficient
from m2v_search.errors import InvalidInputError, ModelLoadError


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teacher", help="teacher: a local Sentence Transformer folder")
    parser.add_argument("--corpus", required=True, type=Path,
                        help="training texts, one per line (UTF-8; .gz or .xz read as such)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder to write the trained model to")
    parser.add_argument("--init", default=None,
                        help="starting static model (folder or name); default: distil the teacher (256 dims)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="folder for the teacher features (default: OUTPUT.work); rerun to resume")
    parser.add_argument("--loss", choices=("cosine", "contrastive"), default="cosine")
    parser.add_argument("--sif-coefficient", type=sif_coefficient, default=None,
                        help="SIF a from the corpus's token frequencies used in pooling, or 'none' (default)")
    parser.add_argument("--no-whiten", action="store_true", help="skip whitening the outputs over the corpus")
    parser.add_argument("--epochs", type=positive_int, default=30)
    parser.add_argument("--batch-size", type=positive_int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--patience", type=non_negative_int, default=3,
                        help="epochs without held-out progress before stopping")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimiser steps")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    parser.add_argument("--quantize-to", choices=("float32", "float16", "int8"), default="float16")
    parser.add_argument("--name", help="model name for the model card (default: the output folder's name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (also: --quiet)")


@M2V.command("train", help="train a static model on a teacher's sentence embeddings over a corpus",
             arguments=_arguments,
             description="Featurize a corpus with the teacher (resumable shards in --work-dir), fit the static "
                         "table of --init to the teacher's embeddings, whiten, and save (Model2Vec layout, "
                         "model card).")
def run_train(args: argparse.Namespace) -> int:
    """Run ``m2v train``."""
    from m2v_search.train.corpus import read_corpus
    from m2v_search.train.pipeline import train_static_model

    show_progress = not (args.no_progress or args.quiet)
    if not Path(args.teacher).is_dir():
        raise ModelLoadError(f"teacher folder {args.teacher} does not exist")
    if not args.corpus.is_file():
        raise InvalidInputError(f"corpus file {args.corpus} does not exist")
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
