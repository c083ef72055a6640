"""End-to-end indexing: `m2v-index build` vs LangChain `FAISS.from_texts` + `Model2vecEmbeddings`.

Same model folder, same GCIDE definitions (a temporary JSONL, deleted afterwards: GPL data is
never stored), each side in its own process for its peak memory, both reading the JSONL and
saving the index to disk. Then single-query latency (p50/p99) and batch query throughput on
the saved indexes, and (``--ann``) recall@10 and latency of the HNSW, IVF and IVF-PQ (re-ranked) defaults vs flat.

    python benchmarks/index_speed.py                 # all ~172k definitions, 2 repeats
    python benchmarks/index_speed.py --texts 20000 --repeats 1   # quick
    python benchmarks/index_speed.py --binary        # binary kinds vs flat, HNSW, LangChain FAISS, usearch
    python benchmarks/index_speed.py --binary --million   # ... plus a 1M-vector row

``--binary`` writes ``results/index_speed_binary.md`` and ``.png`` (latency vs recall): every
method in its own process on the same corpus and queries; recall@10 against our flat index.
"""

from __future__ import annotations

import argparse
import os
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
CANDIDATES = 1536  # usearch b1 + re-score: candidates re-scored, as many as our binary kind's default


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

    kind, _, variant = index.partition("+")  # "flat": dense only, like LangChain; "flat+hybrid": the defaults
    hybrid = variant == "hybrid"
    started = time.perf_counter()
    code = main(["build", corpus, "-o", out, "--model", model, "--index", kind, "--quiet",
                 *([] if hybrid else ["--no-lexical"])])
    build_s = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"m2v-index build failed with exit code {code}")
    build_rss = peak_rss_mib()
    queries = query_texts(corpus)
    vectors = VectorIndex.open(out)
    mode = "hybrid" if hybrid else "dense"
    p50, p99 = latency(lambda q: vectors.search(q, k=10, mode=mode), queries[:QUERIES])
    started = time.perf_counter()
    batch = vectors.search_batch(queries, k=10, mode=mode)
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
    code = main(["build", corpus, "-o", str(Path(out) / index), "--model", model, "--index", index, "--quiet",
                 "--no-lexical"])
    build_s = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"m2v-index build --index {index} failed with exit code {code}")
    approximate = VectorIndex.open(Path(out) / index)
    found = [[h.id for h in hits] for hits in approximate.search_batch(queries, k=10)]
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
    p50, p99 = latency(lambda q: approximate.search(q, k=10), queries[:QUERIES])
    return {"build_s": build_s, "peak_rss_mib": peak_rss_mib(), "recall": recall, "p50_ms": p50, "p99_ms": p99,
            "factory": approximate.factory, "params": approximate.search_params}


def top_ids_file(out: str) -> Path:
    return Path(out).with_suffix(".top10.json")


def worker_kind(corpus: str, model: str, out: str, index: str) -> dict:
    """``m2v-index build --index KIND``, then single-query p50 and the batch's top-10 ids."""
    from m2v_search.cli import index_main as main
    from m2v_search.index import VectorIndex

    started = time.perf_counter()
    if main(["build", corpus, "-o", out, "--model", model, "--index", index, "--quiet", "--no-lexical"]) != 0:
        raise SystemExit(f"m2v-index build --index {index} failed")
    build_s = time.perf_counter() - started
    build_rss = peak_rss_mib()
    queries = query_texts(corpus)
    vectors = VectorIndex.open(out)
    p50, p99 = latency(lambda q: vectors.search(q, k=10), queries[:QUERIES])
    top_ids_file(out).write_text(json.dumps([[h.id for h in hits] for hits in vectors.search_batch(queries, 10)]))
    index_file = next(Path(out).glob("index.*.faiss"))
    return {"build_s": build_s, "peak_rss_mib": build_rss, "p50_ms": p50, "p99_ms": p99,
            "index_mib": index_file.stat().st_size / 2**20, "factory": vectors.factory,
            "params": vectors.search_params, "top": str(top_ids_file(out))}


def worker_langchain_top(corpus: str, model: str, out: str, index: str) -> dict:
    """LangChain FAISS (flat L2 over unit vectors): build, p50 and top-10 ids."""
    result = worker_langchain(corpus, model, out, index)
    from langchain_community.embeddings import Model2vecEmbeddings
    from langchain_community.vectorstores import FAISS

    store = FAISS.load_local(out, Model2vecEmbeddings(model), allow_dangerous_deserialization=True)
    queries = query_texts(corpus)
    vectors = store.embeddings.embed_documents(queries)
    top = [[d.id for d, _ in store.similarity_search_with_score_by_vector(v, k=10)] for v in vectors]
    top_ids_file(out).write_text(json.dumps(top))
    index_mib = store.index.ntotal * store.index.d * 4 / 2**20
    return {**result, "index_mib": index_mib, "top": str(top_ids_file(out))}


def worker_usearch(corpus: str, model: str, out: str, dtype: str) -> dict:
    """usearch HNSW with its own quantization (``i8``: int8 cosine; ``b1``: sign bits, Hamming;
    ``b1+rescore``: the b1 graph's CANDIDATES nearest re-scored by the float query against int8 copies,
    as our binary kind does). Vectors from our model; p50 includes encoding the query."""
    from usearch.index import Index

    from m2v_search import StaticModel

    encoder = StaticModel.from_pretrained(model)
    ids, texts = read_jsonl(corpus)
    started = time.perf_counter()
    vectors = encoder.encode(texts, normalize=True).astype(np.float32)
    binary = dtype.startswith("b1")
    index = Index(ndim=vectors.shape[1], metric="hamming" if binary else "cos", dtype="b1" if binary else dtype)
    keys = np.arange(len(texts), dtype=np.uint64)
    index.add(keys, np.packbits(vectors > 0, axis=1) if binary else vectors)
    copies = scales = None
    if dtype == "b1+rescore":
        scales = np.abs(vectors).max(axis=1) / 127
        copies = np.rint(vectors / scales[:, None]).astype(np.int8)
    build_s = time.perf_counter() - started
    index.expansion_search = max(index.expansion_search, CANDIDATES if binary else 128)

    def search(text: str) -> np.ndarray:
        query = encoder.encode([text], normalize=True).astype(np.float32)
        if not binary:
            return index.search(query[0], 10).keys
        found = index.search(np.packbits(query[0] > 0), CANDIDATES if copies is not None else 10).keys
        if copies is None:
            return found
        rows = found.astype(np.int64)
        scores = (copies[rows].astype(np.float32) @ query[0]) * scales[rows]
        return found[np.argsort(-scores)[:10]]

    queries = query_texts(corpus)
    p50, p99 = latency(search, queries[:QUERIES])
    top = [[ids[int(key)] for key in search(q)] for q in queries]
    top_ids_file(out).write_text(json.dumps(top))
    extra = 0 if copies is None else copies.nbytes + scales.nbytes
    return {"build_s": build_s, "peak_rss_mib": peak_rss_mib(), "p50_ms": p50, "p99_ms": p99,
            "index_mib": (index.memory_usage + extra) / 2**20, "factory": f"usearch HNSW {dtype}",
            "top": str(top_ids_file(out))}


MILLION = 1_000_000
NOISE = 0.01  # std of the Gaussian noise added to each dimension of a copied corpus vector (then renormalised)


def worker_million(corpus: str, model: str, out: str, kinds: str) -> dict:
    """A 1M-vector row: the corpus's vectors copied with small noise; binary backends vs exact search.

    The backends are used directly (vectors only, no docstore): p50 is the search of one encoded
    query on one thread, and the encoding p50 of the same queries is reported beside it."""
    import faiss

    from m2v_search import StaticModel
    from m2v_search.index import factory as factories
    from m2v_search.index.backends import SearchOptions, create_backend
    from m2v_search.index.vectors import training_sample, unit_vectors

    faiss.omp_set_num_threads(1)
    encoder = StaticModel.from_pretrained(model)
    _, texts = read_jsonl(corpus)
    base = unit_vectors(encoder.encode(texts, normalize=False))
    rng = np.random.default_rng(0)
    copies = -(-MILLION // len(base))
    big = np.concatenate([base + rng.normal(0, NOISE, base.shape).astype(np.float32) for _ in range(copies)])
    big = unit_vectors(big[:MILLION])
    queries = query_texts(corpus)[:QUERIES]
    encode_p50, _ = latency(lambda q: encoder.encode([q]), queries)
    query_vectors = unit_vectors(encoder.encode(queries, normalize=False))
    exact = faiss.IndexFlatIP(big.shape[1])
    exact.add(big)
    flat_p50, _ = latency(lambda i: exact.search(query_vectors[i:i + 1], 10), list(range(30)))
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _, truth = exact.search(query_vectors, 10)
    faiss.omp_set_num_threads(1)
    del exact
    rows = {"flat": {"build_s": 0.0, "p50_ms": flat_p50, "recall": 1.0, "index_mib": big.nbytes / 2**20}}
    for kind in kinds.split(","):
        started = time.perf_counter()
        backend = create_backend(factories.resolve(kind, MILLION, big.shape[1]), big.shape[1])
        backend.train(training_sample(big))
        backend.add(np.arange(MILLION, dtype=np.int64), big)
        build_s = time.perf_counter() - started
        options = SearchOptions()
        p50, _ = latency(lambda i: backend.search(query_vectors[i:i + 1], 10, None, options), list(range(len(queries))))
        _, found = backend.search(query_vectors, 10, None, options)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found.tolist(), truth.tolist())]))
        rows[kind] = {"build_s": build_s, "p50_ms": p50, "recall": recall,
                      "index_mib": len(backend.to_bytes()) / 2**20}
        print(f"  1M {kind}: " + json.dumps(rows[kind]), file=sys.stderr)
        del backend
    return {"encode_p50_ms": encode_p50, "rows": rows, "noise": NOISE, "n": MILLION}


WORKERS = {"ours": worker_ours, "langchain": worker_langchain, "recall": worker_recall, "kind": worker_kind,
           "langchain-top": worker_langchain_top, "usearch": worker_usearch, "million": worker_million}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=None, help="limit the number of definitions (default: all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=None, help="model folder (default: the bundled model, else random 256-d)")
    parser.add_argument("--hybrid", action="store_true",
                        help="our side with its defaults: a lexical part built, text queries searched hybrid "
                             "(index_speed_hybrid.md); without it, dense only like LangChain")
    parser.add_argument("--ann", action="store_true", help="also measure the HNSW, IVF and IVF-PQ defaults against flat")
    parser.add_argument("--binary", action="store_true",
                        help="binary kinds vs flat, HNSW, LangChain FAISS and usearch (index_speed_binary.md)")
    parser.add_argument("--million", action="store_true", help="with --binary: also a 1M-vector row")
    parser.add_argument("--million-kinds", default="binary,binary-hnsw", help="kinds of the 1M-vector row")
    parser.add_argument("--sides", default=None,
                        help="with --binary: only these labels, comma-separated (flat is always run); the "
                             "report then goes to index_speed_binary_partial.md")
    parser.add_argument("--replot", metavar="JSON", help="redraw a --binary PNG from its saved JSON")
    parser.add_argument("--worker", nargs=5, metavar=("KIND", "CORPUS", "MODEL", "OUT", "INDEX"))
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        binary_plot(saved["results"], saved["million"], Path(args.replot).stem)
        return
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
        if args.binary:
            binary_comparison(corpus, folder, work, len(texts), args.million_kinds if args.million else None,
                              args.sides)
            return
        runs: dict[str, list[dict]] = {"ours": [], "langchain": []}
        for repeat in range(args.repeats):
            for side in (("ours", "langchain") if repeat % 2 == 0 else ("langchain", "ours")):
                print(f"repeat {repeat + 1}: {side}", file=sys.stderr)
                target = work / f"{side}-{repeat}"
                kind = "flat+hybrid" if args.hybrid and side == "ours" else "flat"
                runs[side].append(run_worker(SCRIPT, [side, str(corpus), str(folder), str(target), kind]))
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
        report(texts, folder, args.model, runs, agreement, ann, hybrid=args.hybrid)
    finally:
        shutil.rmtree(work, ignore_errors=True)


BINARY_SIDES = [("flat", "kind", "flat"), ("binary", "kind", "binary"), ("binary-hnsw", "kind", "binary-hnsw"),
                ("hnsw (FAISS)", "kind", "hnsw"), ("LangChain FAISS", "langchain-top", "flat"),
                ("usearch i8", "usearch", "i8"), ("usearch b1", "usearch", "b1"),
                ("usearch b1 + int8 re-score", "usearch", "b1+rescore")]


def binary_comparison(corpus: Path, folder: Path, work: Path, n: int, million: str | None, sides: str | None
                      ) -> None:
    """Every side of BINARY_SIDES (or those in ``sides``) in its own process on the same corpus;
    recall against our flat."""
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    chosen = None if sides is None else {"flat", *sides.split(",")}
    for label, worker, arg in BINARY_SIDES:
        if chosen is not None and label not in chosen:
            continue
        print(f"binary comparison: {label}", file=sys.stderr)
        target = work / label.replace(" ", "_").replace("(", "").replace(")", "").replace("+", "p")
        results[label] = run_worker(SCRIPT, [worker, str(corpus), str(folder), str(target), arg])
        print("  " + json.dumps(results[label]), file=sys.stderr)
        shutil.rmtree(target, ignore_errors=True)
    truth = json.loads(Path(results["flat"]["top"]).read_text())
    for label, result in results.items():
        found = json.loads(Path(result["top"]).read_text())
        result["recall"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
    big = None
    if million:
        print("binary comparison: 1M vectors", file=sys.stderr)
        big = run_worker(SCRIPT, ["million", str(corpus), str(folder), str(work / "million"), million])
    binary_report(results, big, n, folder, load_before, os.getloadavg(),
                  "index_speed_binary" if chosen is None else "index_speed_binary_partial")


def binary_report(results: dict, big: dict | None, n: int, folder: Path, load_before: tuple, load_after: tuple,
                  name: str) -> None:
    flat = results["flat"]
    lines = [
        "# Binary codes with exact re-scoring vs flat, HNSW, LangChain FAISS and usearch\n",
        f"{n:,} GCIDE definitions, model `{folder.name}` (256 dims), every method in its own process, one run. "
        f"Machine: {machine_line()}; load average {load_before[0]:.1f} before and {load_after[0]:.1f} after "
        "(a 2-core machine shared with other jobs: absolute times are noisy, compare within the table).\n",
        f"p50 = one query end to end (encode + search, k=10, one thread), {QUERIES} queries. Recall@10 against "
        f"our flat index on {BATCH} queries (the first half of evenly spread definitions). Memory for search = "
        "the index structure (our index file: codes, int8 copies, scales, ids; FAISS/usearch: their vectors, "
        "graph and quantized copies), not the docstore or the model. Build = read, embed, index, save "
        "(`m2v-index build`; LangChain `FAISS.from_texts` + `save_local`; usearch: encode + add).\n",
        "| method | index | recall@10 | p50 (ms) | p99 (ms) | memory for search (MiB) | x flat | build (s) | x flat |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        lines.append(f"| {label} | `{r['factory']}` | {r['recall']:.4f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['index_mib']:.1f} | {r['index_mib'] / flat['index_mib']:.2f} | {r['build_s']:.1f} | "
                     f"{r['build_s'] / flat['build_s']:.2f} |")
    binary = results["binary"]
    hnsw_params = results["binary-hnsw"]["params"] if "binary-hnsw" in results else "not run"
    lines += ["", f"Targets for `binary`: p50 <= 1.0 ms (measured {binary['p50_ms']:.3f}), recall@10 >= 0.99 "
              f"({binary['recall']:.4f}), memory <= 0.3x flat ({binary['index_mib'] / flat['index_mib']:.2f}x), "
              f"build <= 2x flat ({binary['build_s'] / flat['build_s']:.2f}x). Search defaults: "
              f"`{json.dumps(binary['params'])}` (binary), `{json.dumps(hnsw_params)}` "
              "(binary-hnsw)."]
    if big is not None:
        lines += ["", f"## {big['n']:,} vectors (the corpus's vectors copied with Gaussian noise, std {big['noise']} "
                  "per dimension, renormalised)\n",
                  "Not real text: a size test. Backends used directly (no docstore), one thread; p50 = search "
                  f"only, plus {big['encode_p50_ms']:.3f} ms to encode a query. Recall@10 against exact float32 "
                  "search (FAISS IndexFlatIP) of the same vectors.\n",
                  "| method | recall@10 | search p50 (ms) | memory (MiB) | build (s) |", "|---|---:|---:|---:|---:|"]
        for label, r in big["rows"].items():
            lines.append(f"| {label} | {r['recall']:.4f} | {r['p50_ms']:.3f} | {r['index_mib']:.0f} | "
                         f"{r['build_s']:.1f} |")
    write_report(name, "\n".join(lines) + "\n")
    kept = {label: {k: v for k, v in r.items() if k not in ("top", "top1")} for label, r in results.items()}
    (RESULTS / f"{name}.json").write_text(json.dumps({"results": kept, "million": big}, indent=1) + "\n")
    binary_plot(kept, big, name)


def binary_plot(results: dict, big: dict | None, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8.5, 5))
    floor = 0.945  # recalls below are drawn on this line, their value written beside them
    points = [(label, r["p50_ms"], r["recall"], r["index_mib"], label.startswith("binary")) for label, r in results.items()]
    if big is not None:
        points += [(f"{label}, 1M vectors", r["p50_ms"] + big["encode_p50_ms"], r["recall"], r["index_mib"], True)
                   for label, r in big["rows"].items() if label != "flat"]
    for number, (label, p50, recall, mib, ours) in enumerate(points):
        shown = max(recall, floor)
        axis.scatter(p50, shown, s=20 + mib / 4, alpha=0.75, color="#2a7ab9" if ours else "#999999",
                     marker="s" if "1M" in label else "o", edgecolors="black", linewidths=0.5)
        text = f"{label} ({mib:.0f} MiB)" + (f", recall {recall:.2f}" if recall < floor else "")
        axis.annotate(text, (p50, shown), fontsize=7.5, xytext=(6, 8 if number % 2 else -11),
                      textcoords="offset points")
    axis.set_ylim(floor - 0.004, 1.003)
    axis.axhline(0.99, color="#cc3333", linewidth=0.8, linestyle="--")
    axis.axvline(1.0, color="#cc3333", linewidth=0.8, linestyle="--")
    axis.set_xscale("log")
    axis.set_xlabel("single-query p50, encode + search (ms, log scale)")
    axis.set_ylabel("recall@10 vs exact")
    axis.set_title("Latency vs recall (marker area ~ memory for search; squares: 1M vectors, search + encode)",
                   fontsize=9)
    figure.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure.savefig(RESULTS / f"{name}.png", dpi=120)


def report(texts: list[str], folder: Path, given: str | None, runs: dict, agreement: float, ann: list,
           hybrid: bool = False) -> None:
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
        ("Our side with its defaults: `m2v-index build --index flat` builds the BM25 lexical part too, and "
         "text queries run **hybrid** (dense + BM25 fused), against LangChain's dense search.\n" if hybrid else
         "Our side dense only, like LangChain: `m2v-index build --index flat --no-lexical`, `mode=\"dense\"`.\n"),
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
    write_report("index_speed_hybrid" if hybrid else "index_speed", "\n".join(lines) + "\n")
    plot(runs, n, "index_speed_hybrid" if hybrid else "index_speed")


def plot(runs: dict, n: int, name: str = "index_speed") -> None:
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
    figure.savefig(RESULTS / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
