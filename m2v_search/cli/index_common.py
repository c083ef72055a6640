"""What the index commands share: opening an index, reading a corpus or a list file, writing JSON."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2v_search.cli.jsonl import json_line
from m2v_search.cli.options import metadata_field_list

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index import VectorIndex
    from m2v_search.index.corpus import CorpusReader
    from m2v_search.index.sources import SourcesReader

log = logging.getLogger("m2v_search.index")


def open_index(args: argparse.Namespace, *, needs_model: bool = False, saves_unencoded: bool = False
               ) -> VectorIndex:
    """Open ``args.index_dir`` with ``--model`` / ``--force-model``.

    Raises:
        NoModelError: ``needs_model`` and the index holds vectors computed elsewhere.
        UsageError: ``--force-model`` for a command that saves the index without encoding anything
            (``saves_unencoded``): the save would bind the index's vectors to another model.
    """
    from m2v_search.cli.exit_codes import UsageError
    from m2v_search.index import VectorIndex
    from m2v_search.index.errors import NoModelError

    if saves_unencoded and getattr(args, "force_model", False):
        raise UsageError(f"--force-model: {args.command_name.split()[-1]} encodes nothing, and saving would bind the "
                         "index's vectors to that model; leave it out (add and search take it)")
    set_threads(args)
    index = VectorIndex.open(args.index_dir, model=getattr(args, "model", None),
                             allow_model_mismatch=getattr(args, "force_model", False))
    if needs_model and index.external_vectors:
        index.close()
        raise NoModelError(
            f"{args.index_dir} holds vectors computed elsewhere ({index.dim} dims) and has no model to encode "
            "text with; search or add to it from Python with your own vectors "
            "(VectorIndex.search(vector) / upsert(records, vectors=...)), or build an index with a model")
    return index


def require_index(directory: Path) -> None:
    """Raise IndexNotFoundError if ``directory`` holds no index, before a writer lock would create it."""
    from m2v_search.index.manifest import read_manifest

    read_manifest(Path(directory))


def corpus_reader(args: argparse.Namespace, source: str) -> CorpusReader | SourcesReader:
    """A reader of ``source`` with the corpus options of the command line: a JSONL(.gz) file or
    ``-``, or a Parquet file, a glob or an fsspec URL (``s3://bucket/corpus/*.parquet``)."""
    from m2v_search.index.corpus import CorpusOptions
    from m2v_search.index.sources import open_corpus

    options = CorpusOptions(id_field=args.id_field, text_field=args.text_field,
                            metadata_fields=metadata_field_list(args.metadata_fields), skip_invalid=args.skip_invalid)
    return open_corpus(source, options)


def text_lines(source: str, what: str) -> list[str]:
    """The lines of a UTF-8 file (or ``-``: stdin), e.g. queries or ids, split at ``\\n`` only
    (``\\r\\n`` too): a form feed, ``\\x1c`` or U+2028 inside a query or an id stays in it. A leading
    byte-order mark is dropped.

    Raises:
        InvalidInputError: the file cannot be read, or a line is not valid UTF-8.
    """
    from m2v_search.errors import InvalidInputError

    name = "<stdin>" if source == "-" else source
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise InvalidInputError(f"cannot read {what} {name}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise InvalidInputError(f"{what} {name}: line {line}: not valid UTF-8") from None
    lines = text.removeprefix("\ufeff").split("\n")  # a byte-order mark (Notepad's UTF-8) is no part of line 1
    if lines[-1] == "":
        lines.pop()  # the newline ending the last line
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def emit(payload: dict[str, Any]) -> None:
    """One JSON object on one line of stdout."""
    sys.stdout.write(json_line(payload))
    sys.stdout.flush()


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` to FAISS (only when given: importing faiss is not free)."""
    if getattr(args, "threads", None):
        import faiss

        faiss.omp_set_num_threads(args.threads)
