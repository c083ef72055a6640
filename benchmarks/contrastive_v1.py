"""Experiment (issue 16): the shipped m2v-base (v1) tuned on stdlib docstring summary -> body pairs
of the *training* modules with the contrastive term and its token anchor
(``m2v_search.train.contrastive``), judged on the dev tasks and STS-B test against v1.

    HF_HUB_OFFLINE=1 nice -n 19 python benchmarks/contrastive_v1.py --runs table:1 table:10 map:1 [--budget 120]

Writes benchmarks/results/contrastive_v1.md and .json. CPU, one thread. The tuned models are
written under --output (not shipped) when given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, dev_task_scorer  # noqa: E402

KEYS = ["stsb_test", "stsb_dev", "word_agreement", "word_neighbours@10", "gcide_headword", "docstring",
        "docstring_recall@10", "combined"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["table:1", "table:10", "map:1"],
                        help="TRAIN:ANCHOR_WEIGHT per run, TRAIN = table or map (ContrastiveOptions.train)")
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per run")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="relative to the table's scale")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=3, help="epochs without a better held-out score")
    parser.add_argument("--results-name", default="contrastive_v1", help="results/NAME.md and .json")
    parser.add_argument("--output", type=Path, default=None, help="save each tuned model under this folder")
    parser.add_argument("--pairs", nargs="+", default=["summary-body"], choices=["summary-body", "paragraphs", "names"],
                        help="training pairs (all from training modules): summary -> body (the default), "
                             "summary -> each later paragraph, object name -> summary")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    import torch

    from m2v_search import StaticModel
    from m2v_search.train import dev_tasks
    from m2v_search.train.contrastive import ContrastiveOptions, contrastive_finetune
    from m2v_search.train.pairs import training_pairs

    torch.set_num_threads(1)
    v1 = StaticModel.from_pretrained()
    _, data, scores_of = dev_task_scorer(list(v1.tokens))

    queries, documents, groups = training_pairs(args.pairs)
    print(f"{len(queries)} training pairs ({', '.join(args.pairs)})", file=sys.stderr, flush=True)
    rows = {"v1 (shipped m2v-base)": {"scores": scores_of(v1)}}
    for run in args.runs:
        train, _, anchor_text = run.partition(":")
        anchor = float(anchor_text)
        options = ContrastiveOptions(anchor_weight=anchor, time_budget=args.budget, epochs=args.epochs,
                                     learning_rate=args.learning_rate, train=train, patience=args.patience)
        print(f"run {run}", file=sys.stderr, flush=True)
        tuned, report = contrastive_finetune(v1, queries, documents, groups, options)
        name = f"v1 + contrastive ({train}, anchor {anchor:g}, lr {args.learning_rate:g})"
        rows[name] = {"scores": scores_of(tuned), "report": report}
        if args.output is not None:
            tuned.save_pretrained(args.output / f"{train}-anchor-{anchor:g}")
    chosen = dev_tasks.select_candidate({k: v["scores"] for k, v in rows.items()},
                                        rows["v1 (shipped m2v-base)"]["scores"])
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "train_pairs": len(queries), "pair_kinds": args.pairs,
              "words": len(data.words),
              "gcide_pairs": len(data.gcide[0]), "docstring_dev_pairs": len(data.docstrings), "rows": rows,
              "selected": chosen}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results_name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    markdown = render(result)
    (RESULTS / f"{args.results_name}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


def render(result: dict) -> str:
    lines = ["# v1 + contrastive docstring term with a token anchor (issue 16, first experiment)", "",
             f"{result['date']}. {result['train_pairs']} training pairs ({', '.join(result.get('pair_kinds', ['summary-body']))}) "
             "from the training modules (1 in 6 "
             "modules of those held out for early stopping); judged on the dev tasks "
             f"({result['words']} held-out words vs the MiniLM teacher, {result['gcide_pairs']} GCIDE headwords, "
             f"{result['docstring_dev_pairs']} docstring pairs of the dev modules, STS-B dev) and STS-B test. "
             f"`select_candidate` (tolerance 0.5 points on every task against v1) keeps: **{result['selected']}**.",
             "", "| model | " + " | ".join(KEYS) + " | epochs (best/run) | train s |",
             "|---|" + "---:|" * (len(KEYS) + 2)]
    for name, row in result["rows"].items():
        report = row.get("report")
        extra = f"{report['best_epoch']}/{report['epochs_run']} | {report['seconds']:.0f}" if report else " | "
        lines.append(f"| {name} | " + " | ".join(f"{row['scores'][k]:.2f}" for k in KEYS) + f" | {extra} |")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    raise SystemExit(main())
