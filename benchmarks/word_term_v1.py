"""Experiment (issue 16): a token-level term in the fit. The shipped m2v-base (v1) trained further
on the MiniLM teacher's embeddings of single vocabulary words as well as sentences, against the
same continued training on sentences alone (the control), judged on the dev tasks and STS-B test.

Words: whole-word lowercase tokens of the tokenizer (3+ letters), minus the held-out words of
the word task (``dev_tasks.is_heldout_word``) and the held-out GCIDE headwords. Sentences: KJV verses, STS-B train sentences and
Debian descriptions (those available) as teacher targets (no stdlib text: the docstring dev task's modules stay
unseen). Each run fits from v1 (``m2v_search.train.fit``), then whitens its outputs over the
sentences, as the shipped recipe does.

    HF_HUB_OFFLINE=1 nice -n 10 python benchmarks/word_term_v1.py [--sentences 20000] [--runs 0 0.5 1]

``--runs`` are word shares: the number of words used, relative to the sentences (0: the control).
Writes benchmarks/results/word_term_v1.md and .json; models are saved under --output when given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, dev_task_scorer  # noqa: E402

KEYS = ["stsb_test", "stsb_dev", "word_agreement", "word_neighbours@10", "gcide_headword", "docstring", "combined"]


def training_words(tokens: list[str]) -> list[str]:
    from m2v_search.train import dev_tasks

    return [t for t in tokens if t.isalpha() and t.islower() and t.isascii() and len(t) >= 3
            and not dev_tasks.is_heldout_word(t) and not dev_tasks.is_heldout_headword(t)]


def training_sentences(count: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` sentences drawn from the sources available here, and the names of those sources."""
    from m2v_search.train import corpus

    readers = {"kjv": corpus.kjv_verses, "stsb-train": corpus.stsb_train_sentences, "debian": corpus.debian_descriptions}
    available = [name for name in readers if corpus.source_unavailable(name) is None]
    texts = [text for name in available for text in islice(readers[name](), count * 2)]
    unique = list(dict.fromkeys(t for t in texts if len(t.split()) >= 4))
    rng = np.random.default_rng(seed)
    return [unique[i] for i in rng.choice(len(unique), size=min(count, len(unique)), replace=False)], available


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=20_000)
    parser.add_argument("--runs", nargs="+", type=float, default=[0.0, 0.5, 1.0], help="word shares (0: control)")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    from m2v_search import StaticModel
    from m2v_search.train import dev_tasks
    from m2v_search.train.fit import fit
    from m2v_search.train.options import FitOptions
    from m2v_search.train.whiten import whiten

    v1 = StaticModel.from_pretrained()
    teacher, data, scores_of = dev_task_scorer(list(v1.tokens))

    words = training_words(list(v1.tokens))
    heldout = set(data.words)
    assert not heldout & set(words), "a held-out word is in the training words"
    sentences, sources = training_sentences(args.sentences, args.seed)
    started = time.perf_counter()
    word_targets = teacher.encode(words, batch_size=256, show_progress_bar=True)
    sentence_targets = teacher.encode(sentences, batch_size=64, show_progress_bar=True)
    teacher_seconds = time.perf_counter() - started
    rows: dict[str, dict] = {"v1 (shipped m2v-base)": {"scores": scores_of(v1)}}
    rng = np.random.default_rng(args.seed)
    for share in args.runs:
        count = min(len(words), int(round(share * len(sentences))))
        chosen = np.sort(rng.choice(len(words), size=count, replace=False)) if count else np.zeros(0, int)
        texts = sentences + [words[i] for i in chosen]
        targets = np.concatenate([sentence_targets, word_targets[chosen]])
        options = FitOptions(pca_dims=v1.dim, epochs=args.epochs, learning_rate=args.learning_rate, patience=2,
                             device="cpu", seed=args.seed)
        result = fit(v1, texts, targets, options)
        tuned = whiten(result.model, sentences)
        name = f"v1 + fit on sentences + {count} words" if count else "v1 + fit on sentences only (control)"
        rows[name] = {"scores": scores_of(tuned), "words": count, "best_epoch": result.best_epoch,
                      "seconds": result.seconds}
        print(name, json.dumps(rows[name]["scores"]), file=sys.stderr, flush=True)
        if args.output is not None:
            tuned.save_pretrained(args.output / f"words-{count}")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "sentences": len(sentences), "sources": sources, "training_words": len(words),
              "teacher_seconds": teacher_seconds, "learning_rate": args.learning_rate, "rows": rows,
              "selected": dev_tasks.select_candidate({k: v["scores"] for k, v in rows.items()},
                                                     rows["v1 (shipped m2v-base)"]["scores"])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "word_term_v1.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = ["# v1 trained further with single words as teacher targets (issue 16, token-level term)", "",
             f"{result['date']}, 2-core CPU. {result['sentences']} sentences ({', '.join(sources)}) and up to "
             f"{result['training_words']} training words (held-out words excluded); MiniLM teacher pass "
             f"{teacher_seconds:.0f} s; fit from v1 at learning rate {args.learning_rate:g}, then whitened. "
             f"`select_candidate` (0.5-point floor against v1 on every dev task) keeps: **{result['selected']}**.", "",
             "| model | " + " | ".join(KEYS) + " | best epoch | fit s |", "|---|" + "---:|" * (len(KEYS) + 2)]
    for name, row in rows.items():
        extra = f"{row['best_epoch']} | {row['seconds']:.0f}" if "seconds" in row else " | "
        lines.append(f"| {name} | " + " | ".join(f"{row['scores'][k]:.2f}" for k in KEYS) + f" | {extra} |")
    markdown = "\n".join(lines + [""])
    (RESULTS / "word_term_v1.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
