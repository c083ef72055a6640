"""The model being trained: a static table under mean pooling, then a linear head.

``StudentModel`` holds the table as an ``EmbeddingBag`` (sum mode with per-sample weights
``1 / length``, times optional fixed token weights: exactly ``StaticModel``'s mean pooling),
and a linear head onto the target space. Mean pooling is linear, so the head folds into the
table (``folded_table``): the result is again a plain static table over the same tokenizer,
and rows of tokens the corpus never shows move with the head, staying in the same space.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from m2v_search.train.tokens import TokenizedCorpus

PREDICT_BATCH = 8192


class StudentModel(torch.nn.Module):
    """A trainable static table over a tokenized corpus, with a linear head onto the targets.

    Args:
        table: the starting table (tokens x dim); copied.
        corpus: the tokenized texts that rows refer to.
        target_dim: width of the targets (the head's output).
        token_weights: optional fixed per-token weights in pooling (e.g. SIF); folded into the
            table by ``folded_table``.
        device: torch device to hold the table, head and corpus on.

    Raises:
        ValueError: token_weights do not have one weight per table row.
    """

    def __init__(self, table: np.ndarray, corpus: TokenizedCorpus, target_dim: int, *,
                 token_weights: np.ndarray | None = None, device: str = "cpu") -> None:
        super().__init__()
        table = np.array(table, dtype=np.float32)
        if token_weights is not None:
            token_weights = np.asarray(token_weights, dtype=np.float32)
            if token_weights.shape != (table.shape[0],):
                raise ValueError(f"token_weights must have one weight per token ({table.shape[0]}), "
                                 f"got {token_weights.shape}")
        self.bag = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(table), freeze=False, mode="sum")
        self.head = torch.nn.Linear(table.shape[1], target_dim, bias=False)
        self.register_buffer("ids", torch.from_numpy(np.asarray(corpus.ids, dtype=np.int64)), persistent=False)
        self.register_buffer("offsets", torch.from_numpy(np.asarray(corpus.offsets, dtype=np.int64)),
                             persistent=False)
        self.register_buffer("token_weights", None if token_weights is None else torch.from_numpy(token_weights),
                             persistent=False)
        self.to(device)

    @property
    def device(self) -> torch.device:
        """Where the table and corpus live."""
        return self.ids.device

    def pool(self, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Mean-pooled (token-weighted) table rows of the texts ``rows`` (each must have tokens)."""
        rows = torch.as_tensor(rows, device=self.device)
        starts, counts = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        bag_offsets = torch.cumsum(counts, 0) - counts
        positions = (torch.repeat_interleave(starts - bag_offsets, counts)
                     + torch.arange(int(counts.sum()), device=self.device))
        flat = self.ids[positions]
        sample_weights = torch.repeat_interleave(1.0 / counts.to(torch.float32), counts)
        if self.token_weights is not None:
            sample_weights = sample_weights * self.token_weights[flat]
        return self.bag(flat, bag_offsets, per_sample_weights=sample_weights)

    def forward(self, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The head's outputs for the texts ``rows``: what is compared with their targets."""
        return self.head(self.pool(rows))

    def fit_head(self, rows: np.ndarray, targets: torch.Tensor) -> None:
        """Set the head to the least-squares map from the current pooled outputs of ``rows`` to
        ``targets[rows]`` (a good start: the table then only has to learn what a linear map cannot)."""
        with torch.no_grad():
            chosen = torch.as_tensor(rows, device=self.device)
            outputs = self.pool(chosen).double().cpu()
            solution = torch.linalg.lstsq(outputs, targets[chosen].double().cpu()).solution
            self.head.weight.copy_(solution.T.to(torch.float32))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """``forward`` without gradients, in batches, as a float32 array."""
        with torch.no_grad():
            parts = [self(rows[i:i + PREDICT_BATCH]).cpu().numpy() for i in range(0, len(rows), PREDICT_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, self.head.out_features), np.float32)

    def snapshot(self) -> dict[str, Any]:
        """A copy of the trainable state (table and head), for ``restore``."""
        return {name: value.detach().clone() for name, value in self.state_dict().items()}

    def restore(self, state: dict[str, Any]) -> None:
        """Go back to a state taken by ``snapshot``."""
        self.load_state_dict(state)

    def folded_table(self) -> np.ndarray:
        """The table with the token weights and the head folded in: a static model's table whose
        mean pooling gives what ``forward`` gives."""
        with torch.no_grad():
            folded = self.bag.weight
            if self.token_weights is not None:
                folded = folded * self.token_weights[:, None]
            return (folded @ self.head.weight.T).cpu().numpy().astype(np.float32)
