"""Arguments shared by several commands, and the value types that check them while parsing.

A command names the option sets it takes (``options=("common", "corpus", "model")``); each set
is one function adding its arguments, so every command spells and documents them the same way.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------- value types
def bounded_int(low: int, high: int = INT64_MAX) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high].

    Args:
        low: the smallest value accepted.
        high: the largest value accepted (default: the int64 limit FAISS takes).

    Returns:
        A function turning the argument's text into the integer, raising ArgumentTypeError
        (a usage error naming the option) otherwise.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            limit = f">= {low}" if high == INT64_MAX else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {limit}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


positive_int = bounded_int(1)
non_negative_int = bounded_int(0)


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (``--learning-rate``, ``--fit-budget``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0.0 < value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def pca_dims(text: str) -> int | float | None:
    """``--pca-dims``: dimensions (int), a share of variance to keep (float in (0, 1)) or none."""
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an int (dimensions), a float in (0, 1) (variance to keep) or 'none', got {text!r}"
        ) from None


def sif_coefficient(text: str) -> float | None:
    """``--sif-coefficient``: SIF a in a/(a+p), or 'none'."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:  # NaN too: it reached the fit as a PyTorch internal assertion
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or 'none', got {text!r}")
    return value


def existing_file(text: str) -> Path:
    """A path that names an existing regular file."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def output_folder(text: str) -> Path:
    """A folder to write a model (or export) to: it may exist, but neither it nor a folder above it
    may be a file (refused while parsing, before any long work)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output folder is empty; name a folder (. for the current one)")
    path = Path(text).expanduser()
    for ancestor in (path, *path.parents):
        if ancestor.is_dir():
            break
        if ancestor == path and ancestor.exists():
            raise argparse.ArgumentTypeError(f"{text} is a file; the output is a folder")
        if ancestor.exists() or ancestor.is_symlink():
            raise argparse.ArgumentTypeError(f"{text}: cannot make a folder there, {ancestor} is a file")
    if path.is_dir():
        from m2v_search.persistence import transformer_in

        if (transformer := transformer_in(path)) is not None:
            raise argparse.ArgumentTypeError(f"{text} holds a transformer model ({transformer}); writing a static "
                                             "model there would replace its files: choose another folder")
    return path


def path_of_kind(kind: str, what: str) -> Callable[[str], Path]:
    """An argparse type: a path that, where something exists there already, is a ``kind`` ("file" or
    "folder"); ``what`` names it in the message (refused while parsing, not after the teacher pass)."""

    def parse(text: str) -> Path:
        path = Path(text).expanduser()
        wrong = path.is_dir() if kind == "file" else path.exists() and not path.is_dir()
        if wrong:
            raise argparse.ArgumentTypeError(f"{text} is a {'folder' if kind == 'file' else 'file'}; {what} is a {kind}")
        return path

    return parse


def output_file(text: str) -> Path:
    """A file to write: not a folder, in a folder that exists (refused while parsing); ``-`` is stdout."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output file name is empty")
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; the output is a file")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} does not exist")
    return path


def local_directory(text: str) -> Path:
    """An index directory that ``add``/``delete``/``reindex`` change in place: a local path, not a URL."""
    from m2v_search.index.urls import is_url, local_path, redact

    if is_url(text):
        raise argparse.ArgumentTypeError(f"{redact(text)} is a URL: this command changes a local index directory; "
                                         "for an index on object storage, build a new one with -o URL")
    return Path(local_path(text))


# ---------------------------------------------------------------------- option sets
def index_location_argument(parser: argparse.ArgumentParser) -> None:
    """The positional DIR of the commands that read an index: a directory or an fsspec URL."""
    parser.add_argument("index_dir", metavar="DIR", help="index directory or fsspec URL (s3://bucket/idx)")


def common_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command: quiet output and tracebacks for bug reports."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar or info logs on stderr")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an unexpected error (also: M2V_DEBUG=1)")


def thread_options(parser: argparse.ArgumentParser) -> None:
    """FAISS thread count."""
    parser.add_argument("--threads", type=bounded_int(1, 4096), default=None,
                        help="FAISS threads (default: all cores)")


def corpus_options(parser: argparse.ArgumentParser) -> None:
    """How a corpus is read (``build``, ``add``); Parquet columns are fields (``--id-column`` etc.)."""
    parser.add_argument("--id-field", "--id-column", default=None,
                        help="id field or Parquet column (default: id, else BEIR _id, else line/row number)")
    parser.add_argument("--text-field", "--text-column", default="text", help="text field or column (default: text)")
    parser.add_argument("--metadata-fields", "--metadata-columns", default=None,
                        help="comma-separated fields (columns) kept as metadata (default: the 'metadata' object, "
                             "or every other field)")
    parser.add_argument("--batch-size", type=bounded_int(1, 10_000_000), default=4096,
                        help="records encoded per batch (default 4096)")
    parser.add_argument("--skip-invalid", action="store_true", help="skip malformed lines and report how many")


def model_options(parser: argparse.ArgumentParser) -> None:
    """Which model encodes text for an index."""
    parser.add_argument("--model", default=None,
                        help="model name or folder (build: default the bundled model; others: the index's model)")
    parser.add_argument("--force-model", action="store_true",
                        help="use --model even if it differs from the model the index was built with")


OPTION_SETS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "common": common_options,
    "threads": thread_options,
    "corpus": corpus_options,
    "model": model_options,
}


def metadata_field_list(text: str | None) -> list[str] | None:
    """``--metadata-fields a,b`` as a list (None when not given)."""
    if text is None:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def unit_interval(text: str) -> float:
    """``--alpha``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def search_mode_arguments(parser: argparse.ArgumentParser) -> None:
    """``--mode``, ``--alpha`` and ``--fusion`` of the commands that search."""
    parser.add_argument("--mode", choices=["dense", "lexical", "hybrid"], default=None,
                        help="dense (vectors), lexical (BM25) or hybrid (both, fused); default hybrid when the "
                             "index has a lexical part, else dense")
    parser.add_argument("--alpha", type=unit_interval, default=None,
                        help="hybrid: weight of the dense leg, 1 = dense only, 0 = lexical only (default 0.4)")
    parser.add_argument("--fusion", choices=["relative", "dbsf", "rrf"], default="relative",
                        help="hybrid: relative score fusion (default), distribution-based, or reciprocal rank")
