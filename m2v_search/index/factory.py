"""Choosing an index: ``auto|flat|hnsw|ivf|ivf-pq|binary|binary-hnsw`` or a FAISS factory string.

Every index stores unit vectors under the inner-product metric (inner product = cosine).
Flat and HNSW are wrapped in ``IDMap2`` (stable int64 ids, reconstruct by id); IVF indexes
take ids natively (``IDMap`` around IVF mislabels results after ``remove_ids``). The binary
kinds keep sign codes and int8 copies (:mod:`m2v_search.index.backends.binary`).

Defaults were measured on real text embeddings (GCIDE definitions with a 256-d distilled
MiniLM; see ``tests/test_index_recall.py`` and ``benchmarks/index_speed.py``): HNSW32 with
efSearch 128 gave recall@10 0.973 at 100k vectors (64: 0.950), 256 is used beyond 200k; IVF
with nlist ~ 4 sqrt(n) needs about 40% of the lists probed (nprobe = nlist/4 gave only 0.93
at 10k and 0.987 at 100k): static embeddings have a high intrinsic dimension, so IVF saves
little over exact search at these recalls.

``auto``: a flat scan costs about 0.1 ms per 1,000 vectors of 256 dims on one thread (16 ms at
149k), so flat stays exact up to ``FLAT_MAX`` (about 1 ms). Beyond, sign codes re-scored from
int8 copies answer in under 1 ms at 172k with recall@10 >= 0.99 in 0.29x the memory
(``benchmarks/results/index_speed_binary.md``). Scanning every code grows linearly (search p50
1.0 ms at 172k, 6.0 ms at 1M noisy copies), an HNSW graph over the codes hardly at all (8.3 ms at
172k, 8.1 ms at 1M, both at recall@10 0.99, because the walk must gather 1,536 candidates), so
past ``BINARY_FLAT_MAX`` (the extrapolated crossing) the graph takes over, at a far longer build
(281 s instead of 4 s for 1M); where even the int8 copies do not fit the memory budget, float
HNSW or IVF-PQ as before.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass, field
from typing import Any

from m2v_search.index_kinds import BINARY_KINDS, BINARY_RESCORE, KINDS, MAX_RESCORE  # noqa: F401 (re-exported)

FLAT_MAX = 10_000           # auto: exact search up to this many vectors (then binary codes are faster)
BINARY_FLAT_MAX = 1_500_000  # auto: scan every binary code up to this many vectors (then a graph of codes)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
IVF_MIN_VECTORS = 2_000     # below this an IVF request stays flat (exact) until the index grows
PQ_CENTROIDS = 256          # 8-bit PQ codebooks: each sub-quantizer learns 256 centroids


@dataclass
class IndexSpec:
    """A resolved index choice: the FAISS factory string and its default search parameters."""

    kind: str
    factory: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def default_memory_budget() -> int:
    """Half the physical memory, in bytes (the ``auto`` budget when none is given)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4 << 30


def parse_size(text: str) -> int:
    """``"512M"``, ``"2G"``, ``"1.5GiB"`` or a plain number of bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M or 4G)")
    number, unit = float(match.group(1)), match.group(2)
    return int(number * 1024 ** " kmgt".index(unit or " "))


def nlist_for(n: int) -> int:
    """Number of IVF lists: about 4 sqrt(n), with at least 39 training points per list."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39, 65_536))


def pq_subquantizers(dim: int) -> int:
    """PQ sub-quantizers: a divisor of dim near dim/4 (8-bit codes: 1 byte per 4 dimensions)."""
    target = max(1, dim // 4)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def default_nprobe(nlist: int) -> int:
    """IVF lists probed by default: 40% of them (at least 32), for recall@10 >= 0.95."""
    return min(nlist, max(32, round(nlist * 0.4)))


def check_rescore(rescore: Any) -> int | None:
    """``rescore`` if it is None or a positive integer.

    Raises:
        ValueError: Anything else (naming the value).
    """
    if rescore is not None and (isinstance(rescore, bool) or not isinstance(rescore, numbers.Integral)
                                or not 1 <= rescore <= MAX_RESCORE):
        raise ValueError(f"rescore must be an integer from 1 to {MAX_RESCORE:,}, got {rescore!r}")
    return None if rescore is None else int(rescore)


def flat_spec() -> IndexSpec:
    return IndexSpec("flat", "IDMap2,Flat", {})


def binary_bytes(n: int, dim: int, graph: bool = False) -> int:
    """Memory a binary index of ``n`` vectors takes: sign codes, int8 copies, scales, ids (and graph links)."""
    per_vector = dim // 8 + dim + 4 + 8 + (int(HNSW_M * 2 * 4 * 1.1) if graph else 0)
    return n * per_vector


def choose_auto(n: int, dim: int, budget: int) -> tuple[str, str]:
    """The kind ``auto`` picks for ``n`` vectors within ``budget`` bytes, and why (one sentence)."""
    flat_bytes = n * dim * 4
    size = f"{n:,} vectors of {dim} dims"
    if n <= FLAT_MAX and flat_bytes <= budget:
        return "flat", f"{size} <= {FLAT_MAX:,}: exact search is fast enough"
    if dim % 8 == 0 and n <= BINARY_FLAT_MAX and binary_bytes(n, dim) <= budget:
        return "binary", (f"{size} > {FLAT_MAX:,}: sign codes re-scored from int8 copies "
                          f"({binary_bytes(n, dim) / flat_bytes:.2f}x flat memory, recall@10 ~0.99, "
                          f"a scan of every code up to {BINARY_FLAT_MAX:,} vectors)")
    if dim % 8 == 0 and binary_bytes(n, dim, graph=True) <= budget:
        return "binary-hnsw", (f"{size} > {BINARY_FLAT_MAX:,}: an HNSW graph over sign codes, re-scored "
                               "from int8 copies")
    hnsw_bytes = n * (dim * 4 + HNSW_M * 2 * 4 * 1.1)
    if hnsw_bytes <= budget:
        return "hnsw", f"{size}: binary codes need dims divisible by 8; HNSW fits the memory budget"
    return "ivf-pq", f"{size}: only product-quantized codes fit the memory budget of {budget:,} bytes"


def choice_reason(requested: dict[str, Any], n: int, dim: int) -> str:
    """Why an index of ``n`` vectors has the kind it has, for the manifest and ``m2v-index info``.

    Args:
        requested: What was asked for (``kind``, ``factory``, ``memory_budget``).
        n: Live vectors.
        dim: Dimensions.

    Returns:
        One sentence.
    """
    if requested.get("factory"):
        return f"the FAISS factory {requested['factory']!r} was requested"
    kind = requested.get("kind") or "auto"
    if kind == "auto":
        return resolve("auto", n, dim, requested.get("memory_budget")).reason
    if kind in ("ivf", "ivf-pq") and n < ivf_training_minimum(kind, nlist_for(n)):
        return (f"{kind} was requested; {n:,} vectors are too few to train it (it needs "
                f"{ivf_training_minimum(kind, nlist_for(n)):,}), so the index stays exact (flat)")
    return f"{kind} was requested"


def ivf_training_minimum(kind: str, nlist: int) -> int:
    """Vectors an IVF kind needs to train: at least 2,000 and 39 per list (and per PQ centroid for ``ivf-pq``)."""
    return max(IVF_MIN_VECTORS, 39 * nlist, 39 * PQ_CENTROIDS if kind == "ivf-pq" else 0)


def resolve(kind: str, n: int, dim: int, memory_budget: int | None = None) -> IndexSpec:
    """The index for ``n`` vectors of ``dim`` dimensions (``kind`` in KINDS); ``reason`` says why."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(KINDS)} or a factory string")
    budget = default_memory_budget() if memory_budget is None else memory_budget
    if kind == "auto":
        kind, reason = choose_auto(n, dim, budget)
        spec = resolve(kind, n, dim, budget)
        spec.reason = f"auto chose {kind}: {reason}"
        return spec
    if kind == "flat":
        return flat_spec()
    if kind == "binary":
        return IndexSpec("binary", "BFlat", {"rescore": BINARY_RESCORE})
    if kind == "binary-hnsw":
        return IndexSpec("binary-hnsw", f"BHNSW{HNSW_M}",
                         {"rescore": BINARY_RESCORE, "efSearch": BINARY_RESCORE, "M": HNSW_M,
                          "efConstruction": HNSW_EF_CONSTRUCTION})
    if kind == "hnsw":
        return IndexSpec("hnsw", f"IDMap2,HNSW{HNSW_M},Flat",
                         {"efSearch": HNSW_EF_SEARCH if n <= 200_000 else 2 * HNSW_EF_SEARCH,
                          "efConstruction": HNSW_EF_CONSTRUCTION})
    nlist = nlist_for(n)
    nprobe = default_nprobe(nlist)
    if kind == "ivf":
        return IndexSpec("ivf", f"IVF{nlist},Flat", {"nprobe": nprobe, "nlist": nlist})
    return IndexSpec("ivf-pq", f"IVF{nlist},PQ{pq_subquantizers(dim)}", {"nprobe": nprobe, "nlist": nlist})


def custom_spec(factory: str) -> IndexSpec:
    """A user factory string; non-IVF ones get an ``IDMap2`` wrapper for stable ids."""
    factory = factory.strip()
    if not factory:
        raise ValueError("--factory needs a FAISS factory string, e.g. 'HNSW32,Flat' or 'IVF256,SQ8'")
    if factory.startswith(("IDMap", "IVF")):
        wrapped = factory
    else:
        wrapped = f"IDMap2,{factory}"
    if "HNSW" in factory:
        kind = "hnsw"
    elif factory.startswith("IVF"):
        kind = "ivf"
    elif factory in ("IDMap2,Flat", "Flat"):
        kind = "flat"
    else:
        kind = "custom"
    params: dict[str, Any] = {}
    if kind == "hnsw":
        params = {"efSearch": HNSW_EF_SEARCH}
    if kind == "ivf":
        match = re.match(r"IVF(\d+)", factory)
        nlist = int(match.group(1)) if match else 1
        params = {"nprobe": default_nprobe(nlist), "nlist": nlist}
    return IndexSpec(kind, wrapped, params)


def new_index(spec: IndexSpec, dim: int) -> Any:
    """An empty FAISS index for ``spec`` (inner-product metric)."""
    import faiss

    try:
        index = faiss.index_factory(dim, spec.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise ValueError(f"FAISS cannot build factory {spec.factory!r} for {dim} dims: {faiss_reason(error)}") \
            from None
    problem = selector_problem(index) or transform_problem(index)
    if problem is not None:
        raise ValueError(f"factory {spec.factory!r}: {problem}")
    apply_build_params(index, spec)
    return index


# FAISS index families whose search takes an id selector (deletes and metadata filters need one)
_SELECTOR_FAMILIES = ("IndexFlat", "IndexScalarQuantizer", "IndexHNSW", "IndexIVF")


def _layers(index: Any) -> list[Any]:
    """``index`` and the indexes inside it (through IDMaps and transforms), outermost first,
    downcast. Every object is kept in the list: SWIG frees an outer index's children with it."""
    import faiss

    chain = [faiss.downcast_index(index)]
    if type(chain[-1]).__name__.startswith("IndexIDMap"):
        chain.append(faiss.downcast_index(chain[-1].index))
    while type(chain[-1]).__name__ == "IndexPreTransform":
        chain.append(faiss.downcast_index(chain[-1].index))
    return chain


def selector_problem(index: Any) -> str | None:
    """Why searches of ``index`` could not be restricted to some ids (None: they can): one
    IDMap on top, then any transforms (PCA, OPQ, RR), then a flat, SQ, HNSW or IVF index."""
    name = type(_layers(index)[-1]).__name__
    if name.startswith("IndexIDMap"):
        return "IDMap appears twice (the index adds one itself)"
    if not name.startswith(_SELECTOR_FAMILIES):
        return (f"FAISS's {name} cannot search with an id selector, which deletes and metadata filters need; "
                "use a Flat, SQ, HNSW or IVF index (optionally after PCA, OPQ or RR), or a kind (--index)")
    return None


def transform_problem(index: Any) -> str | None:
    """Why the transforms of ``index`` cannot work (None: they can): a PCA asked for more
    dimensions than it is given (FAISS only says so when it trains, after the vectors are in)."""
    import faiss

    for layer in _layers(index):
        if type(layer).__name__ == "IndexPreTransform":
            for position in range(layer.chain.size()):
                transform = faiss.downcast_VectorTransform(layer.chain.at(position))
                if type(transform).__name__ == "PCAMatrix" and transform.d_out > transform.d_in:
                    return (f"its PCA asks for {transform.d_out} dimensions from {transform.d_in}-dim vectors; "
                            f"ask for at most {transform.d_in}")
    return None


def apply_build_params(index: Any, spec: IndexSpec) -> None:
    import faiss

    hnsw = hnsw_of(index)
    if hnsw is not None and "efConstruction" in spec.params:
        hnsw.hnsw.efConstruction = int(spec.params["efConstruction"])
    ivf = ivf_of(index)
    if ivf is not None:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
        concrete = faiss.downcast_index(ivf)
        if hasattr(concrete, "do_polysemous_training"):
            concrete.do_polysemous_training = False  # unused here, and 4x the training time


def hnsw_of(index: Any) -> Any:
    """The IndexHNSW inside ``index`` (through an IDMap), or None."""
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    return inner if isinstance(inner, faiss.IndexHNSW) else None


def ivf_of(index: Any) -> Any:
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, AttributeError):
        return None


_FAISS_ERROR = re.compile(r"Error in .*? at [^ ]+:\d+: (?:Error: '.*?' failed: )?")


def faiss_reason(error: BaseException) -> str:
    """The sentence of a FAISS C++ error, without the function signature and source location.

    Args:
        error: A RuntimeError raised by FAISS.

    Returns:
        E.g. ``could not parse index string Foo,Bar``.
    """
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return _FAISS_ERROR.sub("", lines[0], count=1).strip() or lines[0]
