"""Experiment (issue 16): the similarity term (``m2v_search.train.similarity``) on a starting model,
over a grid of anchor weights, learning rates and seeds, judged on the dev tasks (which choose)
and STS-B test (reported only).

    HF_HUB_OFFLINE=1 python benchmarks/similarity_term.py --start m2v-base-v1.1 \\
        --teacher FOLDER_OF_all-mpnet-base-v2 --work /tmp/similarity.work \\
        --grid 0.3:0.01 1:0.01 3:0.01 0.3:0.03 1:0.03 3:0.03 --seeds 0 1

The teacher's embeddings of the STS-B train sentences are computed once into ``--work`` (the
same cache ``m2v train`` keeps); every run uses the same pairs and cosines. Writes
benchmarks/results/similarity_term.md, .json and .png (STS-B test against the dev mix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_line  # noqa: E402

KEYS = ["stsb_test", "stsb_dev", "word_agreement", "gcide_headword", "docstring", "combined"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="m2v-base-v1.1", help="starting model (name or folder)")
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's local folder")
    parser.add_argument("--work", type=Path, required=True, help="folder for the teacher's cached embeddings")
    parser.add_argument("--grid", nargs="+", default=["0.3:0.01", "1:0.01", "3:0.01", "0.3:0.03", "1:0.03", "3:0.03"],
                        help="ANCHOR_WEIGHT:LEARNING_RATE per setting")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--teacher-dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--results-name", default="similarity_term")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from common import dev_task_scorer

    from m2v_search import StaticModel
    from m2v_search.train.recipe import SimilaritySpec
    from m2v_search.train.similarity import SimilarityOptions, similarity_finetune
    from m2v_search.train.terms import similarity_inputs

    start = StaticModel.from_pretrained(args.start)
    first, second, cosines = similarity_inputs(start, SimilaritySpec(), args.teacher, args.work,
                                               teacher_dtype=args.teacher_dtype)
    print(f"{len(first)} pairs", file=sys.stderr, flush=True)
    _, _, scores_of = dev_task_scorer(list(start.tokens))
    rows = {f"start ({args.start})": {"scores": scores_of(start)}}
    for setting in args.grid:
        anchor, learning_rate = (float(x) for x in setting.split(":"))
        for seed in args.seeds:
            options = SimilarityOptions(anchor_weight=anchor, learning_rate=learning_rate, seed=seed)
            tuned, report = similarity_finetune(start, first, second, cosines, options)
            name = f"anchor {anchor:g}, lr {learning_rate:g}, seed {seed}"
            rows[name] = {"scores": scores_of(tuned), "best_epoch": report["best_epoch"],
                          "held_out": report["held_out_spearman_best"], "seconds": report["seconds"]}
            print(name, {k: round(rows[name]["scores"][k], 2) for k in KEYS}, file=sys.stderr, flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_line(), "start": args.start,
              "teacher": args.teacher.name, "pairs": len(first), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results_name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    markdown = render(result)
    (RESULTS / f"{args.results_name}.md").write_text(markdown, encoding="utf-8")
    plot(result, RESULTS / f"{args.results_name}.png")
    print(markdown)
    return 0


def render(result: dict) -> str:
    lines = [f"# The similarity term on {result['start']} (issue 16)", "",
             f"{result['machine']} (run {result['date']}). {result['pairs']} STS-B train sentence pairs (their pairing "
             f"only; human scores never read), the teacher {result['teacher']}'s cosines as targets. Dev tasks "
             "choose (combined = their mean); STS-B test is reported, never used to choose.", "",
             "| run | STS-B test | STS-B dev | words | GCIDE headword | docstrings | combined | best epoch | "
             "held-out Spearman vs teacher |", "|---|" + "---:|" * 8]
    for name, row in result["rows"].items():
        s = row["scores"]
        lines.append(f"| {name} | " + " | ".join(f"{s[k]:.2f}" for k in KEYS)
                     + f" | {row.get('best_epoch', '')} | {row.get('held_out', '')} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, row in result["rows"].items():
        s = row["scores"]
        axis.scatter(s["combined"], s["stsb_test"], color="tab:gray" if name.startswith("start") else "tab:blue")
        axis.annotate(name.replace(", seed", "\nseed"), (s["combined"], s["stsb_test"]), fontsize=6)
    axis.set_xlabel("combined dev score (chooses)")
    axis.set_ylabel("STS-B test Spearman x100 (reported)")
    axis.set_title(f"similarity term on {result['start']}: {result['date']}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
