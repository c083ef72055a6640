"""End-to-end indexing: `m2v-index build` vs LangChain `FAISS.from_texts` + `Model2vecEmbeddings`.

Same model folder, same GCIDE definitions (a temporary JSONL, deleted afterwards: GPL data is
never stored), each side in its own process for its peak memory, both reading the JSONL and
saving the index to disk. Then single-query latency (p50/p99) and batch query throughput on
the saved indexes, and (``--ann``) recall@10 and latency of the HNSW, IVF and IVF-PQ (re-ranked) defaults vs flat.

    python benchmarks/index_speed.py                 # all ~172k definitions, 2 repeats
    python benchmarks/index_speed.py --texts 20000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, gcide_definitions, machine_line, peak_rss_mib, run_worker, write_report  # noqa: E402
from encode_speed import model_folder  # noqa: E402

SCRIPT = Path(__file__).resolve()
QUERIES = 300   # single-query latency sample
BATCH = 1000    # queries in the batch-throughput test


def read_jsonl(path: str) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            ids.append(row["id"])
            texts.append(row["text"])
    return ids, texts


def query_texts(path: str, count: int = BATCH) -> list[str]:
    """The first half of evenly spread stored texts (near, not equal to, documents)."""
    _, texts = read_jsonl(path)
    return [t[: max(12, len(t) // 2)] for t in texts[:: max(1, len(texts) // count)][:count]]


def latency(search, queries: list[str]) -> tuple[float, float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def worker_ours(corpus: str, model: str, out: str, index: str) -> dict:
    from m2v_search.index import VectorIndex
    from m2v_search.cli import index_main as main

    started = time.perf_counter()
    code = main(["build", corpus, "-o", out, "--model", model, "--index", index, "--quiet"])
    build_s = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"m2v-index build failed with exit code {code}")
    build_rss = peak_rss_mib()
    queries = query_texts(corpus)
    vectors = VectorIndex.open(out)
    p50, p99 = latency(lambda q: vectors.search(q, k=10), queries[:QUERIES])
    started = time.perf_counter()
    batch = vectors.search_batch(queries, k=10)
    batch_qps = len(batch) / (time.perf_counter() - started)
    return {"build_s": build_s, "peak_rss_mib": build_rss, "p50_ms": p50, "p99_ms": p99, "batch_qps": batch_qps,
            "documents": len(vectors), "factory": vectors.factory, "top1": [h[0].id for h in batch[:50]]}


def worker_langchain(corpus: str, model: str, out: str, index: str) -> dict:
    from langchain_community.embeddings import Model2vecEmbeddings
    from langchain_community.vectorstores import FAISS

    started = time.perf_counter()
    ids, texts = read_jsonl(corpus)
    store = FAISS.from_texts(texts, Model2vecEmbeddings(model), ids=ids)
    store.save_local(out)
    build_s = time.perf_counter() - started
    build_rss = peak_rss_mib()
    queries = query_texts(corpus)
    p50, p99 = latency(lambda q: store.similarity_search_with_score(q, k=10), queries[:QUERIES])
    started = time.perf_counter()  # LangChain has no batch search: embed all, then search one by one
    vectors = store.embeddings.embed_documents(queries)
    results = [store.similarity_search_with_score_by_vector(v, k=10) for v in vectors]
    batch_qps = len(results) / (time.perf_counter() - started)
    return {"build_s": build_s, "peak_rss_mib": build_rss, "p50_ms": p50, "p99_ms": p99, "batch_qps": batch_qps,
            "documents": len(store.index_to_docstore_id), "factory": "IndexFlatL2 (pickled docstore)",
            "top1": [r[0][0].id for r in results[:50]]}


def worker_recall(corpus: str, model: str, out: str, index: str) -> dict:
    """Recall@10 of an approximate index (built by m2v-index) against exact search."""
    from m2v_search.index import VectorIndex
    from m2v_search.cli import index_main as main

    flat = VectorIndex.open(Path(out) / "flat")
    queries = query_texts(corpus)
    truth = [[h.id for h in hits] for hits in flat.search_batch(queries, k=10)]
    started = time.perf_counter()
    code = main(["build", corpus, "-o", str(Path(out) / index), "--model", model, "--index", index, "--quiet"])
    build_s = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"m2v-index build --index {index} failed with exit code {code}")
    approximate = VectorIndex.open(Path(out) / index)
    found = [[h.id for h in hits] for hits in approximate.search_batch(queries, k=10)]
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
    p50, p99 = latency(lambda q: approximate.search(q, k=10), queries[:QUERIES])
    return {"build_s": build_s, "peak_rss_mib": peak_rss_mib(), "recall": recall, "p50_ms": p50, "p99_ms": p99,
            "factory": approximate.factory, "params": approximate.search_params}


WORKERS = {"ours": worker_ours, "langchain": worker_langchain, "recall": worker_recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=None, help="limit the number of definitions (default: all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model, else random 256-d)")
    parser.add_argument("--ann", action="store_true", help="also measure the HNSW, IVF and IVF-PQ defaults against flat")
    parser.add_argument("--worker", nargs=5, metavar=("KIND", "CORPUS", "MODEL", "OUT", "INDEX"))
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        print(json.dumps(WORKERS[kind](*rest)))
        return

    folder = Path(args.model) if args.model else model_folder()
    texts = gcide_definitions(args.texts)
    work = Path(tempfile.mkdtemp(prefix="m2v-index-bench-"))
    try:
        corpus = work / "gcide.jsonl"
        with open(corpus, "w", encoding="utf-8") as handle:
            for i, text in enumerate(texts):
                handle.write(json.dumps({"id": f"g{i}", "text": text}) + "\n")
        runs: dict[str, list[dict]] = {"ours": [], "langchain": []}
        for repeat in range(args.repeats):
            for side in (("ours", "langchain") if repeat % 2 == 0 else ("langchain", "ours")):
                print(f"repeat {repeat + 1}: {side}", file=sys.stderr)
                target = work / f"{side}-{repeat}"
                runs[side].append(run_worker(SCRIPT, [side, str(corpus), str(folder), str(target), "flat"]))
                print(f"  {side}: " + json.dumps({k: v for k, v in runs[side][-1].items() if k != "top1"}),
                      file=sys.stderr)
                if repeat or side == "langchain":
                    shutil.rmtree(target, ignore_errors=True)
        agreement = float(np.mean([a == b for a, b in zip(runs["ours"][0]["top1"], runs["langchain"][0]["top1"])]))
        ann = []
        if args.ann:
            (work / "ann").mkdir()
            shutil.move(str(work / "ours-0"), str(work / "ann" / "flat"))
            for kind in ("hnsw", "ivf", "ivf-pq"):
                print(f"ann: {kind}", file=sys.stderr)
                ann.append((kind, run_worker(SCRIPT, ["recall", str(corpus), str(folder), str(work / "ann"), kind])))
        report(texts, folder, args.model, runs, agreement, ann)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(texts: list[str], folder: Path, given: str | None, runs: dict, agreement: float, ann: list) -> None:
    def best(side: str, key: str, low: bool = True) -> float:
        values = [r[key] for r in runs[side]]
        return min(values) if low else max(values)

    ours_s, lc_s = best("ours", "build_s"), best("langchain", "build_s")
    ours_m, lc_m = best("ours", "peak_rss_mib"), best("langchain", "peak_rss_mib")
    from m2v_search.persistence import BUNDLED_MODELS_DIR

    if str(folder).startswith(str(BUNDLED_MODELS_DIR)):
        model_note = f"the bundled default model `{folder.name}`"
    elif given:
        model_note = f"the model folder `{folder.name}` (given with --model)"
    else:
        model_note = f"`{folder.name}` (random 256-d vectors over MiniLM's tokenizer; the bundled model did not exist yet)"
    n = len(texts)
    lines = [
        "# Index build and search: `m2v-index` vs LangChain FAISS + Model2vecEmbeddings\n",
        f"{n:,} GCIDE definitions from a JSONL file, model {model_note}, best of {len(runs['ours'])} runs per side, "
        f"each in its own process. Machine: {machine_line()} (the machine may be shared with other jobs: compare the ratios, measured in the same run).\n",
        "Build = read the JSONL, embed, index, save to disk (`m2v-index build --index flat`; LangChain "
        "`FAISS.from_texts` + `save_local`). Latency = one `search(k=10)` call including query encoding, "
        f"{QUERIES} queries. Batch = {BATCH} queries at once (`search_batch`; LangChain has no batch search, "
        "so it embeds all queries in one call and searches one by one). Queries are the first half of stored "
        "definitions.\n",
        "| | m2v-index | LangChain FAISS | ratio |",
        "|---|---|---|---|",
        f"| build time (s) | {ours_s:.2f} | {lc_s:.2f} | **{lc_s / ours_s:.1f}x faster** |",
        f"| build throughput (texts/s) | {n / ours_s:,.0f} | {n / lc_s:,.0f} | |",
        f"| peak memory, build process (MiB) | {ours_m:,.0f} | {lc_m:,.0f} | **{lc_m / ours_m:.2f}x less** |",
        f"| query latency p50 (ms) | {best('ours', 'p50_ms'):.3f} | {best('langchain', 'p50_ms'):.3f} | "
        f"{best('langchain', 'p50_ms') / best('ours', 'p50_ms'):.1f}x |",
        f"| query latency p99 (ms) | {best('ours', 'p99_ms'):.3f} | {best('langchain', 'p99_ms'):.3f} | "
        f"{best('langchain', 'p99_ms') / best('ours', 'p99_ms'):.1f}x |",
        f"| batch queries/s (k=10) | {best('ours', 'batch_qps', False):,.0f} | "
        f"{best('langchain', 'batch_qps', False):,.0f} | "
        f"{best('ours', 'batch_qps', False) / best('langchain', 'batch_qps', False):.1f}x |",
        f"| index | `{runs['ours'][0]['factory']}`, SQLite docstore, sha256 manifest | "
        f"{runs['langchain'][0]['factory']} | |",
        "",
        f"Top-1 agreement with LangChain on the first 50 batch queries: {agreement:.0%} (same model and texts; "
        "the differences were not analysed: candidates are near-equal scores for short query prefixes, and "
        "L2 vs inner-product rounding).",
        "",
        "Per run (s, MiB): " + "; ".join(
            f"{side} " + ", ".join(f"{r['build_s']:.2f} s / {r['peak_rss_mib']:.0f} MiB" for r in rs)
            for side, rs in runs.items()),
    ]
    if ann:
        lines += ["", "## Approximate indexes vs exact (same corpus, recall@10 against flat)\n",
                  "| index | factory | search params | build (s) | recall@10 | p50 (ms) | p99 (ms) |", "|---|---|---|---|---|---|---|",
                  f"| flat | `IDMap2,Flat` | - | {ours_s:.2f} | 1.000 | {best('ours', 'p50_ms'):.3f} | "
                  f"{best('ours', 'p99_ms'):.3f} |"]
        for kind, r in ann:
            lines.append(f"| {kind} | `{r['factory']}` | {json.dumps(r['params'])} | {r['build_s']:.2f} | "
                         f"{r['recall']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |")
    write_report("index_speed", "\n".join(lines) + "\n")
    plot(runs, n)


def plot(runs: dict, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["m2v-index", "LangChain FAISS"]
    colors = ["#2a7ab9", "#999999"]
    metrics = [("build_s", "build time (s)", True), ("peak_rss_mib", "peak memory (MiB)", True),
               ("p50_ms", "query p50 (ms)", True)]
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for axis, (key, title, low) in zip(axes, metrics):
        values = [min(r[key] for r in runs[s]) if low else max(r[key] for r in runs[s]) for s in ("ours", "langchain")]
        axis.bar(labels, values, color=colors)
        axis.set_title(f"{title}, lower is better", fontsize=10)
        for x, v in enumerate(values):
            axis.text(x, v, f"{v:,.2f}" if v < 10 else f"{v:,.0f}", ha="center", va="bottom", fontsize=9)
    figure.suptitle(f"Indexing {n:,} GCIDE definitions end to end ({time.strftime('%Y-%m-%d')})", fontsize=11)
    figure.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure.savefig(RESULTS / "index_speed.png", dpi=120)


if __name__ == "__main__":
    main()
