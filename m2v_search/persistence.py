"""Reading and writing static models on disk, and resolving model names to folders.

Layouts read:
- Model2Vec: ``config.json``, ``model.safetensors`` (``embeddings``, optional ``weights``
  and ``mapping``), ``tokenizer.json``.
- Sentence Transformers: ``modules.json`` naming a ``StaticEmbedding`` module, whose folder
  (``.`` or ``0_StaticEmbedding/``) holds ``model.safetensors`` (``embedding.weight`` or
  ``embeddings``) and ``tokenizer.json``; a ``Normalize`` module means normalised output.

Layout written: the Model2Vec one plus ``modules.json`` (and ``1_Normalize/``), which both
``model2vec`` and ``sentence_transformers`` load, and a generated ``README.md`` model card.
Writes go to a staging folder that replaces the target (``m2v_search.folder_swap``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from m2v_search.errors import HubUnavailableError, ModelLoadError
from m2v_search.folder_swap import make_staging, save_target, swap_in
from m2v_search.tokenization import largest_token_id, unknown_token_id

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "m2v-base"
BUNDLED_MODELS_DIR = Path(__file__).parent / "models"
HUB_FILES = ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "README.md",
             "config_sentence_transformers.json", "0_StaticEmbedding/*", "1_Normalize/*"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUTHY = {"1", "true", "yes", "on"}


@dataclass
class StoredModel:
    """What a model folder holds, before it becomes a StaticModel."""

    folder: Path
    embeddings: np.ndarray
    tokenizer: Tokenizer
    config: dict[str, Any]
    weights: np.ndarray | None = None
    mapping: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def bundled_model_names() -> list[str]:
    """Names of the models shipped inside this package."""
    if not BUNDLED_MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_MODELS_DIR.iterdir() if (p / "model.safetensors").exists())


def resolve_model_folder(
    name_or_path: str | os.PathLike[str] | None,
    *,
    subfolder: str | None = None,
    token: str | None = None,
    force_download: bool = False,
) -> Path:
    """A local folder for a model: bundled name, existing path, or a hub id.

    Args:
        name_or_path: a bundled model name, a folder, or a Hugging Face hub id (None: the default).
        subfolder: the model's folder inside that folder or hub repository.
        token: Hugging Face token, for private hub repositories.
        force_download: ask the hub even when a cached copy exists (hub ids only).

    Returns:
        The folder holding the model files.

    Raises:
        ModelLoadError: the folder does not exist or is a file.
        HubUnavailableError: a hub id that cannot be downloaded (offline, unreachable, unknown).
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL_NAME
    if not isinstance(name_or_path, (str, bytes, os.PathLike)):
        raise TypeError(f"a model is named by a str or a path, got {type(name_or_path).__name__}")
    text = os.fsdecode(os.fspath(name_or_path))
    if not text.strip():
        raise ModelLoadError("empty model name: pass a folder, a bundled model name or a hub id (None: the default)")
    path = Path(text).expanduser()
    if text in bundled_model_names():
        if _holds_model(path) and path.resolve() != (BUNDLED_MODELS_DIR / text).resolve():
            raise ModelLoadError(f"{text!r} names both a bundled model and the model folder {path.resolve()}; "
                                 f"pass './{text}' (or an absolute path) for the folder")
        return _in_subfolder(BUNDLED_MODELS_DIR / text, subfolder)
    if os.path.lexists(path):  # a link that leads nowhere (or round in a loop) is still a local path
        if not path.exists():
            raise ModelLoadError(f"{path} is a broken symbolic link (or a loop of links)")
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; a model is a folder (holding model.safetensors)")
        return _in_subfolder(path, subfolder)
    if text == DEFAULT_MODEL_NAME:
        raise ModelLoadError(f"the default model is missing from this installation ({BUNDLED_MODELS_DIR / text})")
    if isinstance(name_or_path, (bytes, os.PathLike)) or not _HUB_ID.match(text) or text.startswith((".", "~")):
        raise ModelLoadError(f"model folder {text!r} does not exist")
    return _in_subfolder(_download_from_hub(text, subfolder, token, force_download), subfolder)


def _holds_model(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() or (folder / "modules.json").is_file()


def _in_subfolder(folder: Path, subfolder: str | None) -> Path:
    if not subfolder:
        return folder
    inner = folder / subfolder
    if not inner.is_dir():
        raise ModelLoadError(f"subfolder {subfolder!r} does not exist in {folder}")
    return inner


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set: only the local hub cache may be used."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUTHY


def _download_from_hub(repo_id: str, subfolder: str | None, token: str | None, force_download: bool) -> Path:
    import huggingface_hub

    hint = (
        f"To use a model you have on disk, pass its folder instead, e.g. "
        f"StaticModel.from_pretrained('/path/to/{repo_id.split('/')[-1]}'); "
        f"bundled models: {', '.join(bundled_model_names()) or 'none'}."
    )
    patterns = [f"{subfolder.strip('/')}/{p}" for p in HUB_FILES] if subfolder else HUB_FILES
    if hub_offline() or not force_download:  # a cached snapshot is enough
        try:
            return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns, token=token,
                                                          local_files_only=True))
        except Exception as error:
            if hub_offline():
                raise HubUnavailableError(f"{repo_id!r} is not a local folder nor in the Hugging Face cache, "
                                          f"and HF_HUB_OFFLINE is set. {hint}", repo_id) from error
    try:
        folder = huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns, token=token)
    except Exception as error:
        raise HubUnavailableError(
            f"{repo_id!r} is not a local folder, and downloading it from the Hugging Face hub failed "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). {hint}"
        ) from error
    return Path(folder)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error


def _static_module_folder(folder: Path) -> tuple[Path, bool, bool]:
    """(folder holding the vectors, is Sentence Transformers layout, has a Normalize module)."""
    modules_file = folder / "modules.json"
    if not modules_file.exists():
        return folder, False, False
    modules = _read_json(modules_file)
    if not isinstance(modules, list):
        raise ModelLoadError(f"{modules_file} must hold a list of modules")
    types = _module_types(modules)
    normalize = any(t.endswith("Normalize") for t in types)
    for module in modules:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("StaticEmbedding"):
            sub = str(module.get("path") or ".")
            if sub == ".":
                return folder, True, normalize
            _warn_if_tables_differ(folder, (folder / sub).resolve())
            return (folder / sub).resolve(), True, normalize
    if _has_transformer_module(types):
        raise ModelLoadError(
            f"{folder} holds a transformer model, not a static one ({modules_file} has no StaticEmbedding "
            f"module). Distil it first: m2v distill {folder} -o OUT"
        )
    raise ModelLoadError(f"{modules_file} names no StaticEmbedding module")


def _warn_if_tables_differ(folder: Path, module_folder: Path) -> None:
    """Both layouts in one folder: Sentence Transformers (and this library) read the module's table,
    Model2Vec reads the root's. Say so when the two files differ."""
    import filecmp

    root, module = folder / "model.safetensors", module_folder / "model.safetensors"
    if root.is_file() and module.is_file() and not filecmp.cmp(root, module, shallow=False):
        logger.warning("%s holds two different tables: %s (read here and by Sentence Transformers, as modules.json "
                       "says) and %s (what Model2Vec reads)", folder, module, root)


def load_folder(folder: Path) -> StoredModel:
    """Read a model folder in any supported layout, with errors that name the file at fault."""
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist")
    _refuse_special_files(folder)
    vectors_folder, is_st, st_normalize = _static_module_folder(folder)
    _refuse_special_files(vectors_folder)
    tensors_file = vectors_folder / "model.safetensors"
    tokenizer_file = vectors_folder / "tokenizer.json"
    if not tokenizer_file.exists() and (folder / "tokenizer.json").exists():
        tokenizer_file = folder / "tokenizer.json"
    for required in (tensors_file, tokenizer_file):
        if not required.exists():
            raise ModelLoadError(f"{required} is missing: {folder} is not a complete static model folder")
    config_file = folder / "config.json"
    config: dict[str, Any] = _read_json(config_file) if config_file.exists() else {}
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_file} must hold a JSON object")
    if _is_transformer_config(config) and not is_st:
        raise ModelLoadError(
            f"{config_file} describes a {config.get('model_type')} transformer, not a static model. "
            f"Distil it first: m2v distill {folder} -o OUT"
        )
    _check_config_fields(config, config_file)
    if is_st and "normalize" not in config:
        config["normalize"] = st_normalize

    tensors = _read_tensors(tensors_file)
    key = "embeddings" if "embeddings" in tensors else "embedding.weight"
    if key not in tensors:
        raise ModelLoadError(f"{tensors_file} has no 'embeddings' or 'embedding.weight' tensor (has {sorted(tensors)})")
    embeddings = tensors[key]
    if embeddings.ndim != 2:
        raise ModelLoadError(f"{tensors_file}: '{key}' must be 2-D, got shape {embeddings.shape}")
    if embeddings.dtype.name not in ("float32", "float16", "int8", "float64"):
        raise ModelLoadError(f"{tensors_file}: unsupported dtype {embeddings.dtype.name} for '{key}' "
                             "(save the table as float32, float16 or int8)")
    if embeddings.dtype == np.float64:
        embeddings = embeddings.astype(np.float32)
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
    except Exception as error:
        raise ModelLoadError(f"cannot read tokenizer {tokenizer_file}: {error}") from error

    stored = StoredModel(
        folder=folder,
        embeddings=embeddings,
        tokenizer=tokenizer,
        config=config,
        weights=tensors.get("weights"),
        mapping=tensors.get("mapping"),
        metadata=_card_fields(read_card_metadata(folder / "README.md")),
    )
    _check_shapes(stored, tensors_file, tokenizer_file)
    return stored


def _refuse_special_files(folder: Path) -> None:
    """Refuse a FIFO, socket, device or directory where a model file belongs: the readers (some in
    Rust) would block forever opening a FIFO, deaf to SIGTERM."""
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modules.json"):  # a card is read only
        path = folder / name                                                               # if a plain file
        if path.exists() and not path.is_file():
            what = "a directory" if path.is_dir() else "not a plain file (a FIFO, socket or device)"
            raise ModelLoadError(f"{path} is {what}; a model folder holds plain files")


def _check_config_fields(config: dict[str, Any], config_file: Path) -> None:
    """Fields that would otherwise fail only inside encode, or silently (``"normalize": "false"`` is true)."""
    max_length = config.get("max_length")
    if max_length is not None and (type(max_length) is not int or max_length < 1):
        raise ModelLoadError(f"{config_file}: 'max_length' must be a whole number >= 1 or null, "
                             f"got {max_length!r}")
    if config.get("normalize") is not None and type(config["normalize"]) is not bool:
        raise ModelLoadError(f"{config_file}: 'normalize' must be true, false or null, "
                             f"got {config['normalize']!r}")


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        if "bfloat16" in str(error):
            raise ModelLoadError(f"{path} stores bfloat16, which this library cannot read; save the table as "
                                 "float32, float16 or int8") from error
        raise ModelLoadError(f"cannot read {path} (corrupt or not a safetensors file): {error}") from error


def _check_shapes(stored: StoredModel, tensors_file: Path, tokenizer_file: Path) -> None:
    vocabulary_size = stored.tokenizer.get_vocab_size()
    rows = stored.embeddings.shape[0]
    if stored.embeddings.shape[1] == 0:
        raise ModelLoadError(f"{tensors_file}: the embedding table has no columns (shape {stored.embeddings.shape})")
    if stored.mapping is not None:
        mapping = stored.mapping
        if mapping.dtype.kind not in "iu":  # floats were truncated silently, and NaN became a wild row index
            raise ModelLoadError(f"{tensors_file}: 'mapping' must hold whole numbers (row indices), "
                                 f"got {mapping.dtype.name}")
        if mapping.ndim != 1 or len(mapping) != vocabulary_size:
            raise ModelLoadError(
                f"{tensors_file}: 'mapping' has shape {mapping.shape}, expected ({vocabulary_size},) "
                f"for the {vocabulary_size}-token tokenizer"
            )
        if len(mapping) and (mapping.min() < 0 or mapping.max() >= rows):
            raise ModelLoadError(f"{tensors_file}: 'mapping' points outside the {rows} embedding rows")
        stored.mapping = mapping.astype(np.int64)
    elif rows != vocabulary_size:
        raise ModelLoadError(
            f"{tensors_file}: {rows} embedding rows, but the tokenizer has {vocabulary_size} tokens"
        )
    largest_id = largest_token_id(stored.tokenizer)
    if largest_id >= (rows if stored.mapping is None else len(stored.mapping)):
        raise ModelLoadError(f"{tokenizer_file}: token id {largest_id} is past the {rows} rows of {tensors_file} "
                             f"(the tokenizer's {vocabulary_size} ids must run from 0 to {rows - 1})")
    if stored.weights is not None:
        if stored.weights.shape != (vocabulary_size,):
            raise ModelLoadError(
                f"{tensors_file}: 'weights' has shape {stored.weights.shape}, expected ({vocabulary_size},)"
            )
        stored.weights = stored.weights.astype(np.float32)
        unknown = unknown_token_id(stored.tokenizer)
        others = np.ones(vocabulary_size, dtype=bool)
        if unknown is not None and 0 <= unknown < vocabulary_size:
            others[unknown] = False  # encode never reads it (the unknown token is dropped)
        if np.all(stored.weights[others] == 1.0):  # what write_folder writes for no weighting at all
            stored.weights = None
    _check_finite(stored, tensors_file)


def _check_finite(stored: StoredModel, tensors_file: Path) -> None:
    """NaN or infinite entries would make every text holding those tokens a NaN vector."""
    table = stored.embeddings
    if table.dtype.kind == "f":
        bad_rows = int(np.count_nonzero(~np.isfinite(table).all(axis=1)))
        if bad_rows:
            raise ModelLoadError(f"{tensors_file}: {bad_rows} of {table.shape[0]} embedding rows hold NaN or "
                                 "infinite values (a corrupt or badly trained model)")
    if stored.weights is not None and not np.isfinite(stored.weights).all():
        bad = int(np.count_nonzero(~np.isfinite(stored.weights)))
        raise ModelLoadError(f"{tensors_file}: {bad} token weights are NaN or infinite")


def _card_fields(metadata: dict[str, Any]) -> dict[str, Any]:
    """The card's metadata with ``model_name`` and ``base_model`` as text and ``language`` as a list of
    text: YAML reads ``model_name: 2024`` as a number, and the hub allows ``language: en`` and a list
    of base models (the first is kept)."""
    fields = dict(metadata)
    for key in ("model_name", "base_model"):
        value = fields.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        fields[key] = str(value) if isinstance(value, (str, int, float)) else None
    language = fields.get("language")
    if isinstance(language, (str, int, float)):
        language = [language]
    codes = [str(code) for code in language if isinstance(code, (str, int, float))] if isinstance(language, list) else []
    fields["language"] = codes or None  # scalars only: str() of a nested YAML alias tree can take gigabytes
    return fields


def read_card_metadata(readme: Path) -> dict[str, Any]:
    """The YAML front matter of a model card, or {} when there is none or it is unreadable."""
    if not readme.is_file():  # missing, a folder, or a FIFO (reading it would block): the card is optional
        return {}
    import yaml

    try:
        text = readme.read_text(encoding="utf-8", errors="replace")
    except OSError:  # a folder, or no permission: the card only adds metadata, the model loads without it
        return {}
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.DOTALL)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _module_types(modules: Any) -> list[str]:
    """The ``type`` of each module a ``modules.json`` lists."""
    return [str(m.get("type", "")) for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []


def _has_transformer_module(types: list[str]) -> bool:
    return any(t.endswith("Transformer") for t in types)


def _is_transformer_config(config: Any) -> bool:
    """A ``config.json`` of a transformers model (Model2Vec's own names ``model2vec``)."""
    return isinstance(config, dict) and bool(config.get("architectures")) \
        and config.get("model_type") not in (None, "model2vec")


def transformer_in(folder: Path) -> str | None:
    """What shows that ``folder`` holds a transformer model (a teacher: never to be overwritten by a
    static model's save), or None (no folder, an empty one, a static model, anything else). Only
    plain files are read (a FIFO would block)."""
    def parsed(name: str) -> Any:
        try:
            return json.loads((folder / name).read_text(encoding="utf-8")) if (folder / name).is_file() else None
        except (OSError, ValueError):
            return None

    if _has_transformer_module(_module_types(parsed("modules.json"))):
        return "modules.json lists a Transformer module"
    config = parsed("config.json")
    return f"config.json describes a {config.get('model_type')} transformer" if _is_transformer_config(config) else None


def write_folder(
    path: Path,
    embeddings: np.ndarray,
    tokenizer: Tokenizer,
    config: dict[str, Any],
    weights: np.ndarray | None,
    mapping: np.ndarray | None,
    model_card: str,
) -> None:
    """Write a model folder atomically: stage it beside ``path``, then swap it in.

    Files in an existing ``path`` that this library does not write are kept, except ``onnx/``:
    an ONNX export of the table being replaced would give other vectors than the new one.

    Written for readers that do not drop the unknown token or cut long texts themselves
    (Sentence Transformers' ``StaticEmbedding`` folds ``weights`` into the table and averages
    every token the tokenizer gives): the unknown token's weight is 0, and ``tokenizer.json``
    truncates at ``config["max_length"]``. Neither changes what ``encode`` or Model2Vec give.
    """
    from safetensors.numpy import save_file

    path = save_target(path)
    if (transformer := transformer_in(path)) is not None:
        raise ModelLoadError(f"cannot save a static model to {path}: it holds a transformer model ({transformer}), "
                             "whose files the save would replace; choose another folder")
    staging = make_staging(path)
    try:
        tensors = {"embeddings": np.ascontiguousarray(embeddings)}
        unknown = unknown_token_id(tokenizer)
        if weights is None and (embeddings.dtype == np.int8 or unknown is not None):
            # Sentence Transformers turns an int8 table into floats only when folding weights into it;
            # without them it cannot load the table at all. Weights of 1 change no vector.
            weights = np.ones(tokenizer.get_vocab_size(), dtype=np.float32)
        if weights is not None:
            weights = np.array(weights, dtype=np.float32)
            if unknown is not None and 0 <= unknown < len(weights):
                weights[unknown] = 0.0  # its row averaged in by Sentence Transformers, dropped by encode
            tensors["weights"] = weights
        if mapping is not None:
            tensors["mapping"] = np.ascontiguousarray(mapping, dtype=np.int64)
        save_file(tensors, str(staging / "model.safetensors"))
        # safetensors makes its file 0600: give it the mode the umask gives any new file
        os.chmod(staging / "model.safetensors", stat.S_IMODE(staging.stat().st_mode) & 0o666)
        (staging / "tokenizer.json").write_text(truncating_tokenizer_json(tokenizer, config.get("max_length")),
                                                encoding="utf-8")
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        modules = [{"idx": 0, "name": "0", "path": ".", "type": "sentence_transformers.models.StaticEmbedding"}]
        if config.get("normalize"):
            modules.append(
                {"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"}
            )
            (staging / "1_Normalize").mkdir()
        (staging / "modules.json").write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(model_card, encoding="utf-8")
        swap_in(staging, path, _WRITTEN)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def truncating_tokenizer_json(tokenizer: Tokenizer, max_length: int | None) -> str:
    """``tokenizer`` as JSON that cuts texts at ``max_length`` tokens (None: no cut), as ``encode`` does."""
    data = json.loads(tokenizer.to_str())
    data["padding"] = None
    data["truncation"] = None if max_length is None else {
        "direction": "Right", "max_length": int(max_length), "strategy": "LongestFirst", "stride": 0}
    return json.dumps(data, ensure_ascii=False)


_WRITTEN = {"model.safetensors", "tokenizer.json", "config.json", "modules.json", "README.md", "1_Normalize",
            "onnx"}
