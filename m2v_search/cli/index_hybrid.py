"""``m2v-index eval`` (retrieval quality and latency per search mode) and ``m2v-index reindex``
(add, rebuild or drop an index's lexical part)."""

from __future__ import annotations

import argparse
import logging
import sys

from m2v_search.cli.exit_codes import EXIT_OK, UsageError
from m2v_search.cli.groups import INDEX
from m2v_search.cli.index_common import emit, open_index, require_index
from m2v_search.cli.options import bounded_int, index_location_argument, local_directory, unit_interval

log = logging.getLogger("m2v_search.index")
MODES = ("dense", "lexical", "hybrid")


def _depths(text: str) -> list[int]:
    """``--recall-at``: comma-separated depths from 1 to 10000, sorted, without repeats."""
    depth = bounded_int(1, 10_000)
    depths = sorted({depth(part) for part in text.split(",") if part.strip()})
    if not depths:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers from 1 to 10000, got {text!r}")
    return depths


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    index_location_argument(parser)
    parser.add_argument("queries", metavar="QUERIES",
                        help='JSONL of {"query": ..., "relevant": [ids]}, or BEIR queries JSONL with --qrels '
                        '(- for stdin)')
    parser.add_argument("--qrels", metavar="TSV", help="BEIR qrels (query-id, corpus-id, score) for QUERIES (- for stdin)")
    parser.add_argument("--mode", action="append", choices=MODES,
                        help="mode to evaluate (repeatable; default every mode the index can serve)")
    parser.add_argument("--alpha", type=unit_interval, default=None,
                        help="hybrid: weight of the dense leg (default the index's, 0.4)")
    parser.add_argument("--recall-at", type=_depths, default=[10, 100], metavar="K,K",
                        help="recall depths (default 10,100)")
    parser.add_argument("--format", choices=["table", "json"], default="table")


@INDEX.command("eval", help="score search modes on queries with known relevant ids (MRR@10, nDCG@10, recall, "
               "latency)", options=("common", "threads", "model"), arguments=_eval_arguments)
def evaluate(args: argparse.Namespace) -> int:
    """Run ``m2v-index eval``."""
    from m2v_search.evaluate import evaluate_index, format_json, format_table, load_queries

    queries = load_queries(args.queries, args.qrels)
    index = open_index(args, needs_model=args.mode is not None and set(args.mode) != {"lexical"})
    try:
        _check_relevant_ids(index, queries, args)
        modes = list(dict.fromkeys(args.mode)) if args.mode else _servable_modes(index)
        log.info("evaluating %d queries on %s in mode(s) %s", len(queries), args.index_dir, ", ".join(modes))
        results = evaluate_index(index, queries, modes=modes, alpha=args.alpha, recall_at=args.recall_at)
    finally:
        index.close()
    sys.stdout.write((format_table(results) if args.format == "table" else format_json(results)) + "\n")
    sys.stdout.flush()
    return EXIT_OK


def _check_relevant_ids(index: object, queries: list, args: argparse.Namespace) -> None:
    """Refuse queries none of whose relevant ids is in the index (every score would be 0, silently);
    warn when some are missing (they count as misses)."""
    from m2v_search.evaluate import EvaluationDataError, unknown_relevant_ids

    unknown, total = unknown_relevant_ids(index, queries)
    source = args.qrels or args.queries
    if unknown and len(unknown) == total:
        raise EvaluationDataError(f"{source}: none of its {total} relevant ids is in {args.index_dir} "
                                  f"(e.g. {unknown[0]!r}); they must be ids of the indexed corpus")
    if unknown:
        log.warning("%s: %d of %d relevant ids are not in %s (e.g. %r); they count as misses",
                    source, len(unknown), total, args.index_dir, unknown[0])


def _servable_modes(index: object) -> list[str]:
    """The modes an index can run without more input: lexical needs a lexical part, dense a model."""
    lexical = getattr(index, "lexical", None) is not None
    has_model = not getattr(index, "external_vectors", False)
    modes = (["dense"] if has_model else []) + (["lexical"] if lexical else []) + \
        (["hybrid"] if lexical and has_model else [])
    if not modes:
        raise UsageError(f"{getattr(index, 'path', 'the index')} holds vectors computed elsewhere and no lexical "
                         "part: nothing to evaluate from text queries")
    return modes


def _reindex_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index_dir", type=local_directory, metavar="DIR")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--lexical", action="store_true", help="build (or rebuild) the lexical part from the stored texts")
    what.add_argument("--no-lexical", action="store_true", help="remove the lexical part (dense search only)")
    parser.add_argument("--lexical-language", default=None, metavar="LANG",
                        help="language of the lexical part's stemmer and stopwords (default: the current lexical "
                             "part's, else english)")


@INDEX.command("reindex", help="add, rebuild or remove the lexical (BM25) part of DIR",
               options=("common", "threads", "model"), arguments=_reindex_arguments)
def reindex(args: argparse.Namespace) -> int:
    """Run ``m2v-index reindex``."""
    from m2v_search.cli.index_write import lexical_setting
    from m2v_search.index.locking import WriterLock

    setting = lexical_setting(args)  # the language is checked before the lock is taken
    require_index(args.index_dir)  # a mistyped DIR must not be created by taking its lock
    with WriterLock.for_directory(args.index_dir):
        index = open_index(args, saves_unencoded=True)
        try:
            if setting and args.lexical_language is None and index.lexical is not None:  # keep its language
                setting = index.lexical.analyzer.language
            index.reindex_lexical(setting if isinstance(setting, str) else None)
            index.save()
            summary = {"command": "reindex", "directory": str(args.index_dir), "lexical": bool(setting),
                       "language": setting or None, "documents": len(index)}
        finally:
            index.close()
    emit(summary)
    return EXIT_OK
