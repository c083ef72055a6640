"""``m2v-index build``, ``add`` and ``delete``: the commands that write an index directory."""

from __future__ import annotations

import argparse
import logging
import time

from m2v_search.cli.exit_codes import EXIT_OK, UsageError
from m2v_search.cli.groups import INDEX
from m2v_search.cli.index_common import corpus_reader, emit, open_index, require_index, set_threads, text_lines
from m2v_search.cli.options import bounded_int, local_directory, metadata_field_list, non_negative_int
from m2v_search.index_kinds import BINARY_RESCORE, KINDS, MAX_RESCORE

log = logging.getLogger("m2v_search.index")

CORPUS_HELP = "JSONL(.gz) or Parquet file, a glob, an fsspec URL (s3://bucket/corpus/*.parquet), or - for stdin"


def _build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", metavar="CORPUS", help=CORPUS_HELP)
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="index directory, or an fsspec URL (s3://bucket/idx): built locally, then uploaded "
                             "with its manifest last")
    parser.add_argument("--index", default="auto", choices=list(KINDS),
                        help="index type (default auto: exact flat for small corpora, binary codes beyond; "
                             "m2v-index info says why)")
    parser.add_argument("--rescore", type=bounded_int(1, MAX_RESCORE), default=None, metavar="N",
                        help=f"binary kinds: candidates re-scored exactly per query (default {BINARY_RESCORE})")
    parser.add_argument("--factory", default=None, help="FAISS factory string (overrides --index)")
    parser.add_argument("--memory-budget", default=None, help="memory for auto's choice, e.g. 4G")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted build from its checkpoint (same corpus file)")
    parser.add_argument("--force", action="store_true",
                        help="build into a non-empty directory that holds no index (its other files are left alone)")
    parser.add_argument("--checkpoint-every", type=non_negative_int, default=100_000, metavar="N",
                        help="save a resumable checkpoint every N records (0: never)")
    parser.add_argument("--engine", choices=["local", "dask"], default="local",
                        help="local: this process; dask: encode on a Dask cluster (CORPUS may then be a glob)")
    parser.add_argument("--no-lexical", action="store_true",
                        help="no lexical (BM25) part: dense search only (add one later with reindex --lexical)")
    parser.add_argument("--lexical-language", default="english", metavar="LANG",
                        help="language of the lexical part's stemmer and stopwords (default english)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (default: start a local cluster, one worker per core)")
    parser.add_argument("--staging", default=None, metavar="DIR|URL",
                        help="--engine dask: where workers put their shards, a folder shared by all machines or "
                             "an fsspec URL (default DIR/.dask-build)")


@INDEX.command("build", help="index a JSONL or Parquet corpus into DIR",
               options=("common", "threads", "corpus", "model"),
               arguments=_build_arguments)
def build(args: argparse.Namespace) -> int:
    """Run ``m2v-index build``."""
    from m2v_search.index.build import build_index
    from m2v_search.index.remote import build_target
    from m2v_search.index.urls import is_url, redact

    set_threads(args)
    budget = _memory_budget(args.memory_budget)
    if args.engine == "dask":
        return _build_dask(args, budget)
    if args.scheduler or args.staging:
        raise UsageError("--scheduler and --staging need --engine dask")
    if args.resume and is_url(args.output):
        raise UsageError("--resume needs a local -o DIR (a URL output is built in a temporary folder)")
    corpus = corpus_reader(args, args.corpus)
    with build_target(args.output) as directory:  # a URL output is uploaded when the build is done
        report = build_index(corpus, directory, model=args.model, index=args.index, factory=args.factory,
                             memory_budget=budget, batch_size=args.batch_size, resume=args.resume,
                             checkpoint_every=args.checkpoint_every, allow_model_mismatch=args.force_model,
                             show_progress=not args.quiet, force=args.force, lexical=lexical_setting(args),
                             rescore=args.rescore)
    if is_url(args.output):
        report.directory = redact(args.output)
    if corpus.skipped:
        log.warning("skipped %d invalid line(s) of %s", corpus.skipped, corpus.name)
    log.info("indexed %d records (%d added, %d replaced, %d unchanged) into %s in %.2f s (%.0f texts/s), "
             "index %s", report.records_read, report.added, report.replaced, report.unchanged, report.directory,
             report.seconds, report.texts_per_second, report.factory)
    emit({"command": "build", **report.as_dict()})
    return EXIT_OK


def _build_dask(args: argparse.Namespace, budget: int | None) -> int:
    """``build --engine dask``: workers of a Dask cluster encode; see m2v_search.distributed."""
    if args.resume:
        raise UsageError("--resume is not supported with --engine dask (a failed Dask build starts again)")
    try:
        from m2v_search.distributed import build_index_dask
    except ImportError as error:  # pragma: no cover - dask not installed
        raise UsageError(f"--engine dask needs dask: pip install 'm2v-search[dask]' ({error})") from None
    report = build_index_dask(args.corpus, args.output, model=args.model, scheduler=args.scheduler,
                              index=args.index, factory=args.factory, memory_budget=budget, id_field=args.id_field,
                              text_field=args.text_field, metadata_fields=metadata_field_list(args.metadata_fields),
                              skip_invalid=args.skip_invalid, batch_size=args.batch_size,
                              staging_dir=args.staging, show_progress=not args.quiet,
                              lexical=lexical_setting(args), force=args.force)
    if report.skipped_invalid:
        log.warning("skipped %d invalid line(s)", report.skipped_invalid)
    log.info("indexed %d records (%d added, %d replaced, %d unchanged) into %s in %.2f s (%.0f texts/s) on %s, "
             "index %s", report.records_read, report.added, report.replaced, report.unchanged, report.directory,
             report.seconds, report.texts_per_second, report.scheduler, report.factory)
    emit({"command": "build", **report.as_dict()})
    return EXIT_OK


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index_dir", type=local_directory, metavar="DIR")
    parser.add_argument("corpus", metavar="CORPUS", help=CORPUS_HELP)


@INDEX.command("add", help="add or replace (upsert) records", options=("common", "threads", "corpus", "model"),
               arguments=_add_arguments)
def add(args: argparse.Namespace) -> int:
    """Run ``m2v-index add``."""
    from m2v_search.index.build import progress_bar, stream_upsert, warn_repeated_ids
    from m2v_search.index.locking import WriterLock

    corpus = corpus_reader(args, args.corpus)
    started = time.perf_counter()
    require_index(args.index_dir)  # a mistyped DIR must not be created by taking its lock
    with WriterLock.for_directory(args.index_dir):
        index = open_index(args, needs_model=True)
        try:
            with progress_bar(not args.quiet, "Adding") as progress:
                read, added, replaced, unchanged = stream_upsert(index, corpus, batch_size=args.batch_size,
                                                                 progress=progress)
            if added or replaced:
                index.save()
            summary = {"command": "add", "directory": str(args.index_dir), "records_read": read, "added": added,
                       "replaced": replaced, "unchanged": unchanged, "skipped_invalid": corpus.skipped,
                       "duplicate_ids": corpus.duplicates, "id_type_collisions": corpus.id_type_collisions,
                       "documents": len(index), "seconds": round(time.perf_counter() - started, 3)}
        finally:
            index.close()
    if corpus.skipped:
        log.warning("skipped %d invalid line(s) of %s", corpus.skipped, corpus.name)
    warn_repeated_ids(corpus)
    emit(summary)
    return EXIT_OK


def _delete_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index_dir", type=local_directory, metavar="DIR")
    parser.add_argument("ids", nargs="*", metavar="ID")
    parser.add_argument("--ids-file", metavar="FILE", help="file with one id per line (- for stdin)")


@INDEX.command("delete", help="delete records by id", options=("common", "threads", "model"),
               arguments=_delete_arguments)
def delete(args: argparse.Namespace) -> int:
    """Run ``m2v-index delete``."""
    from m2v_search.index.locking import WriterLock

    ids = list(args.ids)
    if args.ids_file:
        listed = [line.strip() for line in text_lines(args.ids_file, "ids file") if line.strip()]
        if not listed and not ids:
            from m2v_search.errors import InvalidInputError

            name = "<stdin>" if args.ids_file == "-" else args.ids_file
            raise InvalidInputError(f"ids file {name} holds no ids (it is empty or every line is blank)")
        ids.extend(listed)
    if not ids:
        raise UsageError("give the ids to delete, or --ids-file FILE")
    require_index(args.index_dir)
    with WriterLock.for_directory(args.index_dir):
        index = open_index(args, saves_unencoded=True)
        try:
            removed = index.delete(ids)
            if removed:
                index.save()
            summary = {"command": "delete", "directory": str(args.index_dir), "requested": len(set(ids)),
                       "deleted": removed, "documents": len(index)}
        finally:
            index.close()
    emit(summary)
    return EXIT_OK


def lexical_setting(args: argparse.Namespace) -> bool | str:
    """What ``--no-lexical`` / ``--lexical-language`` ask for: False, or the analyzer's language.

    Raises:
        UsageError: an unknown language (naming the known ones).
    """
    if args.no_lexical:
        return False
    from m2v_search.index.analyzer import DEFAULT_LANGUAGE, languages

    language = args.lexical_language or DEFAULT_LANGUAGE  # reindex's None: the caller may keep the current one
    if language not in languages():
        raise UsageError(f"--lexical-language {language!r} is not a Snowball language; use one of "
                         f"{', '.join(languages())}")
    return str(language)


def _memory_budget(text: str | None) -> int | None:
    from m2v_search.index.factory import parse_size

    if text is None:
        return None
    try:
        size = parse_size(text)
    except ValueError as error:
        raise UsageError(f"--memory-budget: {error}") from None
    if size < 1:
        raise UsageError(f"--memory-budget: {text!r} is no memory at all; give a size such as 4G")
    return size

