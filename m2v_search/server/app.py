"""The ASGI app: ``create_app`` builds it around a served index; ``serve`` runs it with uvicorn."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from fastapi.security import HTTPBearer

from m2v_search._version import __version__
from m2v_search.server.errors import install_error_handlers
from m2v_search.server.index_routes import health_router, index_router
from m2v_search.server.limits import ServerLimits
from m2v_search.server.middleware import BearerAuth, BodyLimit, check_api_key
from m2v_search.server.openai_routes import openai_router
from m2v_search.server.service import IndexService
from m2v_search.server.threads import WorkerThreads

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index import VectorIndex

log = logging.getLogger("m2v_search.server")

DESCRIPTION = """Search a static-embedding index over HTTP, and embed texts with its model through an
OpenAI-compatible `/v1/embeddings`. When the server was started with an API key, every route but
`/health` and these docs needs the header `Authorization: Bearer <key>`. Errors are JSON:
`{"error": {"message", "type", "param", "code"}}`."""


def create_app(index_or_path: VectorIndex | str | os.PathLike[str], *, api_key: str | None = None,
               limits: ServerLimits | None = None, read_only: bool = False) -> FastAPI:
    """An ASGI app serving an index.

    Args:
        index_or_path: an index directory (opened here, checksums verified, closed when the app
            stops) or an open :class:`~m2v_search.index.VectorIndex` (left open; writes go to its
            directory, so it must be saved: unsaved changes are not served after the first write).
        api_key: when given, requests need ``Authorization: Bearer <api_key>`` (401 otherwise); visible
            ASCII characters only.
        limits: request size and batch limits (default :class:`ServerLimits`).
        read_only: refuse writes (403).

    Returns:
        A FastAPI app; run it with uvicorn, or use :func:`serve`.

    Raises:
        ValueError: ``api_key`` holds characters HTTP clients cannot send (checked before the index opens).
        IndexNotFoundError: the directory holds no index.
        IndexCorruptError: a file of the index fails its checksum.
        ModelMismatchError, ModelLoadError: the index's model cannot be loaded.
    """
    if api_key is not None:
        check_api_key(api_key)  # the middleware is only built at the first request: fail here, not there
    limits = limits or ServerLimits()
    if isinstance(index_or_path, (str, os.PathLike)):
        service = IndexService.open(Path(index_or_path), writable=not read_only,
                                    max_pending_writes=limits.max_pending_writes)
    else:
        service = IndexService(index_or_path, owned=False, writable=not read_only,
                               max_pending_writes=limits.max_pending_writes)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="m2v-search", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.service = service
    app.state.limits = limits
    install_error_handlers(app)
    documented_auth = [Depends(HTTPBearer(auto_error=False))] if api_key else []
    workers = WorkerThreads(limits.compute_threads)
    app.include_router(openai_router(service, limits, workers), dependencies=documented_auth)
    app.include_router(index_router(service, limits, workers), dependencies=documented_auth)
    app.include_router(health_router(service))
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if api_key is not None:
        app.add_middleware(BearerAuth, api_key=api_key)  # added last: runs first, before the body is read
    return app


def api_key_from_env(variable: str | None) -> str | None:
    """The key in environment variable ``variable`` (None when no variable is named).

    Raises:
        ValueError: the variable is named but unset or empty (refusing to start without the key), or
            its key holds characters HTTP clients cannot send (spaces, non-ASCII).
    """
    if variable is None:
        return None
    key = os.environ.get(variable, "")
    if not key.strip():
        raise ValueError(f"--api-key-env {variable}: the environment variable {variable} is not set or empty")
    try:
        return check_api_key(key.strip())
    except ValueError as error:
        raise ValueError(f"--api-key-env {variable}: {error}") from None


class CannotListenError(OSError):
    """The server cannot listen on the address asked for (in use, not this machine's, or not allowed)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port``, ready to hand to uvicorn.

    Raises:
        CannotListenError: the address is in use, the host does not resolve to an address of this
            machine, or the port needs privileges; the message names the address.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections of a
    # socket whose protocol says TCP; without it every answer on a kept-alive connection waited for
    # the client's delayed ACK (~40 ms a request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise CannotListenError(error.errno, f"cannot listen on {where}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def serve(index_path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000,
          api_key_env: str | None = None, *, limits: ServerLimits | None = None, read_only: bool = False,
          log_level: str = "info", **uvicorn_options: Any) -> None:
    """Serve the index at ``index_path`` until interrupted.

    Args:
        index_path: the index directory.
        host: address to listen on; loopback by default (anything else is reachable from the network).
        port: TCP port (0: any free port).
        api_key_env: name of an environment variable holding the API key (None: no key needed).
        limits: request limits.
        read_only: refuse writes.
        log_level: uvicorn's log level.
        **uvicorn_options: passed to ``uvicorn.run``.

    Raises:
        ValueError: ``api_key_env`` names an unset variable.
        CannotListenError: the address is in use or not this machine's (checked before the index opens).
        IndexNotFoundError, IndexCorruptError, ModelMismatchError: the index cannot be opened.
    """
    import uvicorn

    api_key = api_key_from_env(api_key_env)
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach it can read and write the index "
                    "(use --api-key-env)", host or "every address")
    sock = listening_socket(host, port)
    try:
        app = create_app(index_path, api_key=api_key, limits=limits, read_only=read_only)
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, **uvicorn_options)
        bound = sock.getsockname()  # uvicorn says where it listens only for addresses it binds itself
        address = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
        logging.getLogger("uvicorn.error").info("Serving %s on http://%s:%d (docs at /docs; press CTRL+C to quit)",
                                                index_path, address, bound[1])
        server = uvicorn.Server(config)
        with _sigterm_as_interrupt():
            try:
                server.run(sockets=[sock])
            except KeyboardInterrupt:
                if not server.should_exit:  # before uvicorn took over the signals: a plain interrupt
                    raise
                # uvicorn re-raises the signal that stopped it after its graceful shutdown: a clean stop
    finally:
        sock.close()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the server runs (main thread only), so that
    ``kill`` stops it as Ctrl-C does: gracefully, then a normal return (exit status 0)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
