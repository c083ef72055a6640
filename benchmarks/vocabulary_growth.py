"""Experiment (issue 16): a larger vocabulary at the same size. Whole corpus words that the
tokenizer splits into pieces become tokens of their own; the dev tasks judge, STS-B test is reported.

Two ways, both starting each new row as the sum of the word's piece rows, so that the grown model
encodes a text as before (up to the texts whose words now split differently):

- ``after``: grow the shipped model, then move each new row towards the teacher's embedding of the
  word, mapped into the table's space by a ridge regression fitted on the words already in the
  vocabulary (blend ``beta``: 0 keeps the sum of pieces, 1 takes the mapped teacher vector; the
  row's norm is kept, or scaled by 0.7).
- ``before``: grow v1, then run the recipe's retrieval and similarity terms on the grown model (the
  new rows train like any other), to compare with the same terms on v1 without growth.

    HF_HUB_OFFLINE=1 python benchmarks/vocabulary_growth.py --min-count 3 \\
        --similarity-teacher FOLDER_OF_all-mpnet-base-v2 --work /tmp/growth.work

Words: lowercase ASCII words of 4+ letters of the recipe's corpus sources (standard-library
training docstrings, Debian descriptions, KJV, STS-B train sentences) that are not tokens yet,
seen at least ``--min-count`` times. Writes benchmarks/results/vocabulary_growth.md and .json.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEV_KEYS as KEYS, machine_line, write_dev_table  # noqa: E402



def corpus_words(model: Any, min_count: int) -> list[str]:
    """Words of the recipe's corpus sources that ``model``'s tokenizer splits, most frequent first."""
    from m2v_search.train import corpus

    normalizer, pre_tokenizer = model.tokenizer.normalizer, model.tokenizer.pre_tokenizer
    vocabulary = model.tokenizer.get_vocab(with_added_tokens=True)
    counts: collections.Counter[str] = collections.Counter()
    for source in (corpus.stdlib_training_docstrings, corpus.debian_descriptions, corpus.kjv_verses,
                   corpus.stsb_train_sentences):
        for text in source():
            counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return [w for w, n in counts.most_common() if n >= min_count and w not in vocabulary
            and len(w) >= 4 and w.isascii() and w.isalpha()]


def grow(model: Any, words: list[str], rows: np.ndarray | None = None) -> Any:
    """``model`` with ``words`` added to its vocabulary; their rows are ``rows`` (default: the sum
    of each word's piece rows)."""
    from m2v_search import StaticModel
    from m2v_search.distill.vocabulary import build_vocabulary

    grown = build_vocabulary(model.tokenizer, words=words)
    if grown.added != len(words):
        raise RuntimeError(f"{grown.skipped} of {len(words)} words were not added")
    if rows is None:
        rows = piece_sums(model, words)
    table = np.concatenate([np.asarray(model.embedding, np.float32), rows]).astype(np.float32)
    return StaticModel(table, grown.tokenizer, config=dict(model.config), normalize=True, weights=None)


def piece_sums(model: Any, words: list[str]) -> np.ndarray:
    table = np.asarray(model.embedding, np.float32)
    return np.stack([table[e.ids].sum(0) for e in model.tokenizer.encode_batch(words, add_special_tokens=False)])


def mapped_teacher(model: Any, teacher: Any, words: list[str]) -> tuple[np.ndarray, float]:
    """The teacher's unit vectors of ``words`` mapped into the table's space (unit rows), and the
    mean cosine of the map on 2,000 held-back vocabulary words."""
    from m2v_search.train.heldout import is_heldout_word

    vocabulary = model.tokenizer.get_vocab(with_added_tokens=True)
    known = [t for t in vocabulary if len(t) >= 3 and t.isascii() and t.isalpha() and not is_heldout_word(t)]
    target = np.asarray(model.embedding, np.float32)[[vocabulary[t] for t in known]]
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    source = teacher.encode(known, batch_size=256, normalize_embeddings=True)
    order = np.random.default_rng(0).permutation(len(known))
    check, fit = order[:2000], order[2000:]

    def ridge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ y)

    predicted = source[check] @ ridge(source[fit], target[fit])
    predicted /= np.linalg.norm(predicted, axis=1, keepdims=True)
    mapped = teacher.encode(words, batch_size=256, normalize_embeddings=True) @ ridge(source, target)
    return mapped / np.linalg.norm(mapped, axis=1, keepdims=True), float(np.mean(np.sum(predicted * target[check], 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-count", type=int, default=3, help="corpus occurrences a word needs")
    parser.add_argument("--similarity-teacher", type=Path, help="all-mpnet-base-v2's folder (for 'before')")
    parser.add_argument("--work", type=Path, help="folder for the similarity teacher's cached embeddings")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from common import dev_task_scorer

    from m2v_search import StaticModel
    from m2v_search.train.recipe import load_recipe
    from m2v_search.train.terms import retrieval_term, similarity_term

    shipped, v1 = StaticModel.from_pretrained(), StaticModel.from_pretrained("m2v-base-v1")
    teacher, _, scores_of = dev_task_scorer(list(v1.tokens))
    words = corpus_words(shipped, args.min_count)
    rows: dict[str, dict[str, Any]] = {}

    def record(name: str, model: Any) -> Any:
        rows[name] = {"scores": scores_of(model), "vocabulary": model.vocabulary_size}
        print(name, {k: round(rows[name]["scores"][k], 2) for k in KEYS}, file=sys.stderr, flush=True)
        return model

    record("shipped m2v-base", shipped)
    sums = piece_sums(shipped, words)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    mapped, map_cosine = mapped_teacher(shipped, teacher, words)
    for beta, scale in ((0.0, 1.0), (0.5, 1.0), (0.5, 0.7), (1.0, 1.0), (1.0, 0.7)):
        blend = (1 - beta) * sums / norms + beta * mapped
        blend *= norms * scale / np.linalg.norm(blend, axis=1, keepdims=True)
        record(f"after: shipped + {len(words)} words, beta {beta:g}, norm x{scale:g}", grow(shipped, words, blend))
    if args.similarity_teacher is not None:
        recipe = load_recipe("default")
        work = args.work or Path("vocabulary-growth.work")
        for name, start in (("v1", v1), (f"v1 + {len(corpus_words(v1, args.min_count))} words",
                                         grow(v1, corpus_words(v1, args.min_count)))):
            model = record(f"before: {name}", start)
            model = record(f"before: {name}, retrieval term", retrieval_term(model, recipe.retrieval)[0])
            model = record(f"before: {name}, retrieval + similarity terms", similarity_term(
                model, recipe.similarity, args.similarity_teacher, work, show_progress_bar=False)[0])
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_line(), "min_count": args.min_count,
              "words": len(words), "map_cosine_on_held_back_words": map_cosine, "rows": rows}
    write_dev_table("vocabulary_growth", "A larger vocabulary (issue 16)",
                    f"{result['machine']} (run {result['date']}). {len(words)} corpus words seen {args.min_count}+ times "
                    f"added as tokens (rows start as the sum of their pieces). Teacher -> table map: mean cosine "
                    f"{map_cosine:.3f} on 2,000 held-back vocabulary words. Dev tasks choose (combined = their mean); "
                    "STS-B test is reported only.", result, ("model", "vocabulary", "vocabulary"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
