"""``m2v-index``: build, search, add to, delete from, inspect and verify an index directory.

Results go to stdout (JSON lines by default, ``--format table`` for people); progress and logs
go to stderr. Exit codes: 0 ok, 1 unexpected error, 2 usage error (bad arguments, no such
index), 3 bad input (corpus or queries), 4 corrupt index, 5 index locked by another writer,
6 model problem (mismatch with the index, or cannot be loaded), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT, EXIT_CORRUPT, EXIT_LOCKED, EXIT_MODEL = 0, 1, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130
log = logging.getLogger("m2v_search.index")


class UsageError(Exception):
    """Bad command-line arguments found after parsing."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with _logging_to_stderr(args.quiet):
        return _run(parser, args)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from m2v_search.errors import ModelLoadError
    from m2v_search.index.errors import (
        CorpusError,
        IndexCorruptError,
        IndexLockedError,
        IndexNotFoundError,
        ModelMismatchError,
    )

    try:
        if getattr(args, "threads", None):
            import faiss

            faiss.omp_set_num_threads(args.threads)
        return int(args.handler(args) or 0)
    except UsageError as error:
        parser.error(str(error))  # exits 2
        return EXIT_USAGE
    except IndexNotFoundError as error:
        return _fail(error, EXIT_USAGE)
    except CorpusError as error:
        return _fail(error, EXIT_INPUT)
    except IndexCorruptError as error:
        return _fail(error, EXIT_CORRUPT)
    except IndexLockedError as error:
        return _fail(error, EXIT_LOCKED)
    except (ModelMismatchError, ModelLoadError) as error:
        return _fail(error, EXIT_MODEL)
    except KeyboardInterrupt:
        print("m2v-index: interrupted; the index on disk is unchanged (use --resume to continue a build)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        return EXIT_OK


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (not when it was made)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


@contextmanager
def _logging_to_stderr(quiet: bool) -> Iterator[None]:
    """For one command: our logs on stderr (info unless --quiet), other libraries' only from
    warnings up; the loggers are put back as they were afterwards (main() may run in-process)."""
    ours, faiss_logger = logging.getLogger("m2v_search"), logging.getLogger("faiss")
    saved = (ours.handlers[:], ours.propagate, ours.level, faiss_logger.level)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("m2v-index: %(message)s"))
    ours.handlers[:] = [handler]
    ours.propagate = False
    ours.setLevel(logging.WARNING if quiet else logging.INFO)
    faiss_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ours.handlers[:], ours.propagate = saved[0], saved[1]
        ours.setLevel(saved[2])
        faiss_logger.setLevel(saved[3])


def _fail(error: Exception, code: int) -> int:
    print(f"m2v-index: error: {error}", file=sys.stderr)
    return code


# ---------------------------------------------------------------------- commands
def _build(args: argparse.Namespace) -> int:
    from m2v_search.index.build import build_index
    from m2v_search.index.factory import parse_size

    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    budget = _size(args.memory_budget, parse_size)
    if args.engine == "dask":
        return _build_dask(args, budget)
    if args.scheduler:
        raise UsageError("--scheduler needs --engine dask")
    corpus = _reader(args, args.corpus)
    report = build_index(corpus, args.output, model=args.model, index=args.index, factory=args.factory,
                         memory_budget=budget, batch_size=args.batch_size, resume=args.resume,
                         checkpoint_every=args.checkpoint_every, allow_model_mismatch=args.force_model,
                         show_progress=not args.quiet)
    if corpus.skipped:
        log.warning("skipped %d invalid line(s) of %s", corpus.skipped, corpus.name)
    log.info("indexed %d records (%d added, %d replaced, %d unchanged) into %s in %.2f s (%.0f texts/s), "
             "index %s", report.records_read, report.added, report.replaced, report.unchanged, report.directory,
             report.seconds, report.texts_per_second, report.factory)
    _emit({"command": "build", **report.as_dict()})
    return EXIT_OK


def _build_dask(args: argparse.Namespace, budget: int | None) -> int:
    """``build --engine dask``: workers of a Dask cluster encode; see m2v_search.distributed."""
    if args.resume:
        raise UsageError("--resume is not supported with --engine dask (a failed Dask build starts again)")
    try:
        from m2v_search.distributed import build_index_dask
    except ImportError as error:  # pragma: no cover - dask not installed
        raise UsageError(f"--engine dask needs dask: pip install 'm2v-search[dask]' ({error})") from None
    fields = None
    if args.metadata_fields is not None:
        fields = [name.strip() for name in args.metadata_fields.split(",") if name.strip()]
    report = build_index_dask(args.corpus, args.output, model=args.model, scheduler=args.scheduler,
                              index=args.index, factory=args.factory, memory_budget=budget, id_field=args.id_field,
                              text_field=args.text_field, metadata_fields=fields, skip_invalid=args.skip_invalid,
                              batch_size=args.batch_size, show_progress=not args.quiet)
    if report.skipped_invalid:
        log.warning("skipped %d invalid line(s)", report.skipped_invalid)
    log.info("indexed %d records (%d added, %d replaced, %d unchanged) into %s in %.2f s (%.0f texts/s) on %s, "
             "index %s", report.records_read, report.added, report.replaced, report.unchanged, report.directory,
             report.seconds, report.texts_per_second, report.scheduler, report.factory)
    _emit({"command": "build", **report.as_dict()})
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    import time

    from m2v_search.index.build import _progress, stream_upsert
    from m2v_search.index.locking import WriterLock

    corpus = _reader(args, args.corpus)
    started = time.perf_counter()
    with WriterLock.for_directory(args.index_dir):
        index = _open(args)
        try:
            progress = _progress(not args.quiet, "Adding")
            try:
                read, added, replaced, unchanged = stream_upsert(index, corpus, batch_size=args.batch_size,
                                                                 progress=progress)
            finally:
                if progress is not None:
                    progress.close()
            if added or replaced:
                index.save()
            summary = {"command": "add", "directory": str(args.index_dir), "records_read": read, "added": added,
                       "replaced": replaced, "unchanged": unchanged, "skipped_invalid": corpus.skipped,
                       "documents": len(index), "seconds": round(time.perf_counter() - started, 3)}
        finally:
            index.close()
    if corpus.skipped:
        log.warning("skipped %d invalid line(s) of %s", corpus.skipped, corpus.name)
    _emit(summary)
    return EXIT_OK


def _delete(args: argparse.Namespace) -> int:
    from m2v_search.index.locking import WriterLock

    ids = list(args.ids)
    if args.ids_file:
        ids.extend(line.strip() for line in _text_lines(args.ids_file) if line.strip())
    if not ids:
        raise UsageError("give the ids to delete, or --ids-file FILE")
    with WriterLock.for_directory(args.index_dir):
        index = _open(args, load_model=False)
        try:
            removed = index.delete(ids)
            if removed:
                index.save()
            summary = {"command": "delete", "directory": str(args.index_dir), "requested": len(set(ids)),
                       "deleted": removed, "documents": len(index)}
        finally:
            index.close()
    _emit(summary)
    return EXIT_OK


def _search(args: argparse.Namespace) -> int:
    queries = list(args.query or [])
    if args.queries:
        queries.extend(line.rstrip("\r\n") for line in _text_lines(args.queries) if line.strip())
    if not queries:
        raise UsageError("give a query with -q TEXT or a file of queries with --queries FILE")
    if args.k < 1:
        raise UsageError("-k must be >= 1")
    filter_ = _filters(args.filter, args.filter_json)
    index = _open(args)
    try:
        results = index.search_batch(queries, args.k, filter=filter_, nprobe=args.nprobe, ef_search=args.ef_search)
    finally:
        index.close()
    out = sys.stdout
    if args.format == "table":
        for position, (query, hits) in enumerate(zip(queries, results)):
            if position:
                out.write("\n")
            out.write(f"query: {query}\n")
            out.write(_table(hits))
    else:
        for position, (query, hits) in enumerate(zip(queries, results)):
            for rank, hit in enumerate(hits, 1):
                out.write(json.dumps({"query": query, "query_index": position, "rank": rank, "id": hit.id,
                                      "score": round(hit.score, 6), "text": hit.text, "metadata": hit.metadata},
                                     ensure_ascii=False) + "\n")
    out.flush()
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from m2v_search.index.manifest import read_manifest

    manifest = read_manifest(Path(args.index_dir))
    model = manifest["model"]
    info = {
        "directory": str(args.index_dir),
        "documents": manifest.get("counts", {}).get("documents"),
        "vectors": manifest.get("counts", {}).get("vectors"),
        "deleted_pending_compaction": manifest.get("counts", {}).get("deleted"),
        "dim": manifest["dim"],
        "metric": manifest.get("metric"),
        "model": model.get("name"),
        "model_path": model.get("path"),
        "model_fingerprint": model.get("fingerprint"),
        "tokenizer_backend": model.get("tokenizer_backend"),
        "index_kind": manifest["index"].get("kind"),
        "factory": manifest["index"].get("factory"),
        "requested": manifest["index"].get("requested_factory") or manifest["index"].get("requested"),
        "search_params": manifest["index"].get("search_params"),
        "generation": manifest.get("generation"),
        "saved_at": manifest.get("saved_at"),
        "build": manifest.get("build"),
        "libraries": manifest.get("libraries"),
        "files": {name: entry.get("bytes") for name, entry in manifest["files"].items()},
    }
    if args.format == "table":
        width = max(len(key) for key in info)
        for key, value in info.items():
            shown = value if isinstance(value, (str, int, float)) or value is None else json.dumps(value)
            sys.stdout.write(f"{key:<{width}}  {shown}\n")
    else:
        _emit(info)
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from m2v_search.index.errors import IndexCorruptError

    index = _open(args)  # checksums, sizes, FAISS and SQLite loads, counts
    try:
        problems = index.verify()
        documents = len(index)
    finally:
        index.close()
    if problems:
        raise IndexCorruptError(f"{args.index_dir}: " + "; ".join(problems))
    _emit({"command": "verify", "directory": str(args.index_dir), "ok": True, "documents": documents})
    return EXIT_OK


# ---------------------------------------------------------------------- helpers
def _open(args: argparse.Namespace, load_model: bool = True) -> Any:
    from m2v_search.index import VectorIndex

    return VectorIndex.open(args.index_dir, model=getattr(args, "model", None),
                            allow_model_mismatch=getattr(args, "force_model", False))


def _reader(args: argparse.Namespace, source: str) -> Any:
    from m2v_search.index.corpus import CorpusOptions, CorpusReader

    fields = None
    if args.metadata_fields is not None:
        fields = [name.strip() for name in args.metadata_fields.split(",") if name.strip()]
    options = CorpusOptions(id_field=args.id_field, text_field=args.text_field, metadata_fields=fields,
                            skip_invalid=args.skip_invalid)
    return CorpusReader(source, options)


def _text_lines(source: str) -> list[str]:
    from m2v_search.index.errors import CorpusError

    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            data = Path(source).read_bytes()
    except OSError as error:
        raise CorpusError(f"cannot read {source}: {error.strerror}") from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise CorpusError(f"{'<stdin>' if source == '-' else source}: line {line}: not valid UTF-8") from None


def _filters(pairs: list[str] | None, raw_json: str | None) -> dict[str, Any] | None:
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--filter takes key=value, got {pair!r}")
        try:
            parsed: Any = json.loads(value)
            if isinstance(parsed, (dict, list)):
                parsed = value
        except json.JSONDecodeError:
            parsed = value
        if key in result:  # the same key twice: membership
            previous = result[key]
            result[key] = [*(previous if isinstance(previous, list) else [previous]), parsed]
        else:
            result[key] = parsed
    if raw_json:
        try:
            extra = json.loads(raw_json)
        except json.JSONDecodeError as error:
            raise UsageError(f"--filter-json is not valid JSON: {error}") from None
        if not isinstance(extra, dict):
            raise UsageError("--filter-json must be a JSON object")
        result.update(extra)
    return result or None


def _size(text: str | None, parse: Any) -> int | None:
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _table(hits: list[Any]) -> str:
    if not hits:
        return "(no results)\n"
    lines = [f"{'rank':>4}  {'score':>6}  {'id':<24}  text"]
    for rank, hit in enumerate(hits, 1):
        text = " ".join(hit.text.split())
        text = text if len(text) <= 72 else text[:71] + "…"
        lines.append(f"{rank:>4}  {hit.score:6.3f}  {hit.id[:24]:<24}  {text}")
        if hit.metadata:
            lines.append(f"{'':>4}  {'':>6}  {'':<24}  {json.dumps(hit.metadata, ensure_ascii=False)[:100]}")
    return "\n".join(lines) + "\n"


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m2v-index", description="Index a text corpus with a static embedding model and FAISS, then search it.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 bad input, 4 corrupt index, 5 locked, 6 model problem.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bar or info logs on stderr")
    common.add_argument("--threads", type=int, default=None, help="FAISS threads (default: all cores)")
    corpus = argparse.ArgumentParser(add_help=False)
    corpus.add_argument("--id-field", default=None, help="id field (default: id, else BEIR _id, else line number)")
    corpus.add_argument("--text-field", default="text", help="text field (default: text)")
    corpus.add_argument("--metadata-fields", default=None,
                        help="comma-separated fields kept as metadata (default: the 'metadata' object, "
                             "or every other field)")
    corpus.add_argument("--batch-size", type=int, default=4096, help="records encoded per batch")
    corpus.add_argument("--skip-invalid", action="store_true", help="skip malformed lines and report how many")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", default=None,
                       help="model name or folder (build: default the bundled model; others: the index's model)")
    model.add_argument("--force-model", action="store_true",
                       help="use --model even if it differs from the model the index was built with")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", parents=[common, corpus, model], help="index a JSONL corpus into DIR")
    build.add_argument("corpus", metavar="CORPUS", help="JSONL or JSONL.gz file, or - for stdin")
    build.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="index directory")
    build.add_argument("--index", default="auto", choices=["auto", "flat", "hnsw", "ivf", "ivf-pq"],
                       help="index type (default auto: exact flat for small corpora, HNSW or IVF-PQ beyond)")
    build.add_argument("--factory", default=None, help="FAISS factory string (overrides --index)")
    build.add_argument("--memory-budget", default=None, help="memory for auto's choice, e.g. 4G")
    build.add_argument("--resume", action="store_true", help="continue an interrupted build from its checkpoint")
    build.add_argument("--checkpoint-every", type=int, default=100_000, metavar="N",
                       help="save a resumable checkpoint every N records (0: never)")
    build.add_argument("--engine", choices=["local", "dask"], default="local",
                       help="local: this process; dask: encode on a Dask cluster (CORPUS may then be a glob)")
    build.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler address (default: start a local cluster, one worker per core)")
    build.set_defaults(handler=_build)

    search = commands.add_parser("search", parents=[common, model], help="search DIR")
    search.add_argument("index_dir", type=Path, metavar="DIR")
    search.add_argument("-q", "--query", action="append", help="query text (repeatable)")
    search.add_argument("--queries", metavar="FILE", help="file with one query per line (- for stdin)")
    search.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    search.add_argument("--filter", action="append", metavar="KEY=VALUE",
                        help="metadata equality (repeatable; a key given twice means either value)")
    search.add_argument("--filter-json", metavar="JSON", help='filter object, e.g. \'{"year": {"$gte": 2020}}\'')
    search.add_argument("--format", choices=["jsonl", "table"], default="jsonl")
    search.add_argument("--nprobe", type=int, default=None, help="IVF lists probed (default: the index's)")
    search.add_argument("--ef-search", type=int, default=None, help="HNSW efSearch (default: the index's)")
    search.set_defaults(handler=_search)

    add = commands.add_parser("add", parents=[common, corpus, model], help="add or replace (upsert) records")
    add.add_argument("index_dir", type=Path, metavar="DIR")
    add.add_argument("corpus", metavar="CORPUS", help="JSONL or JSONL.gz file, or - for stdin")
    add.set_defaults(handler=_add)

    delete = commands.add_parser("delete", parents=[common, model], help="delete records by id")
    delete.add_argument("index_dir", type=Path, metavar="DIR")
    delete.add_argument("ids", nargs="*", metavar="ID")
    delete.add_argument("--ids-file", metavar="FILE", help="file with one id per line (- for stdin)")
    delete.set_defaults(handler=_delete)

    info = commands.add_parser("info", parents=[common], help="show the model, counts and index type of DIR")
    info.add_argument("index_dir", type=Path, metavar="DIR")
    info.add_argument("--format", choices=["json", "table"], default="table")
    info.set_defaults(handler=_info)

    verify = commands.add_parser("verify", parents=[common, model], help="check checksums and consistency of DIR")
    verify.add_argument("index_dir", type=Path, metavar="DIR")
    verify.set_defaults(handler=_verify)
    return parser


if __name__ == "__main__":
    sys.exit(main())
