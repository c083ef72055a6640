"""Corpus -> teacher features -> fitted static table -> saved model, in one call."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from m2v_search.model import StaticModel
from m2v_search.quantization import quantize


def train_static_model(
    texts: Sequence[str],
    teacher: str | os.PathLike[str],
    init_model: StaticModel | str | os.PathLike[str],
    work_dir: str | os.PathLike[str],
    *,
    loss: str = "cosine",
    sif_coefficient: float | None = None,
    epochs: int = 30,
    batch_size: int = 1024,
    learning_rate: float = 1e-3,
    patience: int = 3,
    max_steps: int | None = None,
    device: str = "auto",
    quantize_to: str | None = "float16",
    post_whiten: bool = True,
    shard_size: int = 50_000,
    seed: int = 0,
    show_progress_bar: bool = True,
) -> tuple[StaticModel, dict[str, Any]]:
    """Featurize ``texts`` with ``teacher`` (resumable, under ``work_dir/features``), then fit
    ``init_model`` to the teacher's embeddings. Returns the model and a report (recipe, history).

    ``sif_coefficient``: when given, SIF weights from the corpus's real token frequencies are
    used in pooling during training and folded into the table. ``post_whiten``: whiten the
    fitted model's outputs over the corpus (folded into the table; helped STS-B and retrieval).
    """
    from m2v_search.train.featurize import featurize, load_features
    from m2v_search.train.fit import FitOptions, fit
    from m2v_search.train.sif import sif_weights, token_counts
    from m2v_search.train.whiten import whiten

    started = time.perf_counter()
    model = init_model if isinstance(init_model, StaticModel) else StaticModel.from_pretrained(init_model)
    features_dir = featurize(texts, teacher, Path(work_dir) / "features", device=device, shard_size=shard_size,
                             show_progress_bar=show_progress_bar)
    targets = load_features(features_dir)
    featurized = time.perf_counter()
    weights = None
    if sif_coefficient is not None:
        weights = sif_weights(token_counts(model, texts), sif_coefficient)
    options = FitOptions(loss=loss, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         patience=patience, max_steps=max_steps, device=device, seed=seed,
                         show_progress_bar=show_progress_bar)
    result = fit(model, texts, targets, options, token_weights=weights)
    trained = result.model
    if post_whiten:
        trained = whiten(trained, texts)
    if quantize_to is not None:
        table, scale = quantize(trained.embedding, None, quantize_to, trained.vocabulary_size)  # int8: the scale
        trained = StaticModel(table, trained.tokenizer, config=trained.config, weights=scale,
                              normalize=trained.normalize,
                              base_model_name=trained.base_model_name, language=trained.language,
                              max_length=trained.max_length)._named(trained.name)
    recipe = {
        "method": "fit to teacher sentence embeddings (m2v_search.train)",
        "teacher": str(teacher),
        "corpus texts": len(texts),
        "loss": loss,
        "sif in training": "none" if sif_coefficient is None else f"a={sif_coefficient}, real token frequencies",
        "targets": f"teacher mean-pooled embeddings, PCA to {trained.dim} dims",
        "post-processing": "outputs whitened over the corpus" if post_whiten else "none",
        "epochs run / best": f"{len(result.history) - 1} / {result.best_epoch}",
        "held-out pair Spearman (start -> best)": f"{result.initial_validation:.4f} -> {result.best_validation:.4f}",
    }
    report = {"recipe": recipe, "history": result.history, "featurize_seconds": featurized - started,
              "fit_seconds": result.seconds, "best_validation": result.best_validation,
              "initial_validation": result.initial_validation, "seconds": time.perf_counter() - started}
    trained.config["recipe"] = recipe
    return trained, report
