"""The terms a recipe applies to its chosen model after the fit, each from its recipe section:
the retrieval term (query -> document pairs, ``m2v_search.train.contrastive``), then the
sentence-similarity term (a teacher's cosines on sentence pairs, ``m2v_search.train.similarity``),
then the word term (the teacher's cosines on pairs of single vocabulary words, the same code)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from m2v_search.model import StaticModel
from m2v_search.train.recipe import RetrievalSpec, SimilaritySpec, WordTermSpec

logger = logging.getLogger(__name__)

SIMILARITY_FEATURES = "similarity-features"
WORD_FEATURES = "word-features"


def retrieval_term(model: StaticModel, spec: RetrievalSpec) -> tuple[StaticModel, dict[str, Any]]:
    """``model`` tuned on the standard library's training query -> document pairs, and the term's report."""
    from m2v_search.train.contrastive import ContrastiveOptions, contrastive_finetune
    from m2v_search.train.pairs import training_pairs, usable_pairs

    pairs = usable_pairs(model, training_pairs(spec.pairs))
    options = ContrastiveOptions(anchor_weight=spec.anchor_weight, learning_rate=spec.learning_rate,
                                 epochs=spec.epochs, patience=spec.patience, train=spec.train)
    tuned, summary = contrastive_finetune(model, pairs.queries, pairs.documents, pairs.groups, options)
    logger.info("retrieval term on %d pairs: held-out MRR@10 %s -> %s", len(pairs.queries),
                summary["held_out_mrr@10_before"], summary["held_out_mrr@10_best"])
    return tuned, {"pairs": len(pairs.queries), "kinds": list(spec.pairs), **summary}


def similarity_pairs(model: StaticModel, spec: SimilaritySpec, stsb_dir: str | os.PathLike[str] | None = None
                     ) -> list[tuple[str, str]]:
    """The term's sentence pairs that ``model`` can encode: distinct, two different sentences,
    each with a known token (in file order, duplicates dropped; the first ``spec.max_pairs``).

    Raises:
        ValueError: fewer than 20 such pairs (the message names the file).
    """
    from m2v_search.train.corpus import stsb_train_pairs

    pairs = list(dict.fromkeys((a, b) for a, b in stsb_train_pairs(stsb_dir) if a and b and a != b))
    lengths = np.diff(model.tokenize_flat([text for pair in pairs for text in pair], model.max_length)[1])
    usable = [pair for pair, known in zip(pairs, (lengths > 0).reshape(-1, 2).all(1)) if known]
    if len(usable) < 20:
        where = f"{stsb_dir}/sts-train.csv" if stsb_dir is not None else "the STS-B package's sts-train.csv"
        raise ValueError(f"{where} gave {len(usable)} usable sentence pairs (two different sentences, each with a "
                         "token the model knows); the similarity term needs at least 20")
    return usable[:spec.max_pairs] if spec.max_pairs is not None else usable


def similarity_inputs(model: StaticModel, spec: SimilaritySpec, teacher: str | os.PathLike[str], work: Path, *,
                      stsb_dir: str | os.PathLike[str] | None = None, device: str = "cpu", teacher_dtype: str = "auto",
                      show_progress_bar: bool = True) -> tuple[list[str], list[str], np.ndarray]:
    """The term's pairs (first sentences, second sentences) and ``teacher``'s cosine of each.

    The teacher's embeddings of the sentences are kept in ``work / "similarity-features"``
    (resumable shards, like the fit's teacher pass), so a rerun does not embed them again.
    """
    pairs = similarity_pairs(model, spec, stsb_dir)
    return teacher_cosines(pairs, teacher, Path(work) / SIMILARITY_FEATURES, device, teacher_dtype,
                            show_progress_bar)


def teacher_cosines(pairs: list[tuple[str, str]], teacher: str | os.PathLike[str], features: Path, device: str,
                     teacher_dtype: str, show_progress_bar: bool) -> tuple[list[str], list[str], np.ndarray]:
    """The pairs split into first and second texts, and the teacher's cosine of each (its
    embeddings of the distinct texts cached in ``features``)."""
    from m2v_search.train.featurize import featurize, load_features

    texts = list(dict.fromkeys(text for pair in pairs for text in pair))
    row = {text: i for i, text in enumerate(texts)}
    folder = featurize(texts, teacher, features, device=device, dtype=teacher_dtype, batch_size=256,
                       shard_size=2_000, show_progress_bar=show_progress_bar)
    vectors = load_features(folder).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    first = [a for a, _ in pairs]
    second = [b for _, b in pairs]
    cosines = np.einsum("ij,ij->i", vectors[[row[a] for a in first]], vectors[[row[b] for b in second]])
    return first, second, cosines


def similarity_term(model: StaticModel, spec: SimilaritySpec, teacher: str | os.PathLike[str], work: Path, *,
                    stsb_dir: str | os.PathLike[str] | None = None, device: str = "cpu", teacher_dtype: str = "auto",
                    show_progress_bar: bool = True) -> tuple[StaticModel, dict[str, Any]]:
    """``model`` tuned to follow ``teacher``'s cosines on the spec's sentence pairs (``similarity_inputs``),
    and the term's report."""
    inputs = similarity_inputs(model, spec, teacher, work, stsb_dir=stsb_dir, device=device,
                               teacher_dtype=teacher_dtype, show_progress_bar=show_progress_bar)
    tuned, summary = _follow_teacher(model, spec, inputs, "similarity")
    return tuned, {**summary, "source": spec.pairs, "teacher": str(teacher)}


def word_pairs(model: StaticModel, spec: WordTermSpec) -> list[tuple[str, str]]:
    """``spec.pairs`` random pairs of two different vocabulary words that ``model`` can encode
    (``corpus.vocabulary_words``: never a held-out word of the dev tasks)."""
    from m2v_search.train.corpus import vocabulary_words

    words = vocabulary_words(model.tokens, spec.words)
    lengths = np.diff(model.tokenize_flat(words, model.max_length)[1])
    words = [word for word, length in zip(words, lengths) if length > 0]
    if len(words) < 2:
        raise ValueError(f"the word term needs at least 2 vocabulary words the model can encode, got {len(words)}")
    rng = np.random.default_rng(spec.seed)
    first, second = rng.integers(0, len(words), (2, spec.pairs * 2))
    kept = np.flatnonzero(first != second)[:spec.pairs]
    return [(words[a], words[b]) for a, b in zip(first[kept], second[kept])]


def word_term(model: StaticModel, spec: WordTermSpec, teacher: str | os.PathLike[str], work: Path, *,
              device: str = "cpu", teacher_dtype: str = "auto", show_progress_bar: bool = True
              ) -> tuple[StaticModel, dict[str, Any]]:
    """``model`` tuned to follow ``teacher``'s cosines between vocabulary words (``word_pairs``;
    the teacher's word embeddings cached in ``work / "word-features"``), and the term's report."""
    first, second, cosines = teacher_cosines(word_pairs(model, spec), teacher, Path(work) / WORD_FEATURES, device,
                                              teacher_dtype, show_progress_bar)
    tuned, summary = _follow_teacher(model, spec, (first, second, cosines), "word_term")
    return tuned, {**summary, "words": len(set(first) | set(second)), "teacher": str(teacher)}


def _follow_teacher(model: StaticModel, spec: SimilaritySpec | WordTermSpec,
                    inputs: tuple[list[str], list[str], np.ndarray], name: str) -> tuple[StaticModel, dict[str, Any]]:
    """``similarity_finetune`` with a section's settings on (first, second, teacher cosines);
    the tuned model records them under ``name``."""
    from m2v_search.train.similarity import SimilarityOptions, similarity_finetune

    first, second, cosines = inputs
    options = SimilarityOptions(epochs=spec.epochs, batch_size=spec.batch_size, learning_rate=spec.learning_rate,
                                anchor_weight=spec.anchor_weight, train=spec.train, patience=spec.patience)
    tuned, summary = similarity_finetune(model, first, second, cosines, options, record_as=name)
    logger.info("%s term on %d pairs: held-out Spearman %s -> %s", name, len(first),
                summary["held_out_spearman_before"], summary["held_out_spearman_best"])
    return tuned, {"pairs": len(first), **summary}
