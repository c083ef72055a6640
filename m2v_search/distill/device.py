"""Choosing the torch device and dtype the teacher runs on."""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
DTYPE_CHOICES = ("float32", "float16", "bfloat16")


def select_device(device: str | None = "auto") -> str:
    """The device to run the teacher on: ``"auto"`` (or None) picks cuda, then mps, then cpu.

    An explicit device (``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``) is checked: asking for
    one that is not available raises ValueError instead of failing deep inside torch.
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            chosen = "cuda"
        elif _mps_available(torch):
            chosen = "mps"
        else:
            chosen = "cpu"
        logger.info("distillation device: %s", chosen)
        return chosen
    kind = device.split(":", 1)[0]
    if kind not in DEVICE_CHOICES[1:]:
        raise ValueError(f"device must be one of {DEVICE_CHOICES} (or 'cuda:N'), got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    if kind == "mps" and not _mps_available(torch):
        raise ValueError(f"device {device!r} was asked for, but MPS is not available; use device='cpu' or 'auto'")
    return device


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_dtype(dtype: str | None, device: str) -> Any:
    """The torch dtype for the teacher: float32 by default; float16/bfloat16 only off the CPU
    (half precision on CPU is slower and less exact, so it is refused with a clear error)."""
    import torch

    if dtype is None or dtype == "float32":
        return torch.float32
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {DTYPE_CHOICES} or None, got {dtype!r}")
    if device.split(":", 1)[0] == "cpu":
        raise ValueError(f"dtype={dtype!r} needs a GPU; on the CPU the teacher runs in float32 (dtype=None)")
    return getattr(torch, dtype)


def configure_cpu_threads() -> None:
    """Use every core the process may run on (torch sometimes defaults to fewer), unless the
    user pinned a number with OMP_NUM_THREADS."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if torch.get_num_threads() < cores:
        torch.set_num_threads(cores)
