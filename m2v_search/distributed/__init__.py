"""Distributed index builds on Dask (``pip install m2v-search[dask]``).

``build_index_dask(inputs, output_dir, ...)`` encodes a corpus on a Dask cluster and writes an
ordinary index directory (open it with ``m2v_search.index.VectorIndex.open``). Dask is imported
only when a build runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_index_dask", "DaskBuildReport"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from m2v_search.distributed import dask_build

        return getattr(dask_build, name)
    raise AttributeError(f"module 'm2v_search.distributed' has no attribute {name!r}")
