"""``m2v encode``: texts in, one vector per text out (JSONL on stdout, or a .npy matrix).

    m2v encode corpus.jsonl > vectors.jsonl          # records {"id": ..., "text": ...}
    m2v encode notes.txt --model my-model -o notes.npy  # one text per line
    cat queries.txt | m2v encode -                   # stdin, JSONL or lines (sniffed)
    m2v encode --text "a first text" --text "a second"

Input: a JSONL(.gz) or Parquet corpus (``--id-field``/``--text-field`` as in ``m2v-index build``),
or plain text with one text per line (blank lines skipped; a text's id is its line number).
``--format auto`` reads JSONL when the input's first character is ``{`` (or it is gzip or
Parquet, a glob or a URL) and lines otherwise. Output lines are ``{"id": ..., "embedding":
[...]}`` in input order; ``-o FILE.npy`` writes the float32 matrix instead (rows in input order),
``-o FILE`` anything else a JSONL file. Files are written whole or not at all; ``-o -``, a pipe or
a device (``/dev/stdout``, ``>(gzip > out.gz)``) is written as a stream.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import IO, Any

from m2v_search.cli.exit_codes import EXIT_OK, UsageError
from m2v_search.cli.groups import M2V
from m2v_search.cli.jsonl import json_line
from m2v_search.cli.options import bounded_int, output_file

_SNIFF_BYTES = 65536
_GZIP_MAGIC = b"\x1f\x8b"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", default=None, metavar="INPUT",
                        help="a JSONL(.gz) or Parquet corpus, a text file (one text per line), a glob or URL, "
                             "or - for stdin (the default without --text)")
    parser.add_argument("--text", action="append", default=None, metavar="TEXT",
                        help="a text to encode (repeatable; ids 1, 2, ...) instead of INPUT")
    parser.add_argument("--model", default=None, help="model name or folder (default: the bundled m2v-base)")
    parser.add_argument("--format", choices=("auto", "jsonl", "lines"), default="auto",
                        help="how INPUT is read (default: auto: JSONL if it starts with '{', else lines)")
    parser.add_argument("--id-field", "--id-column", default=None,
                        help="JSONL/Parquet id field (default: id, else BEIR _id, else the line/row number)")
    parser.add_argument("--text-field", "--text-column", default="text", help="JSONL/Parquet text field (default: text)")
    parser.add_argument("-o", "--output", type=output_file, default=None, metavar="FILE",
                        help="write to FILE instead of stdout: a .npy matrix (float32, input order) or JSONL")
    parser.add_argument("--decimals", type=bounded_int(0, 9), default=None,
                        help="round each JSON number to this many decimals (default: the float32 value)")
    parser.add_argument("--batch-size", type=bounded_int(1, 10_000_000), default=4096,
                        help="texts encoded per batch (default 4096)")
    parser.add_argument("--max-length", type=bounded_int(1), default=None,
                        help="tokens kept per text (default: the model's max_length)")


@M2V.command("encode", help="encode texts (JSONL, lines or stdin) into vectors: JSONL out, or a .npy matrix",
             arguments=_arguments, description=__doc__.split("\n\n")[2])
def run_encode(args: argparse.Namespace) -> int:
    """Run ``m2v encode``."""
    from m2v_search.index.build import progress_bar
    from m2v_search.model import StaticModel

    if args.text is not None and args.input is not None:
        raise UsageError("give INPUT or --text, not both")
    model = StaticModel.from_pretrained(args.model)
    items = enumerate(args.text, 1) if args.text is not None else _read_input(args.input or "-", args)
    numpy_output = args.output is not None and args.output.suffix.lower() == ".npy"
    if args.output is not None and args.output.suffix.lower() == ".npz":
        raise UsageError(f"{args.output}: .npz is not written; use a .npy file (one float32 matrix) or JSONL")
    if numpy_output and args.decimals is not None:
        raise UsageError("--decimals rounds JSON numbers; a .npy output holds the float32 values")
    with _output(args.output, "wb" if numpy_output else "w") as out, progress_bar(not args.quiet, "Encoding") as bar:
        if numpy_output:
            _write_matrix(model, items, args, out, bar)
        else:
            _write_jsonl(model, items, args, out, bar)
    return EXIT_OK


def _read_input(source: str, args: argparse.Namespace) -> Iterator[tuple[Any, str]]:
    """(id, text) pairs of INPUT, read as JSONL records or as lines (``--format``)."""
    from m2v_search.index.corpus import CorpusOptions, CorpusReader
    from m2v_search.index.sources import open_corpus

    stdin = _stdin_stream() if source == "-" else None
    kind = args.format if args.format != "auto" else _sniff(source, stdin)
    if kind == "lines":
        return _lines(source, stdin)
    options = CorpusOptions(id_field=args.id_field, text_field=args.text_field, metadata_fields=[],
                            report_repeats=False)  # every record is written, repeated ids too
    reader = CorpusReader("-", options, stdin=stdin) if stdin is not None else open_corpus(source, options)
    return ((record.id, record.text) for record in reader)


def _sniff(source: str, stdin: io.BufferedReader | None) -> str:
    """"jsonl" when the input looks like records (``{`` first, gzip, Parquet, glob, URL), else "lines"."""
    from m2v_search.index.sources import is_parquet
    from m2v_search.index.urls import is_url

    if source != "-" and (is_url(source) or is_parquet(source) or any(c in source for c in "*?[")):
        return "jsonl"
    try:
        if stdin is not None:
            head = stdin.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]
        elif os.path.exists(source) and not os.path.isfile(source) and not os.path.isdir(source):
            raise UsageError(f"{source} is a pipe or device: reading its first bytes to guess the format would "
                             "consume them. Pass --format jsonl or --format lines (or read it from stdin as -)")
        else:
            with open(source, "rb") as handle:
                head = handle.read(_SNIFF_BYTES)
    except (OSError, AttributeError):
        return "jsonl"  # the corpus reader names the problem
    if head.startswith((_GZIP_MAGIC, b"PAR1")):  # the corpus reader opens gzip and names misnamed Parquet
        return "jsonl"
    return "jsonl" if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{") else "lines"


def _stdin_stream() -> io.BufferedReader:
    """Standard input, its first bytes read up to the first non-blank one (at most ``_SNIFF_BYTES``) and
    put back in front, so that the format is judged on content even when a producer's first write is
    only white space. ``sys.stdin`` itself is left as it is."""
    from m2v_search.errors import InvalidInputError

    if sys.stdin is None or not hasattr(sys.stdin, "buffer"):
        raise InvalidInputError("standard input is closed; give INPUT or --text")
    raw = sys.stdin.buffer
    head = raw.read1(_SNIFF_BYTES)
    while head and not head.removeprefix(b"\xef\xbb\xbf").strip() and len(head) < _SNIFF_BYTES:
        more = raw.read1(_SNIFF_BYTES - len(head))
        if not more:
            break
        head += more
    return io.BufferedReader(_Prefixed(head, raw), buffer_size=max(io.DEFAULT_BUFFER_SIZE, len(head)))


class _Prefixed(io.RawIOBase):
    """A read-only stream: ``head``, then the rest of ``rest`` (stdin with its sniffed bytes put back)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read1(len(buffer)) if hasattr(self._rest, "read1") else self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _lines(source: str, stdin: IO[bytes] | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line, decoded one by one (errors name the line)."""
    from m2v_search.errors import InvalidInputError

    name = "<stdin>" if source == "-" else source
    try:
        handle: IO[bytes] = (stdin or sys.stdin.buffer) if source == "-" else open(source, "rb")  # noqa: SIM115
    except OSError as error:
        raise InvalidInputError(f"cannot read {name}: {error.strerror or error}") from None
    try:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInputError(f"{name}: line {number}: not valid UTF-8") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            line = line.rstrip("\n").removesuffix("\r")
            if line.strip():
                yield number, line
    except OSError as error:
        raise InvalidInputError(f"cannot read {name}: {error.strerror or error}") from None
    finally:
        if source != "-":
            handle.close()


def _batches(items: Iterator[tuple[Any, str]], size: int) -> Iterator[tuple[list[Any], list[str]]]:
    while batch := list(islice(items, size)):
        yield [item[0] for item in batch], [item[1] for item in batch]


def _length(args: argparse.Namespace) -> dict[str, int]:
    """``max_length`` for ``encode`` when --max-length was given; otherwise none, so that the model's
    own limit applies, as in ``StaticModel.encode`` and the index."""
    return {} if args.max_length is None else {"max_length": args.max_length}


def _write_jsonl(model: Any, items: Iterator[tuple[Any, str]], args: argparse.Namespace, out: IO[str],
                 bar: Any) -> None:
    import numpy as np

    for ids, texts in _batches(items, args.batch_size):
        vectors = model.encode(texts, batch_size=args.batch_size, **_length(args))
        if args.decimals is not None:
            vectors = np.round(vectors.astype(np.float64), args.decimals)
        out.write("".join(json_line({"id": doc_id, "embedding": row})
                          for doc_id, row in zip(ids, vectors.tolist())))
        if bar is not None:
            bar.update(len(texts))


def _write_matrix(model: Any, items: Iterator[tuple[Any, str]], args: argparse.Namespace, out: IO[bytes],
                  bar: Any) -> None:
    import numpy as np

    parts = []
    for _, texts in _batches(items, args.batch_size):
        parts.append(np.asarray(model.encode(texts, batch_size=args.batch_size, **_length(args)), dtype=np.float32))
        if bar is not None:
            bar.update(len(texts))
    with _naming(args.output):  # e.g. a full disk: numpy's message names no file
        np.save(out, np.concatenate(parts) if parts else np.zeros((0, model.dim), np.float32), allow_pickle=False)


@contextmanager
def _output(path: Path | None, mode: str) -> Iterator[Any]:
    """stdout, or a temporary file beside ``path`` renamed over it only when everything was written."""
    if path is None or str(path) == "-":
        yield sys.stdout.buffer if "b" in mode else sys.stdout
        sys.stdout.flush()
        return
    text = {} if "b" in mode else {"encoding": "utf-8"}
    descriptor = _descriptor_of(path)
    if descriptor is not None or (path.exists() and not path.is_file()):  # a stream, never replaced
        # /dev/stdout of a shell's `>> log`: the open descriptor keeps its append mode and position
        with _naming(path):
            stream = os.fdopen(os.dup(descriptor), mode, **text) if descriptor is not None else open(path, mode, **text)
        with stream:
            yield stream
        return
    path = Path(os.path.realpath(path)) if path.is_symlink() else path  # a link's file is replaced, the link kept
    with _naming(path):
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            with _naming(path):
                handle.flush()
                os.fsync(handle.fileno())
        with _naming(path):
            try:  # a replaced file keeps its permissions (as `sed -i` does); a new one gets the umask's
                mode_bits = stat.S_IMODE(os.stat(path).st_mode)
            except FileNotFoundError:
                mode_bits = 0o666 & ~_umask()
            os.chmod(temporary, mode_bits)
            os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An ``OSError`` inside names the user's ``path`` (not a temporary file or a descriptor)."""
    try:
        yield
    except OSError as error:
        raise OSError(error.errno, f"cannot write {path}: {error.strerror or error}") from None


def _descriptor_of(path: Path) -> int | None:
    """The open file descriptor that ``path`` names (``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``,
    ``/proc/self/fd/N``, directly or through links), or None."""
    named = {"/dev/stdout": 1, "/dev/stderr": 2}
    hop = os.path.abspath(path)
    for _ in range(40):  # a bounded walk along the chain of links
        if hop in named:
            return named[hop]
        match = re.fullmatch(r"/(?:dev/fd|proc/self/fd|proc/%d/fd)/(\d+)" % os.getpid(), hop)
        if match:
            return int(match.group(1))
        if not os.path.islink(hop):
            return None
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
