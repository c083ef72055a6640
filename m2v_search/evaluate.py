"""Retrieval evaluation: queries with their relevant document ids -> MRR@10, nDCG@10, recall@k, latency.

Two input formats:

- **JSONL**, one query a line: ``{"query": "...", "relevant": ["doc-1", "doc-7"]}``; ``relevant``
  may also map ids to graded relevance (``{"doc-1": 2, "doc-7": 1}``); an optional ``"id"``
  names the query.
- **BEIR**: a queries JSONL (``{"_id": "q1", "text": "..."}`` a line) and a qrels TSV
  (``query-id<TAB>corpus-id<TAB>score``, a header line allowed; a later row of a pair wins). As in
  BEIR (pytrec_eval): a score of 0 is not relevant, queries the qrels do not name are skipped,
  and a query judged with 0s only is kept and scores 0.

Metrics follow the usual definitions (trec_eval / BEIR): MRR@10 is the reciprocal rank of the
first relevant result in the top 10 (0 if none); nDCG@10 uses the graded gains with a
``log2(rank + 1)`` discount against the ideal ordering; recall@k is the share of a query's
relevant documents found in the top k. Latency is the wall time of one search call
(encoding included), one query at a time.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m2v_search.errors import InvalidInputError

MRR_DEPTH = 10
NDCG_DEPTH = 10


class EvaluationDataError(InvalidInputError):
    """A queries or qrels file is malformed; the message names the file and line."""


@dataclass
class EvalQuery:
    """One query and the graded relevance of its relevant documents (gain > 0)."""

    id: str
    text: str
    relevant: dict[str, float]


@dataclass
class ModeResult:
    """Scores of one search mode over a query set (metrics are means over the queries, x1 not x100)."""

    mode: str
    queries: int
    mrr_at_10: float
    ndcg_at_10: float
    recall: dict[int, float]
    latency_p50_ms: float
    latency_p99_ms: float
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (recall keys as ``recall@k``)."""
        return {"mode": self.mode, "queries": self.queries, "mrr@10": self.mrr_at_10, "ndcg@10": self.ndcg_at_10,
                **{f"recall@{k}": value for k, value in sorted(self.recall.items())},
                "latency_p50_ms": self.latency_p50_ms, "latency_p99_ms": self.latency_p99_ms, **self.settings}


# ---------------------------------------------------------------------- reading
def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 file (``-``: stdin), split at ``\\n`` only: JSON strings may hold
    U+2028 or U+0085 raw."""
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except FileNotFoundError:
        raise EvaluationDataError(f"{path}: no such file") from None
    except OSError as error:
        raise EvaluationDataError(f"{path}: cannot read ({error.strerror or error})") from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark, as the corpus and query readers drop it
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise EvaluationDataError(f"{path}:{line}: not valid UTF-8 (byte {data[error.start]:#04x})") from None
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as error:
            raise EvaluationDataError(f"{path}:{number}: not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise EvaluationDataError(f"{path}:{number}: expected a JSON object")
        records.append((number, record))
    return records


def _check_text(text: Any, where: str, field: str) -> None:
    """Refuse a query text that is not a non-empty str of valid Unicode, naming file, line and field."""
    if not isinstance(text, str) or not text.strip():
        raise EvaluationDataError(f"{where}: field {field!r} must be a non-empty string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # a \ud800 escape: JSON allows it, no text holds it
        raise EvaluationDataError(f"{where}: field {field!r} holds a lone surrogate (U+{ord(text[error.start]):04X} "
                                  f"at character {error.start}), which is not valid Unicode text") from None


def _gains(value: Any, where: str) -> dict[str, float]:
    if isinstance(value, list):
        if not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in value):
            raise EvaluationDataError(f"{where}: field 'relevant' must list string or integer ids")
        return {str(i): 1.0 for i in value}
    if isinstance(value, dict):
        gains: dict[str, float] = {}
        for doc_id, grade in value.items():
            if isinstance(grade, bool) or not isinstance(grade, (int, float)) or not math.isfinite(grade):
                raise EvaluationDataError(f"{where}: relevance of {doc_id!r} must be a finite number")
            if grade > 0:
                gains[str(doc_id)] = float(grade)
        return gains
    raise EvaluationDataError(f"{where}: field 'relevant' must be a list of ids or an object id -> grade")


def load_jsonl_queries(path: str | Path) -> list[EvalQuery]:
    """Queries from a JSONL file of ``{"query": ..., "relevant": [...]}`` lines.

    Args:
        path: the JSONL file.

    Returns:
        The queries, in file order.

    Raises:
        EvaluationDataError: unreadable file, bad JSON, a missing or mistyped field (file and line named),
            or no query at all.
    """
    path = Path(path)
    queries: list[EvalQuery] = []
    for number, record in _read_jsonl(path):
        where = f"{path}:{number}"
        text = record.get("query")
        _check_text(text, where, "query")
        if "relevant" not in record:
            raise EvaluationDataError(f"{where}: missing field 'relevant'")
        gains = _gains(record["relevant"], where)
        if not gains:
            raise EvaluationDataError(f"{where}: field 'relevant' names no relevant document")
        queries.append(EvalQuery(str(record.get("id", number)), text, gains))
    if not queries:
        raise EvaluationDataError(f"{path}: no queries")
    return queries


def load_beir_queries(queries_path: str | Path, qrels_path: str | Path) -> list[EvalQuery]:
    """Queries from a BEIR queries JSONL and its qrels TSV.

    Args:
        queries_path: JSONL of ``{"_id": ..., "text": ...}``.
        qrels_path: TSV of ``query-id, corpus-id, score`` (a header line allowed).

    Returns:
        The queries the qrels judge, in the queries file's order (one judged with grade 0 only has
        no relevant document and scores 0, as in BEIR).

    Raises:
        EvaluationDataError: a malformed line (file and line named), a qrels query id missing from the
            queries file, or no query with a relevant document.
    """
    queries_path, qrels_path = Path(queries_path), Path(qrels_path)
    if str(queries_path) == str(qrels_path) == "-":
        raise EvaluationDataError("the queries and the qrels cannot both be read from stdin (-)")
    texts: dict[str, str] = {}
    for number, record in _read_jsonl(queries_path):
        query_id, text = record.get("_id"), record.get("text")
        if not isinstance(query_id, (str, int)) or isinstance(query_id, bool):
            raise EvaluationDataError(f"{queries_path}:{number}: field '_id' must be a string")
        _check_text(text, f"{queries_path}:{number}", "text")
        texts[str(query_id)] = text
    grades: dict[str, dict[str, float]] = {}  # a later row of a pair wins, as in BEIR's loader; 0 = not relevant
    first = True
    for number, line in enumerate(_read_lines(qrels_path), start=1):
        if not line.strip():
            continue
        header_allowed, first = first, False
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            raise EvaluationDataError(f"{qrels_path}:{number}: expected 3 tab-separated fields "
                                      "(query-id, corpus-id, score)")
        try:
            grade = float(parts[2])
        except ValueError:
            if header_allowed and parts[0] not in texts:  # the header line ("query-id", not a query's id)
                continue
            raise EvaluationDataError(f"{qrels_path}:{number}: score {parts[2]!r} is not a number") from None
        if not math.isfinite(grade):
            raise EvaluationDataError(f"{qrels_path}:{number}: score {parts[2]!r} is not finite")
        if parts[0] not in texts:
            raise EvaluationDataError(f"{qrels_path}:{number}: query id {parts[0]!r} is not in {queries_path}")
        grades.setdefault(parts[0], {})[parts[1]] = grade
    # a query judged with grade 0 only stays and scores 0, as pytrec_eval scores it and BEIR averages it
    relevant = {query_id: {doc: grade for doc, grade in docs.items() if grade > 0} for query_id, docs in grades.items()}
    queries = [EvalQuery(query_id, text, relevant[query_id]) for query_id, text in texts.items()
               if query_id in relevant]
    if not any(query.relevant for query in queries):
        raise EvaluationDataError(f"{qrels_path}: no query has a relevant document")
    return queries


def load_queries(path: str | Path, qrels: str | Path | None = None) -> list[EvalQuery]:
    """:func:`load_beir_queries` when ``qrels`` is given, else :func:`load_jsonl_queries`."""
    return load_jsonl_queries(path) if qrels is None else load_beir_queries(path, qrels)


def unknown_relevant_ids(index: Any, queries: Sequence[EvalQuery], batch: int = 10_000) -> tuple[list[str], int]:
    """The relevant ids that ``index`` does not hold (first-seen order), and how many ids there are.

    Args:
        index: The index (its ``get(ids)`` returns the records it holds).
        queries: The queries.
        batch: Ids looked up at once.

    Returns:
        ``(unknown ids, number of distinct relevant ids)``.
    """
    wanted = list(dict.fromkeys(doc_id for query in queries for doc_id in query.relevant))
    found: set[str] = set()
    for start in range(0, len(wanted), batch):
        found.update(record.id for record in index.get(wanted[start:start + batch]))
    return [doc_id for doc_id in wanted if doc_id not in found], len(wanted)


# ---------------------------------------------------------------------- metrics
def reciprocal_rank(ranked: Sequence[str], relevant: dict[str, float], depth: int = MRR_DEPTH) -> float:
    """1 / rank of the first relevant id within ``depth`` (0 if none)."""
    for rank, doc_id in enumerate(ranked[:depth], start=1):
        if doc_id in relevant:
            return 1.0 / rank
    return 0.0


def ndcg(ranked: Sequence[str], relevant: dict[str, float], depth: int = NDCG_DEPTH) -> float:
    """Normalised discounted cumulative gain at ``depth`` (linear gains, log2 discount)."""
    gains = np.array([relevant.get(doc_id, 0.0) for doc_id in ranked[:depth]], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, depth + 2, dtype=np.float64))
    ideal = np.sort(np.fromiter(relevant.values(), dtype=np.float64))[::-1][:depth]
    best = float((ideal * discounts[:len(ideal)]).sum())
    return float((gains * discounts[:len(gains)]).sum()) / best if best > 0 else 0.0


def recall(ranked: Sequence[str], relevant: dict[str, float], depth: int) -> float:
    """Share of the relevant ids found in the first ``depth`` results."""
    return len(set(ranked[:depth]) & relevant.keys()) / len(relevant) if relevant else 0.0


def evaluate_mode(search: Callable[[str, int], Sequence[str]], queries: Sequence[EvalQuery], *, mode: str,
                  recall_at: Sequence[int] = (10, 100), settings: dict[str, Any] | None = None,
                  warmup: bool = True) -> ModeResult:
    """Run every query through ``search`` and score the rankings.

    Args:
        search: ``search(text, k) -> ranked document ids`` (one call per query, timed).
        queries: the queries and their relevant ids.
        mode: the name reported for this run.
        recall_at: the depths of recall reported; the search depth is their maximum (at least 10).
        settings: extra fields reported with the result (e.g. ``alpha``).
        warmup: run the first query once untimed first (caches, lazy loading).

    Returns:
        The mean metrics and latency percentiles.

    Raises:
        ValueError: no queries, or a recall depth below 1.
    """
    if not queries:
        raise ValueError("no queries to evaluate")
    if any(depth < 1 for depth in recall_at):
        raise ValueError(f"recall depths must be >= 1, got {list(recall_at)}")
    depth = max([MRR_DEPTH, NDCG_DEPTH, *recall_at])
    if warmup:
        search(queries[0].text, depth)
    reciprocal, gains, latencies = [], [], []
    found: dict[int, list[float]] = {k: [] for k in recall_at}
    for query in queries:
        started = time.perf_counter()
        ranked = list(search(query.text, depth))
        latencies.append((time.perf_counter() - started) * 1e3)
        reciprocal.append(reciprocal_rank(ranked, query.relevant))
        gains.append(ndcg(ranked, query.relevant))
        for k in recall_at:
            found[k].append(recall(ranked, query.relevant, k))
    return ModeResult(mode=mode, queries=len(queries), mrr_at_10=float(np.mean(reciprocal)),
                      ndcg_at_10=float(np.mean(gains)), recall={k: float(np.mean(v)) for k, v in found.items()},
                      latency_p50_ms=float(np.percentile(latencies, 50)),
                      latency_p99_ms=float(np.percentile(latencies, 99)), settings=dict(settings or {}))


# ---------------------------------------------------------------------- output
def format_table(results: Sequence[ModeResult]) -> str:
    """A Markdown table (metrics x100), one row per mode."""
    depths = sorted({k for result in results for k in result.recall})
    header = ["mode", "queries", "MRR@10", "nDCG@10", *(f"recall@{k}" for k in depths), "p50 ms", "p99 ms"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for result in results:
        name = result.mode + "".join(f" {key}={value}" for key, value in result.settings.items())
        cells = [name, str(result.queries), f"{100 * result.mrr_at_10:.2f}", f"{100 * result.ndcg_at_10:.2f}",
                 *(f"{100 * result.recall[k]:.2f}" if k in result.recall else "-" for k in depths),
                 f"{result.latency_p50_ms:.3f}", f"{result.latency_p99_ms:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_json(results: Sequence[ModeResult]) -> str:
    """The results as a JSON list (metrics as fractions, not x100)."""
    return json.dumps([result.as_dict() for result in results], indent=2)


def evaluate_index(index: Any, queries: Sequence[EvalQuery], *, modes: Sequence[str] = ("dense", "lexical", "hybrid"),
                   alpha: float | None = None, recall_at: Sequence[int] = (10, 100),
                   filter: dict[str, Any] | None = None) -> list[ModeResult]:
    """Evaluate a :class:`~m2v_search.index.VectorIndex` in each search mode.

    Args:
        index: The index (its model encodes the queries).
        queries: The queries and their relevant document ids.
        modes: Search modes to run (``dense``, ``lexical``, ``hybrid``).
        alpha: Hybrid weight of the dense leg (None: the index's default).
        recall_at: Depths of recall reported.
        filter: A metadata filter applied to every search.

    Returns:
        One result per mode, in the order given.

    Raises:
        ValueError: An unknown mode, a bad alpha, or a mode the index cannot serve (e.g. lexical
            on an index without a lexical part).
    """
    results = []
    for mode in modes:
        def search(text: str, k: int, mode: str = mode) -> list[str]:
            return [hit.id for hit in index.search(text, k, filter=filter, mode=mode, alpha=alpha)]

        settings = {"alpha": alpha} if mode == "hybrid" and alpha is not None else {}
        results.append(evaluate_mode(search, queries, mode=mode, recall_at=recall_at, settings=settings))
    return results
