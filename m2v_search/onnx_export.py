"""ONNX export of a StaticModel: the pooling graph (built with ``onnx.helper``, no torch) and
the tokenizer files, in the layout Hugging Face ONNX loaders look for.

Layout written to ``out_dir`` (see docs/notes/compat.md):

- ``onnx/model.onnx``: inputs ``input_ids`` (int64, ``[num_tokens]``: the ids of every text
  one after another) and ``offsets`` (int64, ``[batch_size]``: where each text starts, the
  first being 0), as torch's ``EmbeddingBag`` and the Model2Vec ONNX models on the hub;
  output ``embeddings`` (float32, ``[batch_size, dim]``).
- ``onnx/model_padded.onnx`` (unless ``padded=False``): inputs ``input_ids`` and
  ``attention_mask`` (int64, ``[batch_size, sequence_length]``), as fastembed and the
  transformers-style runners feed; same output.
- ``tokenizer.json`` (no post-processor, so no special tokens are added whatever the
  loader asks; truncation at the model's ``max_length``), ``tokenizer_config.json``,
  ``special_tokens_map.json``, ``config.json`` and a short ``README.md``.

Both graphs drop the unknown token, apply the per-token weights and the vocabulary mapping
when the model has them, average, and L2-normalise when the model normalises: the same
vectors as ``StaticModel.encode``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

from m2v_search.persistence import truncating_tokenizer_json


class ExportableModel(Protocol):
    """What the export reads of a ``m2v_search.StaticModel``."""

    name: str
    embedding: np.ndarray
    weights: np.ndarray | None
    token_mapping: np.ndarray | None
    tokenizer: Tokenizer
    unk_token_id: int | None
    normalize: bool
    max_length: int | None

    @property
    def dim(self) -> int: ...

OPSET = 18
MODEL_FILE = "onnx/model.onnx"
PADDED_MODEL_FILE = "onnx/model_padded.onnx"
_WRITTEN = frozenset({"onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json",
                      "README.md"})
_EXTERNAL_DATA_BYTES = 1_800_000_000  # a protobuf file cannot exceed 2 GB


def export_onnx(
    model: ExportableModel,
    out_dir: str | os.PathLike[str],
    *,
    padded: bool = True,
) -> Path:
    """Write the ONNX graphs and tokenizer files of ``model`` to ``out_dir`` (atomically).

    Args:
        model: the ``m2v_search.StaticModel`` to export (load a folder or name with
            ``StaticModel.from_pretrained`` first).
        out_dir: the output folder (created; an existing one is replaced, keeping files
            this export does not write; a folder holding a saved model, as in Model2Vec's hub
            layout, also keeps its README.md and the keys of its config.json).
        padded: also write ``onnx/model_padded.onnx`` (``input_ids`` + ``attention_mask``).

    Returns:
        The path of ``out_dir/onnx/model.onnx``.

    Raises:
        ImportError: the ``onnx`` package is missing (install ``m2v-search[onnx]``).
        OSError: ``out_dir`` cannot be written.
    """
    try:
        import onnx
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs the onnx package: pip install 'm2v-search[onnx]'") from error
    from m2v_search.folder_swap import make_staging, save_target, swap_in

    target = save_target(out_dir)
    staging = make_staging(target)
    try:
        (staging / "onnx").mkdir()
        graphs = {MODEL_FILE: build_bag_graph(model)}
        if padded:
            graphs[PADDED_MODEL_FILE] = build_padded_graph(model)
        for name, graph in graphs.items():
            onnx.checker.check_model(graph)
            _save(graph, staging / name)
        _write_tokenizer_files(model, staging, padded)
        swap_in(staging, target, _WRITTEN - _keep_model_files(target, staging))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / MODEL_FILE


# ---------------------------------------------------------------------- graphs
class _GraphBuilder:
    """Nodes and initializers of one graph, with fresh names for intermediate values."""

    def __init__(self, model: ExportableModel) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.model = model
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes: Any) -> str:
        self._count += 1
        output = output or f"{op_type.lower()}_{self._count}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def token_terms(self, ids: str, mask: str | None) -> tuple[str, str, str]:
        """``(vectors, weight, keep)`` of ``ids``: looked-up float32 vectors (through the mapping),
        each token's weight (0 for unknown or masked tokens), and 1/0 for kept/dropped tokens."""
        from onnx import TensorProto

        model = self.model
        table = self.constant("embedding_table", model.embedding)
        rows = ids if model.token_mapping is None else self.op("Gather", self.constant("token_mapping",
                                                                                      model.token_mapping), ids)
        vectors = self.op("Gather", table, rows)
        if model.embedding.dtype != np.float32:
            vectors = self.op("Cast", vectors, to=TensorProto.FLOAT)
        keep = mask
        if model.unk_token_id is not None:
            known = self.op("Not", self.op("Equal", ids, self.constant("unk_token_id",
                                                                          np.array(model.unk_token_id, np.int64))))
            known = self.op("Cast", known, to=TensorProto.FLOAT)
            keep = known if keep is None else self.op("Mul", keep, known)
        if keep is None:
            keep = self.op("Cast", self.op("GreaterOrEqual", ids, self.constant("zero_id", np.array(0, np.int64))),
                           to=TensorProto.FLOAT)
        weight = keep
        if model.weights is not None:
            weight = self.op("Mul", keep, self.op("Gather", self.constant("token_weights", model.weights), ids))
        return vectors, weight, keep

    def finish(self, sums: str, counts: str) -> None:
        """Divide the sums by the counts (at least 1), normalise if the model does, into ``embeddings``."""
        divisor = self.op("Max", counts, self.constant("one", np.array(1.0, np.float32)))
        if not self.model.normalize:
            self.op("Div", sums, divisor, output="embeddings")
            return
        mean = self.op("Div", sums, divisor)
        norms = self.op("ReduceL2", mean, self.constant("last_axis", np.array([1], np.int64)), keepdims=1)
        tiny = self.constant("tiny", np.array(1e-32, np.float32))  # as l2_normalize: zero rows stay zero
        self.op("Div", mean, self.op("Add", norms, tiny), output="embeddings")

    def graph(self, name: str, inputs: list[Any]) -> Any:
        from onnx import TensorProto

        outputs = [self.helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch_size",
                                                                                         self.model.dim])]
        graph = self.helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        onnx_model = self.helper.make_model(graph, opset_imports=[self.helper.make_opsetid("", OPSET)],
                                            producer_name="m2v-search")
        onnx_model.ir_version = 8  # readable by onnxruntime >= 1.14 and onnxruntime-web
        self.helper.set_model_props(onnx_model, {"normalize": str(self.model.normalize).lower(),
                                                 "dim": str(self.model.dim)})
        return onnx_model


def build_bag_graph(model: ExportableModel) -> Any:
    """The ``input_ids`` + ``offsets`` graph (``EmbeddingBag`` mean mode), as an ``onnx.ModelProto``."""
    from onnx import TensorProto

    builder = _GraphBuilder(model)
    op, constant = builder.op, builder.constant
    vectors, weight, keep = builder.token_terms("input_ids", None)
    # Bag of each token: mark each text's start, cumulative sum, minus one.
    n_tokens = op("Shape", "input_ids")
    starts = op("ConstantOfShape", op("Add", n_tokens, constant("one_id", np.array([1], np.int64))),
                value=builder.numpy_helper.from_array(np.array([0], np.int64)))
    ones = op("ConstantOfShape", op("Shape", "offsets"), value=builder.numpy_helper.from_array(np.array([1],
                                                                                                      np.int64)))
    starts = op("ScatterElements", starts, "offsets", ones, axis=0, reduction="add")
    bag = op("Sub", op("Slice", op("CumSum", starts, constant("axis_zero", np.array(0, np.int64))),
                      constant("slice_start", np.array([0], np.int64)), n_tokens),
             constant("one_scalar_id", np.array(1, np.int64)))
    batch = op("Shape", "offsets")
    weighted = op("Mul", vectors, op("Unsqueeze", weight, constant("axis_one", np.array([1], np.int64))))
    zeros = op("ConstantOfShape", op("Concat", batch, constant("dim", np.array([model.dim], np.int64)), axis=0),
               value=builder.numpy_helper.from_array(np.array([0.0], np.float32)))
    rows = op("Expand", op("Unsqueeze", bag, "axis_one"), op("Shape", weighted))
    sums = op("ScatterElements", zeros, rows, weighted, axis=0, reduction="add")
    empty_counts = op("ConstantOfShape", batch, value=builder.numpy_helper.from_array(np.array([0.0], np.float32)))
    counts = op("Unsqueeze", op("ScatterElements", empty_counts, bag, keep, axis=0, reduction="add"), "axis_one")
    builder.finish(sums, counts)
    inputs = [builder.helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["num_tokens"]),
              builder.helper.make_tensor_value_info("offsets", TensorProto.INT64, ["batch_size"])]
    return builder.graph("m2v_search_static_bag", inputs)


def build_padded_graph(model: ExportableModel) -> Any:
    """The ``input_ids`` + ``attention_mask`` graph (padded batches), as an ``onnx.ModelProto``."""
    from onnx import TensorProto

    builder = _GraphBuilder(model)
    op, constant = builder.op, builder.constant
    mask = op("Cast", "attention_mask", to=TensorProto.FLOAT)
    vectors, weight, keep = builder.token_terms("input_ids", mask)
    weighted = op("Mul", vectors, op("Unsqueeze", weight, constant("axis_two", np.array([2], np.int64))))
    axis_one = constant("axis_one", np.array([1], np.int64))
    sums = op("ReduceSum", weighted, axis_one, keepdims=0)
    counts = op("ReduceSum", keep, axis_one, keepdims=1)
    builder.finish(sums, counts)
    inputs = [builder.helper.make_tensor_value_info(name, TensorProto.INT64, ["batch_size", "sequence_length"])
              for name in ("input_ids", "attention_mask")]
    return builder.graph("m2v_search_static_padded", inputs)


def _keep_model_files(target: Path, staging: Path) -> set[str]:
    """When ``target`` holds a saved model (Model2Vec's hub layout puts onnx/ beside it), the names
    of its files to keep: its model card, and its config.json with the export's keys merged in."""
    config_file = target / "config.json"
    if not (target / "model.safetensors").is_file():
        return set()
    try:
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        config = {}
    if isinstance(config, dict):
        exported = json.loads((staging / "config.json").read_text(encoding="utf-8"))
        merged = json.dumps({**config, **exported}, indent=2) + "\n"
        (staging / "config.json").write_text(merged, encoding="utf-8")
    if not (target / "README.md").is_file():
        return set()
    (staging / "README.md").unlink()
    return {"README.md"}


def _save(onnx_model: Any, path: Path) -> None:
    import onnx

    large = onnx_model.ByteSize() > _EXTERNAL_DATA_BYTES
    onnx.save_model(onnx_model, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=f"{path.name}_data" if large else None)


# ---------------------------------------------------------------------- tokenizer files
def _special_token(model: ExportableModel, candidates: tuple[str, ...]) -> str | None:
    for token in candidates:
        if model.tokenizer.token_to_id(token) is not None:
            return token
    return None


def _write_tokenizer_files(model: ExportableModel, folder: Path, padded: bool) -> None:
    tokenizer_json = json.loads(truncating_tokenizer_json(model.tokenizer, model.max_length))
    tokenizer_json["post_processor"] = None  # never add [CLS]/[SEP]: encode does not
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")

    unk = None if model.unk_token_id is None else model.tokenizer.id_to_token(model.unk_token_id)
    pad = _special_token(model, ("[PAD]", "<pad>", "<PAD>", "[pad]")) or unk or model.tokenizer.id_to_token(0)
    pad_id = model.tokenizer.token_to_id(pad) if pad is not None else 0
    specials = {key: value for key, value in (("pad_token", pad), ("unk_token", unk)) if value is not None}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.max_length if model.max_length is not None else 1_000_000,
        "clean_up_tokenization_spaces": False,
        **specials,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    config = {
        "model_type": "model2vec",
        "architectures": ["StaticModel"],
        "hidden_size": model.dim,
        "hidden_dim": model.dim,
        "normalize": model.normalize,
        "max_length": model.max_length,
        "pad_token_id": pad_id,
        "unk_token_id": model.unk_token_id,
        "onnx": {"model": MODEL_FILE, "inputs": ["input_ids", "offsets"], "output": "embeddings",
                 **({"padded_model": PADDED_MODEL_FILE} if padded else {})},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(_readme(model, padded), encoding="utf-8")


def _readme(model: ExportableModel, padded: bool) -> str:
    lines = [
        "---", "library_name: onnx", "tags: [embeddings, static-embeddings, onnx, m2v-search, model2vec]", "---",
        f"# {model.name} (ONNX)", "",
        f"ONNX export of the static embedding model `{model.name}` ({model.dim} dimensions, "
        f"{'unit-length' if model.normalize else 'unnormalised'} output), made by m2v-search.", "",
        f"- `{MODEL_FILE}`: inputs `input_ids` (int64, all texts' ids one after another) and `offsets` "
        "(int64, the start of each text, first 0); output `embeddings` (float32, batch x dim).",
    ]
    if padded:
        lines.append(f"- `{PADDED_MODEL_FILE}`: inputs `input_ids` and `attention_mask` (int64, batch x "
                     "sequence); output `embeddings`.")
    lines += ["", "Tokenize with `tokenizer.json` (it adds no special tokens); unknown tokens are dropped "
              "inside the graph.", ""]
    return "\n".join(lines)
