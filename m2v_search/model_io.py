"""Loading, saving and exporting a StaticModel: Model2Vec-compatible ``from_pretrained`` and
``save_pretrained``, Sentence Transformers import, hub upload and ONNX export.

``StaticModelIO`` is the base class of ``m2v_search.model.StaticModel``; it keeps these
entry points apart from the encoding code. The heavy work lives in ``persistence``,
``hub``, ``onnx_export`` and ``st_compat``, imported when a method runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from m2v_search.fingerprint import EQUIVALENT_FINGERPRINTS, legacy_fingerprint
from m2v_search.quantization import quantize

DEFAULT_MAX_LENGTH = 512
UNSET: Any = object()  # "argument not given" where None has a meaning
Model = TypeVar("Model", bound="StaticModelIO")


def check_normalize(normalize: Any) -> Any:
    """``normalize`` itself when it is True, False or None ("no" would be true).

    Raises:
        TypeError: anything else.
    """
    if normalize is not None and not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be True, False or None, got {normalize!r}")
    return normalize


class StaticModelIO:
    """Constructors and writers of ``StaticModel`` (see that class for the model itself)."""

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (multiprocessing, joblib, copy.deepcopy) carries the tokenizer, not its fast
        backend, which cannot be pickled: the copy selects the same backend again."""
        state = dict(self.__dict__)
        state["_backend"] = state["_backend"].name
        state["_fingerprint_cache"] = None
        del state["_table"]  # the float32 copy of ``embedding``: made again on arrival
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from m2v_search.tokenization import select_backend

        backend = state.pop("_backend")
        self.__dict__.update(state)
        self._table = np.ascontiguousarray(self.embedding, dtype=np.float32)  # type: ignore[attr-defined]
        self._backend = select_backend(self.tokenizer, backend)  # type: ignore[attr-defined]

    @classmethod
    def from_pretrained(
        cls: type[Model],
        path: str | os.PathLike[str] | None = None,
        token: str | None = None,
        normalize: bool | None = None,
        subfolder: str | None = None,
        quantize_to: str | None = None,
        dimensionality: int | None = None,
        vocabulary_quantization: int | None = None,
        max_length: int | None = UNSET,
        force_download: bool = True,
        *,
        tokenizer_backend: str | None = None,
    ) -> Model:
        """Load a model; the arguments (and their order) are Model2Vec's.

        Args:
            path: None or ``"m2v-base"`` (the bundled default), a local folder (Model2Vec or
                Sentence Transformers layout; never touches the network), or a hub id
                (downloaded when the hub is reachable; otherwise a clear error).
            token: Hugging Face token for private hub repositories.
            normalize: unit-length output by default (None: the model's config).
            subfolder: the model's folder inside ``path`` (or inside the hub repository).
            quantize_to: storage precision after loading: "float32", "float16" or "int8".
            dimensionality: keep the first n dimensions (PCA-ordered models).
            vocabulary_quantization: Model2Vec's k-means vocabulary clustering; not supported
                here (models clustered by Model2Vec load fine: pass None).
            max_length: default token limit of ``encode`` (None: no limit; unset: the config's).
            force_download: for hub ids, ask the hub even when a cached copy exists.
            tokenizer_backend: "auto", "hf" or "nanotoken" (see ``m2v_search.tokenization``).

        Returns:
            The model.

        Raises:
            ModelLoadError: the folder is missing, incomplete or corrupt (the message names the file).
            HubUnavailableError: a hub id while offline or when the hub cannot be reached.
            ValueError: a bad ``quantize_to``, ``dimensionality`` or ``vocabulary_quantization``.
        """
        from m2v_search.persistence import load_folder, resolve_model_folder

        if vocabulary_quantization is not None:
            raise ValueError("vocabulary_quantization (k-means clustering of the vocabulary) is not supported by "
                             "m2v-search; cluster with model2vec, then load the saved folder here")
        check_normalize(normalize)
        if dimensionality is not None and (isinstance(dimensionality, bool) or not isinstance(dimensionality, int)):
            raise TypeError(f"dimensionality must be a whole number or None, got {dimensionality!r}")
        folder = resolve_model_folder(path, subfolder=subfolder, token=token, force_download=force_download)
        stored = load_folder(folder)
        config = stored.config
        embeddings, weights = stored.embeddings, stored.weights
        if quantize_to is not None:
            embeddings, weights = quantize(embeddings, weights, quantize_to, stored.tokenizer.get_vocab_size())
        if dimensionality is not None:
            if not 0 < dimensionality <= embeddings.shape[1]:
                raise ValueError(f"dimensionality must be in 1..{embeddings.shape[1]}, got {dimensionality}")
            if dimensionality < embeddings.shape[1]:
                config = _truncated_config(config, dimensionality, embeddings.shape[1])
            embeddings = embeddings[:, :dimensionality]
        name = str(path) if path is not None else None
        return cls(
            embeddings,
            stored.tokenizer,
            config=config,
            normalize=bool(config.get("normalize", False)) if normalize is None else normalize,
            weights=weights,
            token_mapping=stored.mapping,
            base_model_name=stored.metadata.get("base_model") or config.get("base_model") or None,
            language=stored.metadata.get("language"),
            max_length=config.get("max_length", DEFAULT_MAX_LENGTH) if max_length is UNSET else max_length,
            tokenizer_backend=tokenizer_backend,
        )._named(stored.metadata.get("model_name") or name or Path(stored.folder).name)

    @classmethod
    def from_sentence_transformers(cls: type[Model], model: Any, *, normalize: bool | None = None) -> Model:
        """A StaticModel from a Sentence Transformers static model: a loaded ``SentenceTransformer``
        (or its ``StaticEmbedding`` module), or the path of one saved on disk.

        Args:
            model: ``SentenceTransformer`` whose first module is ``StaticEmbedding``, a
                ``StaticEmbedding``, or a folder.
            normalize: unit-length output by default (None: when the model has a Normalize module).

        Returns:
            The model, giving the same vectors as ``model.encode``.

        Raises:
            TypeError: ``model`` is a transformer (distil it first) or not a Sentence Transformers model.
        """
        from m2v_search.st_compat import static_parts

        if isinstance(model, (str, os.PathLike)):
            return cls.from_pretrained(model, normalize=normalize)
        vectors, tokenizer, has_normalize, name = static_parts(model)
        return cls(vectors, tokenizer, normalize=has_normalize if normalize is None else normalize,
                   max_length=None)._named(name)

    def _named(self: Model, name: str) -> Model:
        self.name = name
        return self

    name: str = "static-model"

    def save_pretrained(
        self, path: str | os.PathLike[str], model_name: str | None = None, subfolder: str | None = None
    ) -> None:
        """Save in the Model2Vec layout (which Sentence Transformers loads too), with a model card.

        Args:
            path: the folder to write (replaced atomically; files of other tools in it are kept).
            model_name: the name in the model card (default: the folder's name).
            subfolder: write into ``path/subfolder`` instead.
        """
        from m2v_search.model_card import render_model_card
        from m2v_search.persistence import write_folder

        target = Path(path) / subfolder if subfolder else Path(path)
        # the write rewrites parts encode never reads (the unknown token's weight, truncation): an index
        # whose manifest recorded the fingerprint earlier versions computed still knows this model
        earlier = {*(self.config.get(EQUIVALENT_FINGERPRINTS) or []), legacy_fingerprint(self)} - {self.fingerprint}
        config = {
            **{key: value for key, value in self.config.items() if key != "onnx"},  # onnx/ is not kept (below)
            **({EQUIVALENT_FINGERPRINTS: sorted(earlier)} if earlier else {}),
            "model_type": "model2vec",
            "architectures": ["StaticModel"],
            "hidden_dim": self.dim,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "embedding_dtype": self.embedding_dtype,
        }
        card = render_model_card(
            model_name=model_name or Path(os.path.abspath(target)).name,  # "." has no name of its own
            base_model=self.base_model_name,
            dim=self.dim,
            vocabulary_size=self.vocabulary_size,
            dtype=self.embedding_dtype,
            normalize=self.normalize,
            language=self.language,
            recipe=self.config.get("recipe"),
        )
        write_folder(target, self.embedding, self.tokenizer, config, self.weights, self.token_mapping, card)

    def push_to_hub(
        self, repo_id: str, private: bool = False, token: str | None = None, subfolder: str | None = None
    ) -> str:
        """Upload the model to a Hugging Face hub model repository (Model2Vec's signature).

        Args:
            repo_id: ``owner/name``; the repository is created when missing.
            private: create the repository private (an existing one keeps its visibility).
            token: Hugging Face token (default: the one stored by ``hf auth login``).
            subfolder: upload into this folder of the repository.

        Returns:
            The URL of the commit.

        Raises:
            HubUnavailableError: HF_HUB_OFFLINE is set, or the hub cannot be reached.
        """
        from m2v_search.hub import push_model_to_hub

        return push_model_to_hub(self, repo_id, private=private, token=token, subfolder=subfolder)

    def to_onnx(self, path: str | os.PathLike[str]) -> Path:
        """Export to ONNX with the tokenizer files (layout: ``m2v_search.onnx_export``); needs ``onnx``.

        Args:
            path: the output folder.

        Returns:
            The path of the main graph, ``path/onnx/model.onnx``.
        """
        from m2v_search.onnx_export import export_onnx

        return export_onnx(self, path)


def _truncated_config(config: dict[str, Any], dims: int, width: int) -> dict[str, Any]:
    """``config`` of a model loaded with its first ``dims`` of ``width`` dimensions: the PCA it records
    and its recipe (both shown in the card) say so (a save wrote "pca | 64 dims" for a 32-dim table)."""
    config = dict(config)
    if config.get("apply_pca") is not None:
        config["apply_pca"] = dims
    recipe = config.get("recipe")
    if isinstance(recipe, dict):
        kept = f"the first {dims} of {width} (loaded with dimensionality={dims})"
        config["recipe"] = {**recipe, "dimensions kept": kept}
    return config
