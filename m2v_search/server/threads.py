"""Where CPU-bound request work runs: a few worker threads (not one per request), so that many
clients queue for the cores instead of fighting over the GIL and starving the event loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi.responses import Response

from m2v_search.server.errors import ApiError

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
    """A compact JSON response, without validating ``body`` against a response model again.

    Raises:
        ApiError: (500) the body holds NaN or infinity, which JSON cannot carry.
    """
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)  # ASCII: lone surrogates stay escaped
    except ValueError:
        raise ApiError(500, "the result holds a number JSON cannot carry (NaN or infinity)",
                       code="non_finite_result") from None
    return Response(text, media_type="application/json")
