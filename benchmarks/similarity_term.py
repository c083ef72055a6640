"""Experiment (issue 16): the similarity term or the word term (``m2v_search.train.similarity``,
``m2v_search.train.terms``) on a starting model, over a grid of settings and seeds, judged on the
dev tasks (which choose) and STS-B test (reported only).

    HF_HUB_OFFLINE=1 python benchmarks/similarity_term.py --start m2v-base-v1.1 \\
        --teacher FOLDER_OF_all-mpnet-base-v2 --work /tmp/similarity.work \\
        --grid table:0.3:0.01 table:1:0.01 table:3:0.01 table:0.3:0.03 table:1:0.03 table:3:0.03 --seeds 0 1
    HF_HUB_OFFLINE=1 python benchmarks/similarity_term.py --term words --start m2v-base \\
        --teacher FOLDER_OF_all-MiniLM-L6-v2 --work /tmp/words.work --grid map:1:0.01 map:0.1:0.03 \\
        --results-name word_term
    HF_HUB_OFFLINE=1 python benchmarks/similarity_term.py --term word-sentence --start m2v-base \\
        --teacher FOLDER_OF_all-MiniLM-L6-v2 --work /tmp/ws.work --grid map:0.3:0.01 map:1:0.03 \\
        --seeds 0 1 2 --results-name word_sentence_term

The teacher's embeddings of the term's texts (STS-B train sentences, or vocabulary words) are
computed once into ``--work`` (the cache ``m2v train`` keeps); every run uses the same pairs and
cosines. Writes benchmarks/results/NAME.md, .json and .png (STS-B test against the dev mix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_line  # noqa: E402

KEYS = ["stsb_test", "stsb_dev", "word_agreement", "gcide_headword", "docstring", "combined"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="m2v-base-v1.1", help="starting model (name or folder)")
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's local folder")
    parser.add_argument("--work", type=Path, required=True, help="folder for the teacher's cached embeddings")
    parser.add_argument("--term", choices=("similarity", "words", "word-sentence", "query-document"),
                        default="similarity",
                        help="STS-B train sentence pairs (the similarity term), vocabulary word pairs (the word term), "
                             "(word, sentence) pairs (the word -> sentence experiment) or the retrieval term's "
                             "query -> document pairs with mismatched partners (the query -> document experiment)")
    parser.add_argument("--grid", nargs="+", default=["table:0.3:0.01", "table:1:0.01", "table:3:0.01",
                                                     "table:0.3:0.03", "table:1:0.03", "table:3:0.03"],
                        help="TRAIN:ANCHOR_WEIGHT:LEARNING_RATE[:BATCH_SIZE] per setting (TRAIN: table or map; "
                             "the batch size defaults to the term's)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--teacher-dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--results-name", default="similarity_term")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from common import dev_task_scorer

    from m2v_search import StaticModel
    from m2v_search.train.recipe import SimilaritySpec, WordTermSpec
    from m2v_search.train.similarity import SimilarityOptions, similarity_finetune
    from m2v_search.train.terms import WORD_FEATURES, similarity_inputs, teacher_cosines, word_pairs

    start = StaticModel.from_pretrained(args.start)
    if args.term == "similarity":
        first, second, cosines = similarity_inputs(start, SimilaritySpec(), args.teacher, args.work,
                                                   teacher_dtype=args.teacher_dtype)
        what = "STS-B train sentence pairs (their pairing only; human scores never read)"
        batch_size = SimilaritySpec().batch_size
    elif args.term == "words":
        first, second, cosines = teacher_cosines(word_pairs(start, WordTermSpec()), args.teacher,
                                                 args.work / WORD_FEATURES, "cpu", args.teacher_dtype, True)
        what = "random pairs of vocabulary words (never a held-out word of the dev tasks)"
        batch_size = WordTermSpec().batch_size
    elif args.term == "query-document":
        first, second, cosines = teacher_cosines(query_document_pairs(start), args.teacher,
                                                 args.work / "query-document-features", "cpu", args.teacher_dtype, True)
        what = ("the retrieval term's query -> document pairs of the training modules, each query also with a document "
                "of its own module and a random document")
        batch_size = WordTermSpec().batch_size
    else:
        first, second, cosines = teacher_cosines(word_sentence_pairs(start), args.teacher,
                                                 args.work / "word-sentence-features", "cpu", args.teacher_dtype, True)
        what = ("(vocabulary word, sentence) pairs: per word, one corpus sentence containing it (when one does) and "
                "one random sentence (STS-B train, 10k KJV verses, 10k training-module docstring sentences)")
        batch_size = WordTermSpec().batch_size
    print(f"{len(first)} pairs", file=sys.stderr, flush=True)
    _, _, scores_of = dev_task_scorer(list(start.tokens))
    rows = {f"start ({args.start})": {"scores": scores_of(start)}}
    for setting in args.grid:
        train, anchor_text, rate_text, *batch_text = setting.split(":")
        anchor, learning_rate = float(anchor_text), float(rate_text)
        batch = int(batch_text[0]) if batch_text else batch_size
        for seed in args.seeds:
            options = SimilarityOptions(train=train, anchor_weight=anchor, learning_rate=learning_rate, seed=seed,
                                        batch_size=batch)
            tuned, report = similarity_finetune(start, first, second, cosines, options)
            name = f"{train}, anchor {anchor:g}, lr {learning_rate:g}" + (f", batch {batch}" if batch_text else "") \
                + f", seed {seed}"
            rows[name] = {"scores": scores_of(tuned), "best_epoch": report["best_epoch"],
                          "held_out": report["held_out_spearman_best"], "seconds": report["seconds"]}
            print(name, {k: round(rows[name]["scores"][k], 2) for k in KEYS}, file=sys.stderr, flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_line(), "start": args.start,
              "term": args.term, "what": what, "teacher": teacher_name(args.teacher), "pairs": len(first), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.results_name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    markdown = render(result)
    (RESULTS / f"{args.results_name}.md").write_text(markdown, encoding="utf-8")
    plot(result, RESULTS / f"{args.results_name}.png")
    print(markdown)
    return 0


def word_sentence_pairs(model: Any, seed: int = 0) -> list[tuple[str, str]]:
    """For each of the word term's vocabulary words (never a held-out word or GCIDE headword), a
    sentence of the corpus that contains it (when one does) and a random one."""
    import random
    import re

    from m2v_search.train import corpus

    rng = random.Random(seed)
    words = corpus.vocabulary_words(model.tokens, 20_000)
    verses, docs = list(corpus.kjv_verses()), list(dict.fromkeys(corpus.stdlib_training_docstrings()))
    rng.shuffle(verses)
    rng.shuffle(docs)
    sentences = [text for text in list(dict.fromkeys(corpus.stsb_train_sentences())) + verses[:10_000] + docs[:10_000]
                 if 4 <= len(text.split()) <= 60]
    containing: dict[str, list[int]] = {}
    known = set(words)
    for i, text in enumerate(sentences):
        for word in set(re.findall(r"[a-z]+", text.lower())) & known:
            containing.setdefault(word, []).append(i)
    pairs = []
    for word in words:
        if word in containing:
            pairs.append((word, sentences[rng.choice(containing[word])]))
        pairs.append((word, sentences[rng.randrange(len(sentences))]))
    return pairs


def query_document_pairs(model: Any, seed: int = 0) -> list[tuple[str, str]]:
    """The retrieval term's training pairs (never a dev module's docstring), and for each query a
    document of the same module and a random document: the teacher's cosines then span related,
    near and unrelated texts."""
    import random

    from m2v_search.train.pairs import training_pairs, usable_pairs

    rng = random.Random(seed)
    pairs = usable_pairs(model, training_pairs())
    by_group: dict[str, list[str]] = {}
    for document, group in zip(pairs.documents, pairs.groups):
        by_group.setdefault(group, []).append(document)
    result = []
    for query, document, group in zip(*pairs):
        result.append((query, document))
        result.append((query, rng.choice(by_group[group])))
        result.append((query, pairs.documents[rng.randrange(len(pairs.documents))]))
    return list(dict.fromkeys(result))


def teacher_name(folder: Path) -> str:
    """The teacher's name for the report: its folder's name, or the package's for a generic ``model`` folder."""
    return folder.parent.name if folder.name == "model" else folder.name


TITLES = {"words": "word", "word-sentence": "word -> sentence", "query-document": "query -> document"}


def render(result: dict) -> str:
    term = result.get("term", "similarity")
    what = result.get("what", "STS-B train sentence pairs (their pairing only; human scores never read)")
    title = TITLES.get(term, "similarity")
    lines = [f"# The {title} term on {result['start']} (issue 16)", "",
             f"{result['machine']} (run {result['date']}). {result['pairs']} {what}, the teacher "
             f"{result['teacher']}'s cosines as targets. Dev tasks choose (combined = their mean); STS-B test is "
             "reported, never used to choose.", "",
             "| run | STS-B test | STS-B dev | words | GCIDE headword | docstrings | combined | best epoch | "
             "held-out Spearman vs teacher |", "|---|" + "---:|" * 8]
    for name, row in result["rows"].items():
        s = row["scores"]
        lines.append(f"| {name} | " + " | ".join(f"{s[k]:.2f}" for k in KEYS)
                     + f" | {row.get('best_epoch', '')} | {row.get('held_out', '')} |")
    settings: dict[str, list[dict]] = {}
    for name, row in result["rows"].items():
        if ", seed " in name:
            settings.setdefault(name.rsplit(", seed ", 1)[0], []).append(row)
    if any(len(rows) > 1 for rows in settings.values()):
        lines += ["", "Mean over seeds (the setting with the best mean combined dev score is the one to keep):", "",
                  "| setting | seeds | STS-B test | STS-B dev | words | GCIDE headword | docstrings | combined | "
                  "held-out Spearman vs teacher |", "|---|---:|" + "---:|" * 7]
        for name, rows in settings.items():
            means = [sum(r["scores"][k] for r in rows) / len(rows) for k in KEYS]
            held = [r["held_out"] for r in rows if isinstance(r.get("held_out"), (int, float))]
            held_text = f"{sum(held) / len(held):.2f}" if held else ""
            lines.append(f"| {name} | {len(rows)} | " + " | ".join(f"{m:.2f}" for m in means) + f" | {held_text} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, row in result["rows"].items():
        s = row["scores"]
        axis.scatter(s["combined"], s["stsb_test"], color="tab:gray" if name.startswith("start") else "tab:blue")
        axis.annotate(name.replace(", seed", "\nseed"), (s["combined"], s["stsb_test"]), fontsize=6)
    term = TITLES.get(result.get("term", ""), "similarity")
    axis.set_xlabel("combined dev score (chooses)")
    axis.set_ylabel("STS-B test Spearman x100 (reported)")
    axis.set_title(f"{term} term on {result['start']}: {result['date']}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
