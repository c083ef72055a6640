"""The starting model of a recipe: a plain distill of the teacher, made as ``InitSpec`` says."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from m2v_search.model import StaticModel
from m2v_search.train.recipe import InitSpec

INIT_CARD_KEYS = ("token input", "pooling", "pca", "sif", "vocabulary changes")


def corpus_tokens(teacher: str | os.PathLike[str], texts: Sequence[str]) -> list[str]:
    """The teacher's vocabulary tokens that ``texts`` use (no special tokens), sorted.

    Raises:
        FileNotFoundError: the teacher folder has no ``tokenizer.json``.
    """
    from tokenizers import Tokenizer

    path = Path(teacher) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: init vocabulary 'corpus' needs the teacher's tokenizer.json")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    used: set[str] = set()
    for start in range(0, len(texts), 10_000):
        for encoding in tokenizer.encode_batch(list(texts[start:start + 10_000]), add_special_tokens=False):
            used.update(encoding.tokens)
    return sorted(used)


def distill_init(spec: InitSpec, teacher: str | os.PathLike[str], *, corpus: Sequence[str] | None = None,
                 device: str = "auto", show_progress_bar: bool = True) -> StaticModel:
    """Distil the teacher as ``spec`` says (``m2v_search.distill``, float16).

    Args:
        spec: the recipe's init settings.
        teacher: the teacher's local folder.
        corpus: the training texts (needed when ``spec`` takes SIF frequencies or the
            vocabulary from the corpus).
        device: "auto", "cpu", "cuda", ...
        show_progress_bar: tqdm bars on stderr.

    Returns:
        The plain static model; its ``config["recipe"]`` says how it was made.

    Raises:
        ValueError: ``spec`` needs the corpus and none was given.
    """
    from m2v_search.distill import distill
    from m2v_search.train.corpus import stdlib_docstring_paragraphs

    if corpus is None and (spec.sif_corpus == "corpus" or spec.vocabulary == "corpus"):
        raise ValueError("this init takes SIF frequencies or its vocabulary from the corpus: pass corpus=")
    sif_corpus, sif_name = None, ""
    if spec.sif_corpus == "stdlib-docstring-paragraphs":
        sif_corpus = stdlib_docstring_paragraphs()
        sif_name = f"Python {sys.version_info[0]}.{sys.version_info[1]} standard-library docstring paragraphs"
    elif spec.sif_corpus == "corpus":
        sif_corpus, sif_name = list(corpus or []), "training corpus texts"
    keep = corpus_tokens(teacher, corpus or []) if spec.vocabulary == "corpus" else None
    model = distill(teacher, pca_dims=spec.pca_dims, pca_whiten=spec.pca_whiten, sif_coefficient=spec.sif_coefficient,
                    sif_corpus=sif_corpus, keep_tokens=keep, token_context=spec.token_context, pooling=spec.pooling,
                    device=device, show_progress_bar=show_progress_bar)
    recipe = model.config["recipe"]
    if sif_name:
        recipe["sif"] = recipe["sif"].replace("corpus texts", sif_name)
    if keep is not None:
        recipe["vocabulary changes"] += f"; only the {len(keep)} teacher tokens the training corpus uses"
    return model


def describe_init(model: StaticModel) -> str:
    """One line for the model card: how the starting model was distilled."""
    recipe = model.config.get("recipe") or {}
    return "; ".join(f"{key}: {recipe[key]}" for key in INIT_CARD_KEYS if key in recipe)
