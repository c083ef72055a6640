"""The ``m2v`` command. One function adds each subcommand's arguments, one runs it:

    m2v distill MODEL -o OUT [--pca-dims N] [--vocabulary FILE] [--device D] [--sif-corpus FILE] ...

Results go to stdout, logs and progress bars to stderr. Exit codes: 0 success, 1 failure
while running, 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _pca_dims(text: str) -> int | float | None:
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


def _sif_coefficient(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or 'none', got {text!r}") from None


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def read_lines(path: Path, what: str) -> Iterator[str]:
    """Non-empty lines of a UTF-8 text file (streamed); a decoding error names the line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise ValueError(f"{what} {path}, line {number}: not valid UTF-8 ({error.reason})") from None
            if line.strip():
                yield line


def add_distill_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill", help="distil a Sentence Transformer into a static model",
        description="Distil a transformer (local folder or Hugging Face id) into a static model folder "
                    "(Model2Vec layout, with a model card).",
    )
    parser.add_argument("model", help="teacher: a local model folder or a Hugging Face hub id")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder to write the static model to")
    parser.add_argument("--pca-dims", type=_pca_dims, default=256,
                        help="output dimensions (int), variance to keep (float in (0, 1)) or 'none' (default 256)")
    parser.add_argument("--pca-whiten", action="store_true", help="whiten the PCA dimensions")
    parser.add_argument("--vocabulary", type=_existing_file, metavar="FILE",
                        help="extra words to add, one per line (UTF-8)")
    parser.add_argument("--sif-corpus", type=_existing_file, metavar="FILE",
                        help="texts, one per line, whose token frequencies give the SIF weights "
                             "(default: Zipf's law over token ids)")
    parser.add_argument("--sif-coefficient", type=_sif_coefficient, default=1e-4,
                        help="SIF a in a/(a+p), or 'none' (default 1e-4)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                        help="teacher precision on a GPU (default float32)")
    parser.add_argument("--batch-size", type=int, default=None, help="teacher batch size")
    parser.add_argument("--quantize-to", choices=("float32", "float16", "int8"), default="float16",
                        help="storage precision of the vectors (default float16)")
    parser.add_argument("--token-remove-pattern", default=r"\[unused\d+\]",
                        help="regex of teacher tokens to drop (default: BERT's [unusedN]); '' keeps all")
    parser.add_argument("--keep-tokens", type=_existing_file, metavar="FILE",
                        help="keep only these teacher tokens, one per line (quick trials)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let transformers run code shipped with the teacher (off by default)")
    parser.add_argument("--name", help="model name for the model card (default: the output folder's name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_distill)


def run_distill(args: argparse.Namespace) -> int:
    from m2v_search.distill import distill

    vocabulary = list(read_lines(args.vocabulary, "vocabulary file")) if args.vocabulary else None
    keep = list(read_lines(args.keep_tokens, "keep-tokens file")) if args.keep_tokens else None
    corpus = read_lines(args.sif_corpus, "SIF corpus") if args.sif_corpus else None
    model = distill(
        args.model, vocabulary=vocabulary, pca_dims=args.pca_dims, pca_whiten=args.pca_whiten,
        sif_coefficient=args.sif_coefficient, sif_corpus=corpus, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, quantize_to=args.quantize_to,
        token_remove_pattern=args.token_remove_pattern or None, keep_tokens=keep,
        trust_remote_code=args.trust_remote_code, show_progress_bar=not args.no_progress,
    )
    model.save_pretrained(args.output, model_name=args.name)
    print(f"{args.output}: {model.vocabulary_size} tokens x {model.dim} dims ({model.embedding_dtype})")
    return EXIT_OK


# Subcommands: name -> function adding its parser. Add new ones here.
SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {"distill": add_distill_parser}


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """``m2v train`` (issue 8), defined in m2v_search/train/cli.py."""
    from m2v_search.train.cli import add_train_parser

    add_train_parser(subparsers)


SUBCOMMANDS["train"] = _add_train_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m2v", description="m2v-search: static text embeddings.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS.values():
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from m2v_search.errors import M2VSearchError

    try:
        return int(args.run(args))
    except (M2VSearchError, ValueError, TypeError, FileNotFoundError) as error:
        print(f"m2v {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"m2v {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a failure while running: say what, keep the traceback for -v
        if args.verbose:
            raise
        print(f"m2v {args.command}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
