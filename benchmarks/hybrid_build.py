"""What the lexical part costs a build: `m2v-index build` with and without it, side by side.

Issue 15's target: a default build (dense + the BM25 lexical part) takes at most 1.5x the
dense-only build (`--no-lexical`). Both builds index the same 171,933 GCIDE definitions from
a JSONL file with the bundled model into a flat index, each run in its own process, the two
kinds alternating (dense, default, dense, default, ...) so that a change in the machine's load
touches both; the ratio is taken between medians.

    HF_HUB_OFFLINE=1 python benchmarks/hybrid_build.py [--runs 5] [--limit N] [--index flat]

Writes benchmarks/results/hybrid_build.md, .json (hybrid_build_KIND.* for another --index) and
hybrid_build.png (every kind measured).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, gcide_definitions, machine_line, write_report  # noqa: E402

KINDS = {"dense only (--no-lexical)": ["--no-lexical"], "default (dense + BM25)": []}


def one_build(corpus: Path, output: Path, flags: list[str], kind: str) -> dict[str, float]:
    """One `m2v-index build` in its own process: its own timer, the wall time and its peak memory."""
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "m2v_search.cli", "index", "build", str(corpus), "-o", str(output),
               "--index", kind, "--quiet", *flags]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()  # small: one JSON line, no progress bar
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr.decode(errors='replace')}")
    report = json.loads(stdout)
    size = sum(f.stat().st_size for f in output.iterdir() if f.is_file())
    return {"seconds": report["seconds"], "wall": wall, "peak_mib": usage.ru_maxrss / 1024,
            "size_mib": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="builds of each kind")
    parser.add_argument("--limit", type=int, default=None, help="index only the first N definitions")
    parser.add_argument("--plot-only", action="store_true", help="redraw hybrid_build.png from the saved JSON files")
    parser.add_argument("--index", default="flat", help="index kind of both builds (default flat; auto picks "
                                                        "binary codes for this corpus)")
    args = parser.parse_args()
    if args.plot_only:
        plot()
        return
    texts = gcide_definitions(args.limit)
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="m2v-hybrid-build-") as folder:
        corpus = Path(folder) / "corpus.jsonl"
        with corpus.open("w", encoding="utf-8") as out:
            for number, text in enumerate(texts):
                out.write(json.dumps({"id": f"g{number}", "text": text}) + "\n")
        for run in range(args.runs):
            for kind, flags in KINDS.items():
                runs[kind].append(one_build(corpus, Path(folder) / "index", flags, args.index))
                print(f"run {run + 1}/{args.runs} {kind}: {runs[kind][-1]['seconds']:.2f} s", file=sys.stderr)
    medians = {kind: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for kind, rows in runs.items()}
    dense, default = (medians[kind] for kind in KINDS)
    ratio = default["seconds"] / dense["seconds"]
    lines = ["# What the lexical part costs a build", "",
             f"{len(texts):,} GCIDE definitions, JSONL in, bundled model, `m2v-index build --index {args.index}`, "
             f"each build in its own process, the two kinds alternating, {args.runs} runs each, medians. "
             f"{machine_line()}", "",
             "| build | seconds (build's own timer) | wall incl. start-up (s) | peak memory (MiB) | on disk (MiB) |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {kind} | {m['seconds']:.2f} | {m['wall']:.2f} | {m['peak_mib']:.0f} | {m['size_mib']:.1f} |"
              for kind, m in medians.items()]
    lines += ["", f"Default build / dense-only build: **{ratio:.2f}x** (target: at most 1.5x).", "",
              "Every run (s): " + "; ".join(f"{kind}: " + ", ".join(f"{r['seconds']:.2f}" for r in rows)
                                           for kind, rows in runs.items())]
    name = "hybrid_build" if args.index == "flat" else f"hybrid_build_{args.index}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"runs": runs, "medians": medians, "ratio": ratio}, indent=1),
                                          encoding="utf-8")
    write_report(name, "\n".join(lines) + "\n")
    plot()
    print(json.dumps({"ratio": round(ratio, 3), **{kind: round(m["seconds"], 3) for kind, m in medians.items()}}))


def plot() -> None:
    """hybrid_build.png: median build seconds, dense only against the default, for each index kind
    measured (every hybrid_build*.json under results/)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {}
    for path in sorted(RESULTS.glob("hybrid_build*.json")):
        kind = path.stem.removeprefix("hybrid_build").lstrip("_") or "flat"
        measured[kind] = json.loads(path.read_text(encoding="utf-8"))["medians"]
    if not measured:
        return
    figure, axis = plt.subplots(figsize=(6.4, 3.4))
    width = 0.38
    for offset, (label, color) in enumerate(zip(KINDS, ("#999999", "#2a7ab9"))):
        values = [measured[kind][label]["seconds"] for kind in measured]
        positions = [i + (offset - 0.5) * width for i in range(len(measured))]
        axis.bar(positions, values, width, label=label, color=color)
        for x, value in zip(positions, values):
            axis.text(x, value, f"{value:.2f}", ha="center", va="bottom", fontsize=9)
    axis.set_xticks(range(len(measured)), [f"--index {kind}" for kind in measured])
    axis.set_ylabel("build seconds (median)")
    axis.set_ylim(0, 1.3 * max(m[label]["seconds"] for m in measured.values() for label in KINDS))
    axis.legend(fontsize=9, loc="upper center", ncol=2)
    axis.set_title(f"m2v-index build of the GCIDE definitions, medians ({time.strftime('%Y-%m-%d')})", fontsize=10)
    figure.tight_layout()
    figure.savefig(RESULTS / "hybrid_build.png", dpi=120)


if __name__ == "__main__":
    main()
