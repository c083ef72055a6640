"""A retrieval-aware training term: contrastive query -> document pairs, with a token anchor.

Starting from a trained static model (e.g. the shipped m2v-base), the table is tuned so that a
query's mean-pooled, normalised vector is nearer its own document than the other documents of
the batch (symmetric InfoNCE with in-batch negatives), while a token-level anchor keeps every
token's vector near where it started::

    loss = InfoNCE(queries, documents; temperature)
           + anchor_weight * sum_t |E_t - E0_t|^2 / |E0_t|^2 / (distinct tokens in the batch)

The anchor is over the whole table (a row moved by an earlier batch is still pulled back), and
divided by the tokens the batch touches, so ``anchor_weight`` reads as "relative drift of a
token the batch moves, against one unit of the contrastive loss". Word meaning and sentence
similarity, which the starting table holds, are kept by the anchor rather than traded away.

Early stopping uses MRR@10 on a held-out share of the *training* pairs (by group, e.g. by
module), never the dev tasks (``m2v_search.train.dev_tasks``), which judge the result.
The pairs for the standard library come from ``dev_tasks.docstring_pairs("train")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from m2v_search.model import StaticModel
from m2v_search.train.anchor import AnchoredTable, anchor_loss, tune
from m2v_search.train.evaluation import retrieval_scores
from m2v_search.train.heldout import hash_bucket
from m2v_search.train.tokens import tokenize_corpus

__all__ = ["ContrastiveOptions", "anchor_loss", "contrastive_finetune", "contrastive_loss", "split_by_group"]


@dataclass(frozen=True)
class ContrastiveOptions:
    """Settings of one contrastive fine-tune.

    Attributes:
        epochs: at most this many passes over the training pairs.
        batch_size: pairs per step (the other documents of the batch are the negatives).
        learning_rate: Adam's step size on the table, relative to the table's mean absolute
            entry (tables differ in scale by orders of magnitude: m2v-base's entries average ~5).
        temperature: InfoNCE temperature on cosines.
        anchor_weight: weight of the token anchor (0: none).
        train: "table" (every token's row) or "map" (one square linear map applied to every
            row, folded into the table afterwards: few parameters, so it cannot memorise the
            tokens of the training pairs).
        validation_buckets: 1 in this many groups of pairs is held out for early stopping.
        patience: epochs without a better held-out MRR@10 before stopping.
        restore_best: end on the best held-out epoch (False: on the last one run).
        time_budget: seconds of training at most (None: no limit).
        seed: batch order.
    """

    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 0.01
    temperature: float = 0.05
    anchor_weight: float = 1.0
    train: str = "table"
    validation_buckets: int = 6
    patience: int = 3
    restore_best: bool = True
    time_budget: float | None = 600.0
    seed: int = 0


def split_by_group(groups: Sequence[str], buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation): a group (e.g. a module) goes wholly to one side.

    Raises:
        ValueError: one side is empty.
    """
    held = np.array([hash_bucket("contrastive-validation", g, buckets) == 0 for g in groups])
    train, validation = np.flatnonzero(~held), np.flatnonzero(held)
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(f"splitting {len(groups)} pairs by group left one side empty; change validation_buckets")
    return train, validation


def contrastive_loss(queries: torch.Tensor, documents: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: pair i's query and document against the batch's others (rows need not be unit)."""
    q = torch.nn.functional.normalize(queries, dim=1)
    d = torch.nn.functional.normalize(documents, dim=1)
    logits = q @ d.T / temperature
    labels = torch.arange(len(q), device=q.device)
    return 0.5 * (torch.nn.functional.cross_entropy(logits, labels)
                  + torch.nn.functional.cross_entropy(logits.T, labels))


def contrastive_finetune(model: StaticModel, queries: Sequence[str], documents: Sequence[str],
                         groups: Sequence[str], options: ContrastiveOptions | None = None
                         ) -> tuple[StaticModel, dict[str, Any]]:
    """Tune a static model's table (or a map of it) on query -> document pairs with the token anchor.

    Args:
        model: the starting model (its table, tokenizer and token weights).
        queries: the queries.
        documents: ``documents[i]`` is the one relevant document of ``queries[i]``.
        groups: a group per pair (e.g. its module); validation holds out whole groups.
        options: the settings (default ``ContrastiveOptions()``).

    Returns:
        The tuned model (the best epoch's; its table in the starting table's float dtype) and a
        report: options, epochs, held-out MRR@10 before / best, seconds.

    Raises:
        ValueError: ``options.train`` is unknown, the three sequences differ in length, the
            split leaves a side empty, or a text has no known token.
    """
    options = options or ContrastiveOptions()
    if options.train not in ("table", "map"):
        raise ValueError(f"train must be 'table' or 'map', got {options.train!r}")
    if not len(queries) == len(documents) == len(groups):
        raise ValueError(f"{len(queries)} queries, {len(documents)} documents and {len(groups)} groups differ")
    torch.manual_seed(options.seed)
    train_rows, validation_rows = split_by_group(groups, options.validation_buckets)
    n = len(queries)
    corpus = tokenize_corpus(model, list(queries) + list(documents), max_length=model.max_length)
    if (corpus.lengths == 0).any():
        raise ValueError("a query or document has no known token; drop it first")
    tuning = AnchoredTable(model, corpus, options.learning_rate, options.train)

    def held_out_mrr() -> float:
        with torch.no_grad():
            q = tuning.outputs(validation_rows).numpy()
            d = tuning.outputs(validation_rows + n).numpy()
        return _pair_mrr(q, d)

    def term_loss(rows: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        loss = contrastive_loss(tuning.outputs(rows), tuning.outputs(rows + n), options.temperature)
        return loss, np.concatenate([rows, rows + n])

    run = tune(tuning, train_rows, term_loss, held_out_mrr, options, min_batch=2, score_name="held_out_mrr@10",
               loss_name="contrastive")
    stopper = run.stopper
    tuned = tuning.tuned_model(stopper.best_state if options.restore_best else None, "contrastive",
                               {"options": asdict(options), "best_epoch": stopper.best_epoch})
    report = {"options": asdict(options), "train_pairs": int(len(train_rows)),
              "validation_pairs": int(len(validation_rows)), "epochs_run": run.epochs_run,
              "best_epoch": stopper.best_epoch, "held_out_mrr@10_before": round(stopper.initial_score, 2),
              "held_out_mrr@10_best": round(stopper.best_score, 2), "seconds": round(run.seconds, 1),
              "history": run.history}
    return tuned, report


def _pair_mrr(queries: np.ndarray, documents: np.ndarray) -> float:
    """MRR@10 where row i of ``documents`` is the one relevant to row i of ``queries``."""
    return retrieval_scores(lambda rows: rows, queries, documents)["mrr@10"]  # type: ignore[arg-type,return-value]
