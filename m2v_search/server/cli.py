"""Command line of the server: ``python -m m2v_search.server INDEX`` (and ``m2v-index serve``,
which uses :func:`add_serve_arguments` and :func:`run_serve`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from m2v_search.server.limits import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HITS,
    DEFAULT_MAX_K,
    DEFAULT_MAX_PENDING_WRITES,
    DEFAULT_MAX_RESPONSE_TEXT,
    ServerLimits,
    default_compute_threads,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CORRUPT, EXIT_MODEL = 0, 1, 2, 4, 6  # as m2v-index's


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's arguments (INDEX, --host, --port, --api-key-env, limits) to ``parser``."""
    parser.add_argument("index_dir", metavar="INDEX", help="index directory to serve")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    parser.add_argument("--api-key-env", metavar="VAR", default=None,
                        help="require 'Authorization: Bearer <key>' with the key from environment variable VAR")
    parser.add_argument("--read-only", action="store_true", help="refuse writes (POST/DELETE /documents)")
    parser.add_argument("--max-body-bytes", type=_positive, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
                        help=f"largest request body (default {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-batch", type=_positive, default=DEFAULT_MAX_BATCH, metavar="N",
                        help=f"most texts, queries or documents per request (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--max-k", type=_positive, default=DEFAULT_MAX_K, metavar="N",
                        help=f"largest k of a search (default {DEFAULT_MAX_K})")
    parser.add_argument("--max-hits", type=_positive, default=DEFAULT_MAX_HITS, metavar="N",
                        help=f"largest number of queries times k in one search (default {DEFAULT_MAX_HITS})")
    parser.add_argument("--max-response-text", type=_positive, default=DEFAULT_MAX_RESPONSE_TEXT, metavar="N",
                        help=f"most characters of hit texts in one search answer (default {DEFAULT_MAX_RESPONSE_TEXT})")
    parser.add_argument("--max-pending-writes", type=_positive, default=DEFAULT_MAX_PENDING_WRITES, metavar="N",
                        help=f"writes allowed to wait for the writer (default {DEFAULT_MAX_PENDING_WRITES})")
    parser.add_argument("--request-threads", type=_positive, default=default_compute_threads(), metavar="N",
                        help="searches and embeddings computed at once; the rest queue "
                             f"(default {default_compute_threads()}: the cores, at most 8)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                        help="server log level on stderr (default info)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def run_serve(args: argparse.Namespace) -> int:
    """Serve ``args.index_dir`` until interrupted (the handler of ``m2v-index serve``).

    Bad options, an unset ``--api-key-env`` variable, an address it cannot listen on (in use,
    or not this machine's) or a missing ``serve`` extra are reported in one line on stderr
    (exit 2, or 1 for the extra); errors opening the index propagate, for the caller to map to
    its exit codes.

    Raises:
        IndexNotFoundError, IndexCorruptError, ModelMismatchError, ModelLoadError: the index
            cannot be opened.
    """
    import importlib.util

    from m2v_search.server.app import api_key_from_env

    try:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be in 0..65535, got {args.port}")
        limits = ServerLimits(max_body_bytes=args.max_body_bytes, max_batch=args.max_batch, max_k=args.max_k,
                              max_hits=args.max_hits, max_response_text=args.max_response_text,
                              max_pending_writes=args.max_pending_writes, compute_threads=args.request_threads)
        api_key_from_env(args.api_key_env)
    except ValueError as error:
        print(f"m2v-index serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"m2v-index serve: {' and '.join(missing)} not installed; pip install 'm2v-search[serve]'",
              file=sys.stderr)
        return EXIT_ERROR
    from m2v_search.server.app import CannotListenError, serve

    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs which CPU build it picked
    try:
        serve(args.index_dir, host=args.host, port=args.port, api_key_env=args.api_key_env, limits=limits,
              read_only=args.read_only, log_level=args.log_level)
    except CannotListenError as error:
        print(f"m2v-index serve: --host/--port: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m m2v_search.server INDEX [--host] [--port] [--api-key-env VAR] ...``"""
    from m2v_search.errors import ModelLoadError
    from m2v_search.index.errors import IndexCorruptError, IndexNotFoundError, ModelMismatchError

    parser = argparse.ArgumentParser(prog="python -m m2v_search.server", allow_abbrev=False,
                                     description="Serve an index over HTTP (search, upserts, OpenAI embeddings).")
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return run_serve(args)
    except IndexNotFoundError as error:
        return _fail(error, EXIT_USAGE)
    except IndexCorruptError as error:
        return _fail(error, EXIT_CORRUPT)
    except (ModelMismatchError, ModelLoadError) as error:
        return _fail(error, EXIT_MODEL)
    except KeyboardInterrupt:
        return EXIT_OK


def _fail(error: Exception, code: int) -> int:
    print(f"m2v-index serve: {error}", file=sys.stderr)
    return code
