"""Fit a static table to reproduce a teacher's sentence embeddings (the tokenlearn idea).

The parts: the student (``m2v_search.train.student``: the table under mean pooling plus a
linear head, folded into the table at the end), the loop (``m2v_search.train.loop``) and
early stopping (``m2v_search.train.early_stopping``). ``fit`` joins them: it splits the
corpus, reduces the teacher's embeddings by PCA to the target space, starts the head by
least squares, trains, and returns a plain static model of the same vocabulary and tokenizer.

Early stopping watches a held-out part of the corpus: the Spearman correlation between the
student's and the teacher's cosine similarities of random held-out pairs (independent of
the loss chosen).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from m2v_search.model import StaticModel
from m2v_search.pca import PCA
from m2v_search.train.featurize import resolve_device
from m2v_search.train.options import LOSSES, FitOptions
from m2v_search.train.tokens import TokenizedCorpus, tokenize_corpus

__all__ = ["LOSSES", "FitOptions", "FitResult", "HeldOutScore", "fit", "pair_similarity_spearman",
           "split_rows", "tokenize_corpus"]

HEAD_FIT_ROWS = 50_000


@dataclass
class FitResult:
    """The fitted model and what happened on the way."""

    model: StaticModel
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: float = float("nan")
    initial_validation: float = float("nan")
    seconds: float = 0.0


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def pair_similarity_spearman(student: np.ndarray, teacher: np.ndarray, pairs: np.ndarray) -> float:
    """Spearman correlation of the cosine similarities of ``pairs`` (rows i, j) under both embeddings."""
    from scipy.stats import spearmanr

    return float(spearmanr(_cosines(student[pairs[:, 0]], student[pairs[:, 1]]),
                           _cosines(teacher[pairs[:, 0]], teacher[pairs[:, 1]])).statistic)


class HeldOutScore:
    """Scores a student on held-out texts (the ``validate`` of ``loop.train``).

    ``val_pair_spearman``: Spearman correlation of the cosines of random held-out pairs under
    the student and under the teacher (monitored); ``val_cosine``: mean cosine between the
    student's outputs and the (reduced) targets.
    """

    def __init__(self, student: object, rows: np.ndarray, teacher: np.ndarray, targets: np.ndarray,
                 pairs: np.ndarray) -> None:
        self.student, self.rows, self.teacher, self.targets, self.pairs = student, rows, teacher, targets, pairs

    def __call__(self) -> dict[str, float]:
        outputs = self.student.predict(self.rows)  # type: ignore[attr-defined]
        return {"val_pair_spearman": pair_similarity_spearman(outputs, self.teacher, self.pairs),
                "val_cosine": float(_cosines(outputs, self.targets).mean())}


def split_rows(lengths: np.ndarray, options: FitOptions, rng: np.random.Generator,
               train_indices: np.ndarray | None = None, validation_indices: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out rows among the texts with at least one known token.

    Args:
        lengths: known tokens per text.
        options: ``validation_fraction`` of the texts is held out at random (by ``rng``) ...
        rng: the random generator of the fit.
        train_indices: ... unless an explicit split is given (a row repeated here is seen that
            many times an epoch).
        validation_indices: the held-out rows of the explicit split.

    Returns:
        (train rows, sorted validation rows).

    Raises:
        ValueError: too few texts with tokens, or only one half of an explicit split.
    """
    has_tokens = lengths > 0
    if has_tokens.sum() < 10:
        raise ValueError(f"only {int(has_tokens.sum())} texts have known tokens; the corpus is too small to train on")
    if (train_indices is None) != (validation_indices is None):
        raise ValueError("give both train_indices and validation_indices, or neither")
    if train_indices is not None:
        train = np.asarray(train_indices, dtype=np.int64)
        validation = np.sort(np.asarray(validation_indices, dtype=np.int64))
        train, validation = train[has_tokens[train]], validation[has_tokens[validation]]
        if len(validation) < 2 or len(train) < 2:
            raise ValueError("the explicit train/validation split leaves fewer than 2 texts with known tokens")
        return train, validation
    usable = rng.permutation(np.flatnonzero(has_tokens))
    n_validation = max(int(round(options.validation_fraction * len(usable))), 2)
    return usable[n_validation:], np.sort(usable[:n_validation])


def _starting_table(model: StaticModel) -> np.ndarray:
    table = model.embedding.astype(np.float32)
    return table * model.weights[:, None] if model.weights is not None else table


def _check_inputs(model: StaticModel, texts: Sequence[str], targets: np.ndarray) -> None:
    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} texts but {len(targets)} target rows")
    if model.token_mapping is not None:
        raise ValueError("vocabulary-quantised models (token_mapping) cannot be trained; train the full table")


def fit(
    model: StaticModel,
    texts: Sequence[str],
    targets: np.ndarray,
    options: FitOptions | None = None,
    *,
    token_weights: np.ndarray | None = None,
    tokens: TokenizedCorpus | tuple[np.ndarray, np.ndarray] | None = None,
    train_indices: np.ndarray | None = None,
    validation_indices: np.ndarray | None = None,
) -> FitResult:
    """Train ``model``'s table so that its mean-pooled outputs match ``targets`` (one row per text).

    Args:
        model: the starting static model (e.g. the plain distill); its per-token weights are
            folded into the table. Not modified.
        texts: the corpus.
        targets: the teacher's embeddings of ``texts``.
        options: the settings (``FitOptions()`` by default).
        token_weights: optional fixed per-token weights used in pooling (e.g. SIF from real
            token frequencies); they are folded into the saved table.
        tokens: ``tokenize_corpus(model, texts)`` computed earlier (to reuse it across fits).
        train_indices: explicit training rows of ``texts`` (with ``validation_indices``); by
            default a random ``options.validation_fraction`` of the texts is held out.
        validation_indices: explicit held-out rows.

    Returns:
        The fitted model (same vocabulary and tokenizer, ``options.pca_dims`` dimensions), the
        history of the held-out scores and the best epoch (the one kept).

    Raises:
        ValueError: mismatched texts and targets, a quantised model, a bad split or dimension.
    """
    import torch

    from m2v_search.train.loop import train
    from m2v_search.train.student import StudentModel

    options = options or FitOptions()
    _check_inputs(model, texts, targets)
    started = time.perf_counter()
    device = resolve_device(options.device)
    rng = np.random.default_rng(options.seed)
    torch.manual_seed(options.seed)

    corpus = TokenizedCorpus(*tokens) if tokens is not None else tokenize_corpus(model, texts, options.max_length)
    if corpus.text_count != len(texts):
        raise ValueError(f"tokens hold {corpus.text_count} texts, but {len(texts)} texts were given")
    train_rows, validation = split_rows(corpus.lengths, options, rng, train_indices, validation_indices)

    targets = np.asarray(targets, dtype=np.float32)
    dims = int(options.pca_dims or model.dim)
    if not 0 < dims <= targets.shape[1]:
        raise ValueError(f"pca_dims must be in 1..{targets.shape[1]} (the teacher's dimension), got {dims}")
    reduced = PCA.fit(targets[np.unique(train_rows)], dims, whiten=options.whiten_targets).transform(targets)
    pairs = rng.integers(0, len(validation), size=(options.validation_pairs, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]

    student = StudentModel(_starting_table(model), corpus, dims, token_weights=token_weights, device=device)
    target_tensor = torch.from_numpy(reduced).to(device)
    student.fit_head(train_rows[:HEAD_FIT_ROWS], target_tensor)
    score = HeldOutScore(student, validation, targets[validation], reduced[validation], pairs)
    outcome = train(student, target_tensor, train_rows, score, options, rng=rng, started=started)

    config = dict(model.config)
    config.pop("recipe", None)
    trained = StaticModel(student.folded_table(), model.tokenizer, config=config, normalize=model.normalize,
                          base_model_name=model.base_model_name, language=model.language,
                          max_length=model.max_length)._named(model.name)
    return FitResult(trained, outcome.history, best_epoch=outcome.best_epoch,
                     best_validation=outcome.best_validation, initial_validation=outcome.initial_validation,
                     seconds=time.perf_counter() - started)
