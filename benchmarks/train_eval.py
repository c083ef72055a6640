"""Evaluations for trained static models (issue 8): STS-B and a GCIDE definition retrieval task.

The evaluations live in the package (``m2v_search.train.evaluation``, ``m2v_search.distill.stsb``),
shared with the recipe runner; this script prints them as a table.

Run ``python benchmarks/train_eval.py MODEL_FOLDER [--teacher FOLDER]`` to print a markdown table.
"""

from __future__ import annotations

import argparse
import os

from m2v_search.distill.stsb import stsb_spearman
from m2v_search.train.evaluation import Encoder, gcide_pairs, retrieval_scores, static_encoder


def sts_spearman(encode: Encoder, split: str = "test", folder: str | os.PathLike[str] | None = None) -> float:
    """Cosine Spearman x100 on an STS-B split ("dev" or "test")."""
    if split not in ("dev", "test"):
        raise ValueError(f"split must be dev or test, got {split!r}")
    return stsb_spearman(encode, split, folder=folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="static model folders (or m2v-base)")
    parser.add_argument("--teacher", help="also evaluate this Sentence Transformer folder")
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    args = parser.parse_args(argv)
    from m2v_search import StaticModel

    queries, documents = gcide_pairs()
    rows = []
    encoders: list[tuple[str, Encoder]] = [(m, static_encoder(StaticModel.from_pretrained(m))) for m in args.models]
    if args.teacher:
        from m2v_search.train.featurize import Teacher

        teacher = Teacher(args.teacher)
        encoders.append((f"teacher {args.teacher}", teacher.encode))
    for name, encode in encoders:
        retrieval = retrieval_scores(encode, queries, documents)
        rows.append(f"| {name} | {sts_spearman(encode, args.split):.2f} | {retrieval['mrr@10']:.2f} | "
                    f"{retrieval['recall@10']:.2f} |")
    print(f"| model | STS-B {args.split} | GCIDE def->def MRR@10 | recall@10 |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
