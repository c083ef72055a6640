"""Which engine for the lexical part of an index: bm25s (+PyStemmer) or SQLite FTS5 in the docstore?

Both index the same 171,933 GCIDE definitions with the same analysis where it matters:

- ``bm25s``: m2v_search.index.lexical.LexicalIndex (our analyzer: lowercase, English stopwords,
  Snowball stemming; bm25s's Lucene BM25; tombstones and merge-on-save for changes).
- ``fts5 (analyzed)``: an FTS5 table inside a docstore-like SQLite file holding the same
  analyzed terms (unicode61 tokenizer over them), ranked by FTS5's ``bm25()``; the only way to
  get Snowball stemming in any language, since Python's sqlite3 cannot register a tokenizer.
- ``fts5 (porter)``: FTS5's own ``porter unicode61`` tokenizer on the raw texts (English only;
  no stopwords), for the build time the C tokenizer gives.

Measured: build (analysis + index + save to disk), size on disk of the lexical part, single
query latency (k=100, 300 queries of 2-5 words drawn from random definitions), the same with a
metadata-style filter allowing a random half of the documents, and the cost of adding then
searching 1,000 documents and deleting 1,000 (what a user waits for after ``m2v-index add``),
plus the saved write after the change. Overlap@10: share of bm25s's top 10 that FTS5 also returns.

    HF_HUB_OFFLINE=1 nice -n 10 python benchmarks/lexical_choice.py [--queries 300]

Writes benchmarks/results/lexical_choice.md.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import gcide_definitions, machine_line, write_report  # noqa: E402

from m2v_search.index.lexical import Analyzer, LexicalIndex  # noqa: E402

CHANGE = 1_000


def make_queries(texts: list[str], count: int, seed: int = 0) -> list[str]:
    """Short queries: 2-5 words of random definitions (stopwords included, as users type them)."""
    rng = np.random.default_rng(seed)
    queries: list[str] = []
    while len(queries) < count:
        words = texts[int(rng.integers(len(texts)))].split()
        if len(words) >= 3:
            size = int(rng.integers(2, min(5, len(words)) + 1))
            queries.append(" ".join(rng.choice(words, size=size, replace=False)))
    return queries


def latencies_ms(search: Callable[[str], object], queries: list[str]) -> tuple[float, float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times), float(np.percentile(times, 99))


class Bm25sEngine:
    name = "bm25s"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.index = LexicalIndex()

    def build(self, texts: list[str]) -> None:
        self.index.add(np.arange(len(texts)), texts)
        self.save()

    def save(self) -> None:
        for name, data in self.index.to_files().items():
            (self.directory / name).write_bytes(data)

    def size(self) -> int:
        return sum((self.directory / name).stat().st_size for name in ("lexical.json", "lexical.npz"))

    def search(self, query: str, allowed: np.ndarray | None = None) -> list[int]:
        return self.index.search(query, 100, allowed=allowed)[0].tolist()

    def add(self, iids: np.ndarray, texts: list[str]) -> None:
        self.index.add(iids, texts)

    def delete(self, iids: np.ndarray) -> None:
        self.index.delete(iids)


class Fts5Engine:
    """An FTS5 table in the same SQLite file as a docstore-like ``docs`` table."""

    def __init__(self, directory: Path, porter: bool) -> None:
        self.name = "fts5 (porter)" if porter else "fts5 (analyzed)"
        self.porter = porter
        self.analyzer = Analyzer()
        self.path = directory / ("porter.sqlite" if porter else "analyzed.sqlite")
        self.db = sqlite3.connect(self.path)
        tokenizer = "porter unicode61" if porter else "unicode61"
        self.db.executescript(f"""
            CREATE TABLE docs (iid INTEGER PRIMARY KEY, text TEXT NOT NULL);
            CREATE VIRTUAL TABLE lex USING fts5(terms, tokenize='{tokenizer}');""")
        self.base_size = 0

    def _terms(self, text: str) -> str:
        return text if self.porter else " ".join(self.analyzer.analyze(text))

    def _match(self, query: str) -> str:
        words = ([w for w in Analyzer(stem=False).analyze(query)] if self.porter
                 else self.analyzer.analyze(query))
        return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))

    def build(self, texts: list[str]) -> None:
        self.db.executemany("INSERT INTO docs VALUES (?, ?)", enumerate(texts))
        self.db.commit()
        self.base_size = self.path.stat().st_size
        self.add(np.arange(len(texts)), texts)

    def save(self) -> None:
        self.db.commit()

    def size(self) -> int:
        return self.path.stat().st_size - self.base_size

    def search(self, query: str, allowed: np.ndarray | None = None) -> list[int]:
        match = self._match(query)
        if not match:
            return []
        if allowed is None:
            rows = self.db.execute("SELECT rowid FROM lex WHERE lex MATCH ? ORDER BY rank LIMIT 100", (match,))
        else:  # a filter as the docstore would run it (unary + keeps FTS5 from probing each allowed rowid)
            rows = self.db.execute("SELECT rowid FROM lex WHERE lex MATCH ? AND +rowid IN "
                                   "(SELECT iid FROM docs WHERE iid % 2 = 0) ORDER BY rank LIMIT 100", (match,))
        return [row[0] for row in rows]

    def add(self, iids: np.ndarray, texts: list[str]) -> None:
        self.db.executemany("INSERT INTO lex (rowid, terms) VALUES (?, ?)",
                            ((int(i), self._terms(t)) for i, t in zip(iids, texts)))
        self.db.commit()

    def delete(self, iids: np.ndarray) -> None:
        self.db.executemany("DELETE FROM lex WHERE rowid = ?", ((int(i),) for i in iids))
        self.db.commit()


def measure(engine: Bm25sEngine | Fts5Engine, texts: list[str], queries: list[str]) -> dict[str, float]:
    started = time.perf_counter()
    engine.build(texts)
    build_s = time.perf_counter() - started
    engine.search(queries[0])  # warm
    p50, p99 = latencies_ms(engine.search, queries)
    even = np.arange(0, len(texts), 2, dtype=np.int64)
    p50_filtered, _ = latencies_ms(lambda q: engine.search(q, even), queries)
    fresh = np.arange(len(texts), len(texts) + CHANGE)
    started = time.perf_counter()
    engine.add(fresh, texts[:CHANGE])
    engine.search(queries[1])
    add_s = time.perf_counter() - started
    started = time.perf_counter()
    engine.delete(np.arange(CHANGE, 2 * CHANGE))
    engine.search(queries[2])
    delete_s = time.perf_counter() - started
    started = time.perf_counter()
    engine.save()
    save_s = time.perf_counter() - started
    return {"build_s": build_s, "size_mib": engine.size() / 2**20, "p50_ms": p50, "p99_ms": p99,
            "p50_filtered_ms": p50_filtered, "add_s": add_s, "delete_s": delete_s, "save_after_change_s": save_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--limit", type=int, default=None, help="use the first N definitions only")
    args = parser.parse_args()
    texts = gcide_definitions(args.limit)
    queries = make_queries(texts, args.queries)
    rows: dict[str, dict[str, float]] = {}
    overlaps: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines: list[Bm25sEngine | Fts5Engine] = [Bm25sEngine(Path(tmp)), Fts5Engine(Path(tmp), porter=False),
                                                    Fts5Engine(Path(tmp), porter=True)]
        for engine in engines:
            print(f"measuring {engine.name}", file=sys.stderr)
            rows[engine.name] = measure(engine, texts, queries)
        reference = [engines[0].search(q)[:10] for q in queries]
        for engine in engines[1:]:
            shared = [len(set(ref) & set(engine.search(q)[:10])) / max(1, len(ref))
                      for ref, q in zip(reference, queries) if ref]
            overlaps[engine.name] = float(np.mean(shared))
    write_report("lexical_choice", render(rows, overlaps, len(texts), len(queries)))


def render(rows: dict[str, dict[str, float]], overlaps: dict[str, float], documents: int, queries: int) -> str:
    lines = [
        "# Lexical engine: bm25s vs SQLite FTS5", "",
        f"{documents:,} GCIDE definitions; {queries} queries of 2-5 words from random definitions, k=100, one "
        f"query at a time. Machine: {machine_line()} (shared with other jobs: compare within a column).", "",
        "Build = analysis + index + write to disk. Filtered = only a half of the documents allowed (a metadata "
        f"filter). Add / delete = {CHANGE:,} documents, then one search (bm25s merges pending additions on that "
        "search; deletions are tombstones until the next save). Save after change = the write that follows "
        "(bm25s: merge + serialise; FTS5: commit). Size = bytes the lexical part adds to the index.", "",
        "| engine | build (s) | size (MiB) | query p50 (ms) | p99 (ms) | filtered p50 (ms) | add 1k + search (s) "
        "| delete 1k + search (s) | save after change (s) | overlap@10 with bm25s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        overlap = f"{overlaps[name]:.2f}" if name in overlaps else "-"
        lines.append(f"| {name} | {row['build_s']:.2f} | {row['size_mib']:.1f} | {row['p50_ms']:.3f} | "
                     f"{row['p99_ms']:.3f} | {row['p50_filtered_ms']:.3f} | {row['add_s']:.3f} | "
                     f"{row['delete_s']:.3f} | {row['save_after_change_s']:.3f} | {overlap} |")
    if "bm25s" in rows and "fts5 (analyzed)" in rows:
        ours, fts = rows["bm25s"], rows["fts5 (analyzed)"]
        lines += ["", "Ratios, FTS5 (analyzed) / bm25s: query p50 "
                  f"{fts['p50_ms'] / ours['p50_ms']:.1f}x, p99 {fts['p99_ms'] / ours['p99_ms']:.1f}x, filtered p50 "
                  f"{fts['p50_filtered_ms'] / ours['p50_filtered_ms']:.1f}x; build {fts['build_s'] / ours['build_s']:.2f}x; "
                  f"add 1k + search {fts['add_s'] / ours['add_s']:.3f}x."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
