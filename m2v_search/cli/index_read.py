"""``m2v-index search``, ``info`` and ``verify``: the commands that only read an index directory."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from m2v_search.cli.exit_codes import EXIT_OK, UsageError
from m2v_search.cli.groups import INDEX
from m2v_search.cli.index_common import emit, log, open_index, text_lines
from m2v_search.cli.jsonl import json_line
from m2v_search.cli.options import bounded_int, index_location_argument, search_mode_arguments
from m2v_search.index_kinds import MAX_RESCORE

INT32_MAX = 2**31 - 1  # FAISS takes nprobe and efSearch as C ints
MAX_K = 1_000_000


def _search_arguments(parser: argparse.ArgumentParser) -> None:
    index_location_argument(parser)
    parser.add_argument("-q", "--query", action="append", help="query text (repeatable)")
    parser.add_argument("--queries", metavar="FILE", help="file with one query per line (- for stdin)")
    parser.add_argument("-k", type=bounded_int(1, MAX_K), default=10, help="results per query (default 10)")
    parser.add_argument("--filter", action="append", metavar="KEY=VALUE",
                        help="metadata equality (repeatable; a key given twice means either value)")
    parser.add_argument("--filter-json", metavar="JSON", help='filter object, e.g. \'{"year": {"$gte": 2020}}\'')
    parser.add_argument("--format", choices=["jsonl", "table"], default="jsonl")
    parser.add_argument("--nprobe", type=bounded_int(1, INT32_MAX), default=None,
                        help="IVF lists probed (default: the index's)")
    parser.add_argument("--ef-search", type=bounded_int(1, INT32_MAX), default=None,
                        help="HNSW efSearch (default: the index's; more than the index holds counts as that)")
    search_mode_arguments(parser)
    parser.add_argument("--rescore", type=bounded_int(1, MAX_RESCORE), default=None, metavar="N",
                        help="binary kinds: candidates re-scored exactly per query (default: the index's)")


@INDEX.command("search", help="search DIR", options=("common", "threads", "model"), arguments=_search_arguments)
def search(args: argparse.Namespace) -> int:
    """Run ``m2v-index search``."""
    queries = list(args.query or [])
    if args.queries:
        queries.extend(line.rstrip("\r\n") for line in text_lines(args.queries, "queries file") if line.strip())
    if not queries:
        raise UsageError("give a query with -q TEXT or a file of queries with --queries FILE")
    filter_ = parse_filters(args.filter, args.filter_json)
    index = open_index(args, needs_model=args.mode != "lexical")
    try:
        _warn_of_unused_options(args, index.index_kind)
        # efSearch beyond the number of vectors changes nothing but what FAISS allocates (2^31 took 16 GB)
        ef_search = None if args.ef_search is None else min(args.ef_search, max(index.faiss_index.ntotal, args.k))
        results = index.search_batch(queries, args.k, filter=filter_, nprobe=args.nprobe, ef_search=ef_search,
                                     mode=args.mode, alpha=args.alpha, fusion=args.fusion, rescore=args.rescore)
    finally:
        index.close()
    out = sys.stdout
    if args.format == "table":
        for position, (query, hits) in enumerate(zip(queries, results)):
            if position:
                out.write("\n")
            out.write(f"query: {printable(query)}\n")
            out.write(hits_table(hits))
    else:
        for position, (query, hits) in enumerate(zip(queries, results)):
            for rank, hit in enumerate(hits, 1):
                out.write(json_line({"query": query, "query_index": position, "rank": rank, "id": hit.id,
                                     "score": round(hit.score, 6), "text": hit.text, "metadata": hit.metadata}))
    out.flush()
    return EXIT_OK


# the kinds each search option acts on (a custom factory's are not known: nothing is said of them)
_OPTION_KINDS = {"nprobe": ("ivf", "ivf-pq"), "ef_search": ("hnsw", "binary-hnsw"),
                 "rescore": ("binary", "binary-hnsw")}


def _warn_of_unused_options(args: argparse.Namespace, kind: str) -> None:
    """A warning on stderr for each search option given that the index's kind does not use."""
    for option, kinds in _OPTION_KINDS.items():
        if getattr(args, option) is not None and kind not in kinds and kind != "custom":
            log.warning("--%s applies to %s indexes; this one is %s: ignored", option.replace("_", "-"),
                        " and ".join(kinds), kind)


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    index_location_argument(parser)
    parser.add_argument("--format", choices=["json", "table"], default="table")


@INDEX.command("info", help="show the model, counts and index type of DIR", options=("common", "threads"),
               arguments=_info_arguments)
def info(args: argparse.Namespace) -> int:
    """Run ``m2v-index info``."""
    from m2v_search.index.manifest import read_manifest
    from m2v_search.index.remote import open_target

    manifest = read_manifest(open_target(args.index_dir))  # a URL: its verified local mirror
    model, index, counts = manifest["model"], manifest["index"], manifest.get("counts", {})
    summary = {
        "directory": str(args.index_dir),
        "documents": counts.get("documents"),
        "vectors": counts.get("vectors"),
        "deleted_pending_compaction": counts.get("deleted"),
        "dim": manifest["dim"],
        "metric": manifest.get("metric"),
        "model": model.get("name"),
        "model_path": model.get("path"),
        "model_fingerprint": model.get("fingerprint"),
        "tokenizer_backend": model.get("tokenizer_backend"),
        "index_kind": index.get("kind"),
        "factory": index.get("factory"),
        "requested": index.get("requested_factory") or index.get("requested"),
        "search_params": index.get("search_params"),
        "lexical": manifest.get("lexical", {}).get("analyzer") if manifest.get("lexical") else None,
        "index_choice": (manifest.get("build") or {}).get("index_choice"),
        "generation": manifest.get("generation"),
        "saved_at": manifest.get("saved_at"),
        "build": manifest.get("build"),
        "libraries": manifest.get("libraries"),
        "files": {name: entry.get("bytes") for name, entry in manifest["files"].items()},
    }
    if args.format == "table":
        width = max(len(key) for key in summary)
        for key, value in summary.items():
            shown = value if isinstance(value, (int, float)) or value is None else \
                value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            sys.stdout.write(f"{key:<{width}}  {printable(str(shown))}\n")
    else:
        emit(summary)
    return EXIT_OK


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    index_location_argument(parser)


@INDEX.command("verify", help="check checksums and consistency of DIR", options=("common", "threads", "model"),
               arguments=_verify_arguments)
def verify(args: argparse.Namespace) -> int:
    """Run ``m2v-index verify``."""
    from m2v_search.index.errors import IndexCorruptError

    index = open_index(args)  # checksums, sizes, FAISS and SQLite loads, counts
    try:
        problems = index.verify()
        documents = len(index)
    finally:
        index.close()
    if problems:
        raise IndexCorruptError(f"{args.index_dir}: " + "; ".join(problems))
    emit({"command": "verify", "directory": str(args.index_dir), "ok": True, "documents": documents})
    return EXIT_OK


# ---------------------------------------------------------------------- helpers
def parse_filters(pairs: list[str] | None, raw_json: str | None) -> dict[str, Any] | None:
    """The filter of ``--filter KEY=VALUE`` (repeatable) and ``--filter-json``, which a document
    must both match; None for no filter.

    Raises:
        UsageError: a pair without ``=``, or JSON that is empty or not an object.
    """
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--filter takes key=value, got {pair!r}")
        try:
            parsed: Any = json.loads(value)
            if isinstance(parsed, (dict, list)):
                parsed = value
        except (json.JSONDecodeError, RecursionError):
            parsed = value
        if key in result:  # the same key twice: membership
            previous = result[key]
            result[key] = [*(previous if isinstance(previous, list) else [previous]), parsed]
        else:
            result[key] = parsed
    if raw_json is not None:  # an empty --filter-json "$F" must not search unfiltered
        if not raw_json.strip():
            raise UsageError("--filter-json is empty; give a JSON object such as '{\"year\": 2020}'")
        try:
            extra = json.loads(raw_json)
        except json.JSONDecodeError as error:
            raise UsageError(f"--filter-json is not valid JSON: {error}") from None
        except RecursionError:
            raise UsageError("--filter-json is nested too deeply") from None
        if not isinstance(extra, dict):
            raise UsageError("--filter-json must be a JSON object")
        # both given: documents must match both (an update would let one drop the other's key)
        result = {"$and": [result, extra]} if result and extra else result or extra
    problem = _non_finite(result)
    if problem:
        raise UsageError(f"filter value {problem}: NaN and infinity match nothing; give a finite number")
    return result or None


def _non_finite(value: Any, path: str = "") -> str | None:
    """Where a filter holds NaN or +-Infinity (``NaN`` and ``1e999`` parse as such)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path or 'value'} is {value}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\t``, ``\\x1b``), for one table cell."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _ESCAPES.get(char) or _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _width(char: str) -> int:
    """Terminal columns of one character: 2 for wide East Asian ones, 0 for combining marks."""
    import unicodedata

    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cell(text: str, width: int, pad: bool = True) -> str:
    """``text`` cut to ``width`` terminal columns (an ellipsis marks a cut), padded to it when ``pad``."""
    columns = [_width(char) for char in text]
    if sum(columns) > width:
        used, kept = 0, 0
        while kept < len(text) and used + columns[kept] <= width - 1:
            used += columns[kept]
            kept += 1
        text, columns = text[:kept] + "…", columns[:kept] + [1]
    return text + " " * (width - sum(columns)) if pad else text


def hits_table(hits: list[Any]) -> str:
    """Search hits as an aligned text table (one line per hit, one more for its metadata)."""
    if not hits:
        return "(no results)\n"
    lines = [f"{'rank':>4}  {'score':>6}  {'id':<24}  text"]
    for rank, hit in enumerate(hits, 1):
        text = cell(printable(hit.text), 72, pad=False)
        lines.append(f"{rank:>4}  {hit.score:6.3f}  {cell(printable(hit.id), 24)}  {text}")
        if hit.metadata:
            metadata = cell(printable(json.dumps(hit.metadata, ensure_ascii=False)), 100, pad=False)
            lines.append(f"{'':>4}  {'':>6}  {'':<24}  {metadata}")
    return "\n".join(lines) + "\n"
