"""HTTP server throughput and latency: `/v1/embeddings` and `/search` at 1, 8 and 32 clients.

Builds an index of GCIDE definitions in a temporary folder (GPL data: deleted afterwards),
starts `python -m m2v_search.server` on a free loopback port in its own process, and drives it
from this process with aiohttp: each level sends a bounded number of requests
(and stops early at a time cap), `clients` requests in flight at once. Reports requests/s and
p50/p99 latency per endpoint and level to benchmarks/results/serve.md. The client shares the
machine with the server, so on a small machine the numbers include the client's own CPU.

    python benchmarks/serve.py                          # 20k definitions, 600 requests per level
    nice -n 10 python benchmarks/serve.py --texts 5000 --requests 200   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import gcide_definitions, machine_line, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LEVEL_TIME_CAP_S = 60.0


def build_index(folder: Path, texts: list[str]) -> None:
    from m2v_search.index import VectorIndex

    index = VectorIndex.create(folder)
    index.add_texts(texts, ids=[f"d{i}" for i in range(len(texts))],
                    metadatas=[{"part": i % 10} for i in range(len(texts))])
    index.save()
    index.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    import httpx

    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "m2v_search.server", str(folder), "--host", "127.0.0.1",
                                "--port", str(port), "--log-level", "warning"], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("the server did not start within 120 s")


async def drive(url: str, path: str, bodies: list[dict], clients: int, requests: int, writer: bool = False) -> dict:
    """Send ``requests`` POSTs (cycling through ``bodies``), ``clients`` at a time; latency stats.
    ``writer``: meanwhile, one more client upserts a document at a time (each one committed).

    aiohttp, not httpx: httpx's async connection pool itself slows down past ~10 connections
    (measured here: 711 -> 101 requests/s on GET /health from 8 to 32 clients; aiohttp 1535 -> 869).
    """
    import aiohttp

    latencies: list[float] = []
    failures = 0
    next_request = 0
    stop_at = time.monotonic() + LEVEL_TIME_CAP_S

    async def post(http: aiohttp.ClientSession, body: dict) -> int:
        async with http.post(path, json=body) as response:
            await response.read()
            return response.status

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal next_request, failures
        while next_request < requests and time.monotonic() < stop_at:
            body = bodies[next_request % len(bodies)]
            next_request += 1
            started = time.perf_counter()
            status = await post(http, body)
            latencies.append(time.perf_counter() - started)
            failures += status != 200

    writes = 0
    readers_done = asyncio.Event()

    async def write_loop(http: aiohttp.ClientSession) -> None:
        nonlocal writes
        while not readers_done.is_set():
            body = {"ids": [f"bench-{writes}"], "texts": [f"benchmark upsert number {writes}"]}
            async with http.post("/documents", json=body) as response:
                await response.read()
                writes += response.status == 200

    async def readers(http: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(client(http) for _ in range(clients)))
        readers_done.set()

    connector = aiohttp.TCPConnector(limit=clients + 1)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as http:
        # Open every connection and warm the server's caches before timing.
        await asyncio.gather(*(post(http, bodies[i % len(bodies)]) for i in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(readers(http), *([write_loop(http)] if writer else []))
        wall = time.perf_counter() - started
    values = np.array(latencies) * 1000
    return {"requests": len(latencies), "failures": failures, "rps": len(latencies) / wall, "writes": writes,
            "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def workloads(texts: list[str], model_id: str) -> list[tuple[str, str, list[dict], bool]]:
    rng = np.random.default_rng(0)
    picks = [texts[i] for i in rng.choice(len(texts), 512, replace=False)]
    queries = [" ".join(text.split()[:6]) for text in picks]
    searches = [{"query": query, "k": 10} for query in queries]
    return [
        ("embeddings, 1 text", "/v1/embeddings",
         [{"input": text, "model": model_id, "encoding_format": "base64"} for text in picks], False),
        ("embeddings, 32 texts", "/v1/embeddings",
         [{"input": picks[i:i + 32], "model": model_id, "encoding_format": "base64"} for i in range(0, 480, 32)],
         False),
        ("search, k=10", "/search", searches, False),
        ("search, k=10, filter", "/search",
         [{"query": query, "k": 10, "filter": {"part": 3}} for query in queries], False),
        ("search, k=10, while a writer upserts", "/search", searches, True),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=20_000, help="definitions indexed (default 20000)")
    parser.add_argument("--requests", type=int, default=600, help="requests per endpoint and level (default 600)")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels (default 1,8,32)")
    args = parser.parse_args()
    levels = [int(level) for level in args.clients.split(",")]
    if min(levels) < 1 or max(levels) > 64 or args.requests < 1:
        parser.error("--clients must be within 1..64 and --requests positive")
    texts = gcide_definitions(args.texts)
    folder = Path(tempfile.mkdtemp(prefix="m2v-serve-bench-"))
    process = None
    try:
        started = time.perf_counter()
        build_index(folder / "index", texts)
        print(f"indexed {len(texts)} definitions in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        port = free_port()
        process = start_server(folder / "index", port)
        url = f"http://127.0.0.1:{port}"
        import httpx

        model_id = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        rows = []
        for name, path, bodies, writer in workloads(texts, model_id):
            for clients in levels:
                result = asyncio.run(drive(url, path, bodies, clients, args.requests, writer))
                rows.append({"workload": name, "clients": clients, **result})
                print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        shutil.rmtree(folder, ignore_errors=True)
    report(rows, len(texts), args.requests)


def report(rows: list[dict], count: int, requests: int) -> None:
    lines = [
        "# HTTP server: requests/s and latency",
        "",
        f"{machine_line()}. Index: {count} GCIDE definitions, exact (flat) index, bundled model. Server:",
        "`python -m m2v_search.server` (one uvicorn process); client: aiohttp in another process on the",
        f"same machine, {requests} requests per row (capped at {LEVEL_TIME_CAP_S:.0f} s), over loopback.",
        "",
        "The last rows search while one more client upserts a document per request (each committed to",
        "disk as a new generation before it is answered); 'writes' counts those committed meanwhile.",
        "",
        "| workload | clients | requests | failed | requests/s | p50 ms | p99 ms | writes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['workload']} | {r['clients']} | {r['requests']} | {r['failures']} | {r['rps']:.0f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['writes'] or ''} |" for r in rows]
    write_report("serve", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
