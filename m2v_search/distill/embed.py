"""Running the teacher over the token inputs: one output vector per output token."""

from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

logger = logging.getLogger(__name__)

POOLING_CHOICES = ("auto", "first", "mean")


def resolve_pooling(pooling: str, has_prefix_token: bool) -> str:
    """``auto``: the first output (the [CLS]/<s> position) when the tokenizer starts each input
    with a special token, else the mean over all positions."""
    if pooling not in POOLING_CHOICES:
        raise ValueError(f"pooling must be one of {POOLING_CHOICES}, got {pooling!r}")
    if pooling == "auto":
        return "first" if has_prefix_token else "mean"
    return pooling


@contextmanager
def _placed(model: Any, device: str, dtype: Any) -> Iterator[Any]:
    """The teacher on ``device``/``dtype`` in eval mode, put back as it was afterwards
    (no copy on the CPU in float32: ``.to`` is then a no-op)."""
    parameter = next(model.parameters())
    old_device, old_dtype, was_training = parameter.device, parameter.dtype, model.training
    model.to(device=device, dtype=dtype)
    model.eval()
    try:
        yield model
    finally:
        if model.training != was_training:
            model.train(was_training)
        if parameter.device != old_device or parameter.dtype != old_dtype:
            model.to(device=old_device, dtype=old_dtype)


def embed_sequences(
    model: Any,
    sequences: list[list[int]],
    *,
    pad_token_id: int,
    device: str,
    dtype: Any,
    pooling: str,
    batch_size: int,
    show_progress_bar: bool,
) -> np.ndarray:
    """float32 (len(sequences), hidden): the teacher's pooled output for each id sequence.

    Sequences are run in batches of similar length (sorted), in inference mode, and written
    straight into one preallocated array.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    if len(sequences) and lengths.min() < 1:
        raise ValueError("an empty id sequence cannot be embedded")
    order = np.argsort(lengths, kind="stable")
    accepts_token_types = "token_type_ids" in inspect.signature(model.forward).parameters
    hidden = int(model.config.hidden_size)
    output = np.empty((len(sequences), hidden), dtype=np.float32)
    progress = None
    if show_progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(sequences), desc="Embedding tokens", unit="tokens")
    with _placed(model, device, dtype), torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            rows = order[start : start + batch_size]
            width = int(lengths[rows[-1]])
            ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
            mask = np.arange(width)[None, :] < lengths[rows][:, None]
            for row, index in enumerate(rows):
                ids[row, : lengths[index]] = sequences[index]
            input_ids = torch.from_numpy(ids).to(device)
            inputs = {"input_ids": input_ids}
            padded = not mask.all()
            if padded:  # without padding, no mask lets the attention kernels take their fast path
                attention = torch.from_numpy(mask.astype(np.int64)).to(device)
                inputs["attention_mask"] = attention
            if accepts_token_types:
                inputs["token_type_ids"] = torch.zeros_like(input_ids)
            states = model(**inputs).last_hidden_state
            if pooling == "first":
                pooled = states[:, 0]
            elif padded:
                weights = attention.to(states.dtype)
                pooled = (states * weights[:, :, None]).sum(1) / weights.sum(1, keepdim=True)
            else:
                pooled = states.mean(1)
            output[rows] = pooled.float().cpu().numpy()
            if progress is not None:
                progress.update(len(rows))
    if progress is not None:
        progress.close()
    if not np.isfinite(output).all():
        bad = int((~np.isfinite(output).all(axis=1)).sum())
        logger.warning("%d token vectors had NaN/inf values (half precision overflow?); set to zero", bad)
        np.nan_to_num(output, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return output
