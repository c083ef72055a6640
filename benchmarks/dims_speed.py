"""Encode speed against table width (issue 16: "encode speed within 10% of v1"): the shipped
model, and its table padded with small random columns to 384 and 512 dims (same tokenizer, same
texts), timed in alternated rounds so a busy spell of the machine falls on every width.

    python benchmarks/dims_speed.py [--rounds 5]

Writes benchmarks/results/dims_speed.md, .json and .png (texts/s and the ratio to 256 dims).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_line  # noqa: E402

WIDTHS = (256, 384, 512)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    import numpy as np

    from m2v_search import StaticModel
    from m2v_search.distill.stsb import load_stsb

    shipped = StaticModel.from_pretrained()
    left, right, _ = load_stsb("test")
    texts = (left + right) * 8
    rng = np.random.default_rng(0)
    models = {}
    for width in WIDTHS:
        extra = rng.normal(scale=0.01, size=(shipped.embedding.shape[0], width - shipped.dim)).astype(np.float32)
        table = np.concatenate([shipped.embedding.astype(np.float32), extra], axis=1).astype(shipped.embedding.dtype)
        models[width] = StaticModel(table, shipped.tokenizer, normalize=True)
    speeds: dict[int, list[float]] = {width: [] for width in WIDTHS}
    for _ in range(args.rounds):
        for width, model in models.items():
            started = time.perf_counter()
            model.encode(texts)
            speeds[width].append(len(texts) / (time.perf_counter() - started))
    medians = {width: float(np.median(values)) for width, values in speeds.items()}
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_line(), "texts": len(texts),
              "rounds": args.rounds, "texts_per_s": medians,
              "ratio_to_256": {width: medians[width] / medians[256] for width in WIDTHS}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dims_speed.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = ["# Encode speed against table width (issue 16)", "",
             f"{result['machine']} (run {result['date']}). {len(texts)} STS-B test texts, the shipped tokenizer; "
             f"median of {args.rounds} alternated rounds.", "",
             "| dims | texts/s | ratio to 256 |", "|---:|---:|---:|"]
    lines += [f"| {width} | {medians[width]:,.0f} | {medians[width] / medians[256]:.2f}x |" for width in WIDTHS]
    (RESULTS / "dims_speed.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.bar([str(width) for width in WIDTHS], [medians[width] for width in WIDTHS], color="tab:blue")
    axis.set_xlabel("table dims")
    axis.set_ylabel("texts/s (median)")
    axis.set_title(f"encode speed by width: {result['date']}")
    figure.tight_layout()
    figure.savefig(RESULTS / "dims_speed.png", dpi=120)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
