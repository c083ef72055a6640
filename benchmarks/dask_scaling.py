"""Dask build throughput at 1 and 2 workers beside the single-machine build, and driver peak memory.

Same model (the bundled m2v-base), same GCIDE definitions written to a temporary JSONL (GPL
data: deleted afterwards, never stored), same index kind, each configuration in its own
driver process for its peak RSS. Dask workers are separate processes: their peak RSS is
reported apart. Throughput is records / wall time of the whole build (cluster start
included) and records / encode phase (partitions in, shards out).

One more row reads the corpus as Parquet from S3, stages the shards on S3 and uploads the
index there: the "S3" is moto's server on 127.0.0.1 (no network, no real object store), so
the row measures the object-storage code path and its overhead, not S3's latency or bandwidth.

    python benchmarks/dask_scaling.py                   # all ~172k definitions
    python benchmarks/dask_scaling.py --texts 20000     # quick
    python benchmarks/dask_scaling.py --no-s3           # without the Parquet-on-S3 row
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, gcide_definitions, machine_line, peak_rss_mib, run_worker, write_report  # noqa: E402

SCRIPT = Path(__file__).resolve()
BUCKET = "m2v-bench"
S3_ENV = {"AWS_ACCESS_KEY_ID": "benchmark", "AWS_SECRET_ACCESS_KEY": "benchmark", "AWS_DEFAULT_REGION": "us-east-1"}


def worker(args: argparse.Namespace) -> dict:
    """One build in this process: ``single`` or ``dask`` with ``--workers``."""
    from m2v_search.index.manifest import read_manifest

    started = time.perf_counter()
    if args.engine == "single":
        from m2v_search.index.build import build_index
        from m2v_search.index.corpus import CorpusReader

        report = build_index(CorpusReader(args.corpus), args.out, index=args.index, show_progress=False)
        phases, workers_rss = {}, []
    else:
        import resource

        from distributed import Client, LocalCluster

        from m2v_search.distributed import build_index_dask

        staging = f"s3://{BUCKET}/staging" if args.engine == "dask-s3" else None
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=40) as cluster, Client(cluster) as client:
            report = build_index_dask(args.corpus, args.out, client=client, index=args.index, staging_dir=staging,
                                      partition_size=args.partition_mb << 20, show_progress=False)
            workers_rss = sorted(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024).values())
        phases = report.phases
    seconds = time.perf_counter() - started
    if args.engine == "dask-s3":  # the manifest as uploaded (not the index: loading it would count in the RSS)
        from m2v_search.index.urls import filesystem

        fs, root = filesystem(args.out)
        manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
    else:
        manifest = read_manifest(Path(args.out))
    documents, factory = manifest["counts"]["documents"], manifest["index"]["factory"]
    return {"engine": args.engine, "workers": args.workers, "records": report.records_read, "documents": documents,
            "factory": factory, "seconds": seconds, "phases": phases, "driver_rss_mib": peak_rss_mib(),
            "worker_rss_mib": workers_rss}


def write_corpus(path: Path, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for number, text in enumerate(texts):
            out.write(json.dumps({"id": f"gcide-{number}", "text": text}, ensure_ascii=False) + "\n")


def write_parquet(path: Path, texts: list[str]) -> None:
    """The same rows as ``write_corpus``, as Parquet with 10k-row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": [f"gcide-{n}" for n in range(len(texts))], "text": texts})
    pq.write_table(table, path, row_group_size=10_000)


@contextlib.contextmanager
def loopback_s3() -> Iterator[str]:
    """moto's S3 server on a free 127.0.0.1 port, this process's environment pointed at it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.2)
        os.environ.update(S3_ENV, AWS_ENDPOINT_URL=endpoint, FSSPEC_S3_ENDPOINT_URL=endpoint)
        import s3fs

        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=None, help="number of definitions (default: all)")
    parser.add_argument("--index", default="flat", help="index kind for every build (default flat)")
    parser.add_argument("--partition-mb", type=int, default=4, help="JSONL megabytes per Dask partition")
    parser.add_argument("--no-s3", action="store_true", help="skip the Parquet-on-S3 row (moto on loopback)")
    parser.add_argument("--report-name", default="dask_scaling",
                        help="results/NAME.md and NAME.png (default dask_scaling)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="single", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    texts = gcide_definitions(args.texts)
    scratch = Path(tempfile.mkdtemp(prefix="dask-scaling-"))
    runs = []
    try:
        full, half = scratch / "full.jsonl", scratch / "half.jsonl"
        write_corpus(full, texts)
        write_corpus(half, texts[: len(texts) // 2])
        plan = [("single", 0, full), ("dask", 1, full), ("dask", 2, full), ("single", 0, half), ("dask", 2, half)]
        for number, (engine, workers, corpus) in enumerate(plan):
            runs.append(run_one(engine, workers, str(corpus), str(scratch / f"index-{number}"), corpus.name, args))
        if not args.no_s3:
            with loopback_s3():
                import s3fs

                write_parquet(scratch / "full.parquet", texts)
                s3fs.S3FileSystem().put_file(str(scratch / "full.parquet"), f"{BUCKET}/corpus/full.parquet")
                runs.append(run_one("dask-s3", 2, f"s3://{BUCKET}/corpus/*.parquet", f"s3://{BUCKET}/index", "full.jsonl",
                                    args))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(runs, args)


def run_one(engine: str, workers: int, corpus: str, out: str, corpus_name: str, args: argparse.Namespace) -> dict:
    """One build in a fresh driver process (for its peak RSS); the local output is deleted afterwards."""
    print(f"running {engine} workers={workers} on {corpus}", file=sys.stderr)
    result = run_worker(SCRIPT, ["--engine", engine, "--workers", str(workers), "--corpus", corpus, "--out", out,
                                 "--index", args.index, "--partition-mb", str(args.partition_mb)])
    result["corpus"] = corpus_name
    if "://" not in out:
        shutil.rmtree(out, ignore_errors=True)
    return result


def report(runs: list[dict], args: argparse.Namespace) -> None:
    single_full = next(r for r in runs if r["engine"] == "single" and r["corpus"] == "full.jsonl")
    lines = [
        "# Dask build scaling",
        "",
        f"{machine_line()}. GCIDE definitions, bundled m2v-base, index `{args.index}`, "
        f"{args.partition_mb} MiB partitions, local cluster (processes, 1 thread each). The machine is shared "
        "with other work: timings are noisy.",
        "",
        "| build | records | whole build (s) | texts/s | vs single | encode phase (s) | encode texts/s | "
        "driver peak RSS (MiB) | worker peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        name = "single machine" if r["engine"] == "single" else f"dask, {r['workers']} worker(s)"
        if r["engine"] == "dask-s3":
            name += ", Parquet on S3 (moto, loopback), staging and output on S3"
        rate = r["records"] / r["seconds"]
        encode = r["phases"].get("encode")
        encode_cells = (f"{encode:.1f} | {r['records'] / encode:,.0f}" if encode else "- | -")
        workers = ", ".join(f"{v:.0f}" for v in r["worker_rss_mib"]) or "-"
        ratio = rate / (single_full["records"] / single_full["seconds"]) if r["corpus"] == "full.jsonl" else None
        lines.append(f"| {name} | {r['records']:,} | {r['seconds']:.1f} | {rate:,.0f} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}x'} | {encode_cells} | {r['driver_rss_mib']:.0f} | "
                     f"{workers} |")
    lines += ["", "Phases of the Dask builds (s): " + "; ".join(
        f"{r['workers']}w/{'s3-parquet' if r['engine'] == 'dask-s3' else r['corpus']}: "
        + ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
        for r in runs if r["engine"].startswith("dask")), "", scaling_line(runs), ""]
    write_report(args.report_name, "\n".join(lines))
    plot(runs, args.report_name)


def scaling_line(runs: list[dict]) -> str:
    """How time and driver memory grow from half to the whole corpus (2 workers, local JSONL)."""
    half = next(r for r in runs if r["engine"] == "dask" and r["workers"] == 2 and r["corpus"] == "half.jsonl")
    full = next(r for r in runs if r["engine"] == "dask" and r["workers"] == 2 and r["corpus"] == "full.jsonl")
    size = full["records"] / half["records"]
    encode = full["phases"]["encode"] / half["phases"]["encode"]
    return (f"Scaling with corpus size (2 workers): {size:.1f}x the records took {full['seconds'] / half['seconds']:.2f}x "
            f"the whole build time and {encode:.2f}x the encode phase (fixed costs, cluster start and commit, weigh "
            f"more on small corpora); the driver's peak RSS went from {half['driver_rss_mib']:.0f} to "
            f"{full['driver_rss_mib']:.0f} MiB ({full['driver_rss_mib'] / half['driver_rss_mib']:.2f}x): it holds one "
            "chunk of one shard (plus at most a 100k training sample), the docstore is on disk; workers hold one "
            "partition each.")


def plot(runs: list[dict], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = [r for r in runs if r["corpus"] == "full.jsonl"]
    names = ["single" if r["engine"] == "single" else f"dask {r['workers']}w" + (" s3" if r["engine"] == "dask-s3" else "")
             for r in full]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, [r["records"] / r["seconds"] for r in full], label="whole build")
    left.bar(names, [r["records"] / r["phases"]["encode"] if r["phases"].get("encode") else 0 for r in full],
             alpha=0.5, label="encode phase")
    left.set_ylabel("texts/s")
    left.set_title(f"{full[0]['records']:,} GCIDE definitions")
    left.legend()
    labels = [f"{'single' if r['engine'] == 'single' else str(r['workers']) + 'w'}"
              f"{' s3' if r['engine'] == 'dask-s3' else ''} {r['records'] // 1000}k" for r in runs]
    right.bar(labels, [r["driver_rss_mib"] for r in runs])
    right.set_ylabel("driver peak RSS (MiB)")
    right.set_title("driver memory")
    figure.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure.savefig(RESULTS / f"{name}.png", dpi=110)


if __name__ == "__main__":
    main()
