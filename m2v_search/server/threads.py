"""Where CPU-bound request work runs: a few worker threads (not one per request), so that many
clients queue for the cores instead of fighting over the GIL and starving the event loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi.responses import Response

T = TypeVar("T")


class WorkerThreads:
    """Runs functions in worker threads, at most ``threads`` at once (the others wait their turn).

    Args:
        threads: how many may run at once.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limiter = anyio.CapacityLimiter(threads)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread."""
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)


def json_response(body: Any) -> Response:
    """A compact JSON response, without validating ``body`` against a response model again."""
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), media_type="application/json")
