"""Fit a static table to reproduce a teacher's sentence embeddings (the tokenlearn idea).

The student is the static model itself: an ``EmbeddingBag`` holding its table (initialised
from the distilled model), mean pooling, then a linear head onto the PCA-reduced teacher
embeddings. Because mean pooling is linear, the head is folded into the table at the end:
the result is again a plain static model of the same vocabulary and tokenizer, and rows of
tokens the corpus never shows move with the head, staying in the same space.

Early stopping watches a held-out part of the corpus: the Spearman correlation between the
student's and the teacher's cosine similarities of random held-out pairs (independent of
the loss chosen).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from m2v_search.model import StaticModel
from m2v_search.pca import PCA
from m2v_search.train.featurize import resolve_device

LOSSES = ("cosine", "contrastive")


@dataclass
class FitResult:
    """The fitted model and what happened on the way."""

    model: StaticModel
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: float = float("nan")
    initial_validation: float = float("nan")
    seconds: float = 0.0


def pair_similarity_spearman(student: np.ndarray, teacher: np.ndarray, pairs: np.ndarray) -> float:
    """Spearman correlation of the cosine similarities of ``pairs`` under both embeddings."""
    from scipy.stats import spearmanr

    def cosines(x: np.ndarray) -> np.ndarray:
        a, b = x[pairs[:, 0]], x[pairs[:, 1]]
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)

    return float(spearmanr(cosines(student), cosines(teacher)).statistic)


def tokenize_corpus(model: StaticModel, texts: Sequence[str], max_length: int | None = 256,
                    batch_size: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Flat token ids and offsets of ``texts`` as ``model.encode`` sees them."""
    ids_parts, lengths_parts = [], []
    for start in range(0, len(texts), batch_size):
        ids, offsets = model.tokenize_flat(texts[start:start + batch_size], max_length)
        ids_parts.append(ids.astype(np.int64))
        lengths_parts.append(np.diff(offsets))
    lengths = np.concatenate(lengths_parts) if lengths_parts else np.zeros(0, np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    return (np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)), offsets


def fit(
    model: StaticModel,
    texts: Sequence[str],
    targets: np.ndarray,
    *,
    pca_dims: int | None = None,
    whiten_targets: bool = False,
    loss: str = "cosine",
    token_weights: np.ndarray | None = None,
    epochs: int = 30,
    batch_size: int = 1024,
    learning_rate: float = 1e-3,
    temperature: float = 0.05,
    validation_fraction: float = 0.05,
    train_indices: np.ndarray | None = None,
    validation_indices: np.ndarray | None = None,
    validation_pairs: int = 20_000,
    tokens: tuple[np.ndarray, np.ndarray] | None = None,
    patience: int = 3,
    max_steps: int | None = None,
    time_limit: float | None = None,
    max_length: int | None = 256,
    device: str = "auto",
    seed: int = 0,
    show_progress_bar: bool = True,
) -> FitResult:
    """Train ``model``'s table so that its mean-pooled outputs match ``targets`` (one row per text).

    Args:
        model: the starting static model (e.g. the plain distill); its per-token weights are
            folded into the table. Not modified.
        texts, targets: the corpus and the teacher's embeddings of it.
        pca_dims: dimensions of the PCA-reduced targets, hence of the result (default: the model's).
        whiten_targets: scale each PCA dimension of the targets to unit variance.
        loss: "cosine" (1 - cosine to the target) or "contrastive" (in-batch InfoNCE, ``temperature``).
        token_weights: optional fixed per-token weights used in pooling (e.g. SIF from real token
            frequencies); they are folded into the saved table.
        epochs, batch_size, learning_rate, patience: Adam on the table and head; stop after
            ``patience`` epochs without a better held-out score; the best epoch is kept.
        max_steps: stop after this many optimiser steps in all (for quick runs and tests).
        time_limit: stop after the first epoch that ends past this many seconds.
        tokens: ``tokenize_corpus(model, texts)`` computed earlier (to reuse it across fits).
        train_indices, validation_indices: explicit split (rows of ``texts``; a row repeated in
            ``train_indices`` is seen that many times an epoch); by default a random
            ``validation_fraction`` of the texts is held out.
    """
    import torch
    from tqdm.auto import tqdm

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} texts but {len(targets)} target rows")
    if model.token_mapping is not None:
        raise ValueError("vocabulary-quantised models (token_mapping) cannot be trained; train the full table")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    started = time.perf_counter()
    device = resolve_device(device)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    ids, offsets = tokens if tokens is not None else tokenize_corpus(model, texts, max_length)
    if len(offsets) != len(texts) + 1:
        raise ValueError(f"tokens hold {len(offsets) - 1} texts, but {len(texts)} texts were given")
    lengths = np.diff(offsets)
    usable = np.flatnonzero(lengths > 0)
    if len(usable) < 10:
        raise ValueError(f"only {len(usable)} texts have known tokens; the corpus is too small to train on")
    if (train_indices is None) != (validation_indices is None):
        raise ValueError("give both train_indices and validation_indices, or neither")
    if train_indices is not None:
        has_tokens = lengths > 0
        train = np.asarray(train_indices, dtype=np.int64)
        validation = np.sort(np.asarray(validation_indices, dtype=np.int64))
        train, validation = train[has_tokens[train]], validation[has_tokens[validation]]
        if len(validation) < 2 or len(train) < 2:
            raise ValueError("the explicit train/validation split leaves fewer than 2 texts with known tokens")
    else:
        usable = rng.permutation(usable)
        n_validation = max(int(round(validation_fraction * len(usable))), 2)
        validation, train = np.sort(usable[:n_validation]), usable[n_validation:]

    targets = np.asarray(targets, dtype=np.float32)
    dims = int(pca_dims or model.dim)
    if not 0 < dims <= targets.shape[1]:
        raise ValueError(f"pca_dims must be in 1..{targets.shape[1]} (the teacher's dimension), got {dims}")
    pca = PCA.fit(targets[np.unique(train)], dims, whiten=whiten_targets)
    reduced = pca.transform(targets)
    pairs = rng.integers(0, len(validation), size=(validation_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]

    table = model.embedding.astype(np.float32)
    if model.weights is not None:
        table = table * model.weights[:, None]
    weights = None if token_weights is None else np.asarray(token_weights, dtype=np.float32)
    if weights is not None and weights.shape != (table.shape[0],):
        raise ValueError(f"token_weights must have one weight per token ({table.shape[0]}), got {weights.shape}")

    t_ids = torch.from_numpy(ids).to(device)
    t_offsets = torch.from_numpy(offsets).to(device)
    t_targets = torch.from_numpy(reduced).to(device)
    t_weights = None if weights is None else torch.from_numpy(weights).to(device)
    bag = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(table), freeze=False, mode="sum").to(device)

    def pooled(rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        rows = torch.as_tensor(rows, device=device)
        starts, counts = t_offsets[rows], t_offsets[rows + 1] - t_offsets[rows]
        bag_offsets = torch.cumsum(counts, 0) - counts
        positions = torch.repeat_interleave(starts - bag_offsets, counts) + torch.arange(int(counts.sum()), device=device)
        flat = t_ids[positions]
        sample_weights = torch.repeat_interleave(1.0 / counts.to(torch.float32), counts)
        if t_weights is not None:
            sample_weights = sample_weights * t_weights[flat]
        return bag(flat, bag_offsets, per_sample_weights=sample_weights)

    # Head initialised by least squares from the starting table's outputs to the targets.
    with torch.no_grad():
        sample = torch.as_tensor(train[:50_000], device=device)
        start_outputs = pooled(sample).double()
        solution = torch.linalg.lstsq(start_outputs.cpu(), t_targets[sample].double().cpu()).solution
    head = torch.nn.Linear(table.shape[1], reduced.shape[1], bias=False).to(device)
    with torch.no_grad():
        head.weight.copy_(solution.T.to(torch.float32))

    def predict(rows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            parts = [head(pooled(rows[i:i + 8192])).cpu().numpy() for i in range(0, len(rows), 8192)]
        return np.concatenate(parts)

    teacher_validation = targets[validation]

    def validate() -> tuple[float, float]:
        student = predict(validation)
        target = reduced[validation]
        cosine = float(((student * target).sum(1) / (np.linalg.norm(student, axis=1)
                                                     * np.linalg.norm(target, axis=1) + 1e-12)).mean())
        return pair_similarity_spearman(student, teacher_validation, pairs), cosine

    optimiser = torch.optim.Adam(list(bag.parameters()) + list(head.parameters()), lr=learning_rate)
    initial, initial_cosine = validate()
    best = (initial, 0, copy.deepcopy(bag.state_dict()), copy.deepcopy(head.state_dict()))
    history: list[dict[str, float]] = [{"epoch": 0, "train_loss": float("nan"), "val_pair_spearman": initial,
                                        "val_cosine": initial_cosine}]
    steps, stale = 0, 0
    labels = torch.arange(batch_size, device=device)
    for epoch in range(1, epochs + 1):
        order = torch.as_tensor(rng.permutation(train), device=device)
        total, batches = 0.0, 0
        bar = tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}", disable=not show_progress_bar,
                   leave=False)
        for start in bar:
            rows = order[start:start + batch_size]
            if len(rows) < 2:
                continue
            prediction = head(pooled(rows))
            target = t_targets[rows]
            if loss == "cosine":
                value = 1.0 - torch.nn.functional.cosine_similarity(prediction, target, dim=1).mean()
            else:
                logits = (torch.nn.functional.normalize(prediction, dim=1)
                          @ torch.nn.functional.normalize(target, dim=1).T) / temperature
                value = torch.nn.functional.cross_entropy(logits, labels[:len(rows)])
            optimiser.zero_grad(set_to_none=True)
            value.backward()
            optimiser.step()
            total += float(value.detach())
            batches += 1
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        score, cosine = validate()
        history.append({"epoch": epoch, "train_loss": total / max(batches, 1), "val_pair_spearman": score,
                        "val_cosine": cosine})
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(bag.state_dict()), copy.deepcopy(head.state_dict()))
            stale = 0
        else:
            stale += 1
        if stale >= patience or (max_steps is not None and steps >= max_steps):
            break
        if time_limit is not None and time.perf_counter() - started > time_limit:
            break

    bag.load_state_dict(best[2])
    head.load_state_dict(best[3])
    with torch.no_grad():
        folded = bag.weight
        if t_weights is not None:
            folded = folded * t_weights[:, None]
        folded = (folded @ head.weight.T).cpu().numpy().astype(np.float32)
    config = dict(model.config)
    config.pop("recipe", None)
    trained = StaticModel(folded, model.tokenizer, config=config, normalize=model.normalize,
                          base_model_name=model.base_model_name, language=model.language,
                          max_length=model.max_length)._named(model.name)
    return FitResult(trained, history, best_epoch=best[1], best_validation=best[0], initial_validation=initial,
                     seconds=time.perf_counter() - started)
