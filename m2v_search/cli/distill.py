"""``m2v distill``: distil a Sentence Transformer into a static model folder.

    m2v distill MODEL -o OUT [--pca-dims N] [--vocabulary FILE] [--device D] [--sif-corpus FILE] ...
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from m2v_search.cli.exit_codes import EXIT_OK
from m2v_search.cli.groups import M2V
from m2v_search.cli.options import (
    existing_file,
    output_folder,
    pca_dims,
    positive_int,
    sif_coefficient,
)
from m2v_search.errors import InvalidInputError


def read_lines(path: Path, what: str) -> Iterator[str]:
    """Non-empty lines of a UTF-8 text file (streamed); a decoding error names the line.

    Raises:
        InvalidInputError: a line is not valid UTF-8.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise InvalidInputError(f"{what} {path}, line {number}: not valid UTF-8 ({error.reason})") from None
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark (Notepad's UTF-8) is no part of it
            if line.strip():
                yield line


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="teacher: a local model folder or a Hugging Face hub id")
    parser.add_argument("-o", "--output", required=True, type=output_folder,
                        help="folder to write the static model to")
    parser.add_argument("--pca-dims", type=pca_dims, default=256,
                        help="output dimensions (int), variance to keep (float in (0, 1)) or 'none' (default 256)")
    parser.add_argument("--pca-whiten", action="store_true", help="whiten the PCA dimensions")
    parser.add_argument("--vocabulary", type=existing_file, metavar="FILE",
                        help="extra words to add, one per line (UTF-8)")
    parser.add_argument("--sif-corpus", type=existing_file, metavar="FILE",
                        help="texts, one per line, whose token frequencies give the SIF weights "
                             "(default: Zipf's law over token ids)")
    parser.add_argument("--sif-coefficient", type=sif_coefficient, default=1e-4,
                        help="SIF a in a/(a+p), or 'none' (default 1e-4)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                        help="teacher precision on a GPU (default float32)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="teacher batch size")
    parser.add_argument("--quantize-to", choices=("float32", "float16", "int8"), default="float16",
                        help="storage precision of the vectors (default float16)")
    parser.add_argument("--token-remove-pattern", default=r"\[unused\d+\]",
                        help="regex of teacher tokens to drop (default: BERT's [unusedN]); '' keeps all")
    parser.add_argument("--keep-tokens", type=existing_file, metavar="FILE",
                        help="keep only these teacher tokens, one per line (quick trials)")
    parser.add_argument("--token-context", choices=("prefix", "both", "none"), default="prefix",
                        help="what surrounds each token fed to the teacher: prefix ([CLS] token, the default), "
                             "both ([CLS] token [SEP], Model2Vec's input: needed by <s>...</s> teachers such as "
                             "all-mpnet-base-v2) or none")
    parser.add_argument("--pooling", choices=("auto", "first", "mean"), default="auto",
                        help="which teacher outputs make a token's vector: auto (the first when the input starts "
                             "with a special token), first or mean (Model2Vec's)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let transformers run code shipped with the teacher (off by default)")
    parser.add_argument("--name", help="model name for the model card (default: the output folder's name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (also: --quiet)")


@M2V.command("distill", help="distil a Sentence Transformer into a static model", arguments=_arguments,
             description="Distil a transformer (local folder or Hugging Face id) into a static model folder "
                         "(Model2Vec layout, with a model card).")
def run_distill(args: argparse.Namespace) -> int:
    """Run ``m2v distill``."""
    from m2v_search.distill import distill

    vocabulary = list(read_lines(args.vocabulary, "vocabulary file")) if args.vocabulary else None
    keep = list(read_lines(args.keep_tokens, "keep-tokens file")) if args.keep_tokens else None
    if keep == []:  # else distill blames --token-remove-pattern for the empty vocabulary
        raise InvalidInputError(f"keep-tokens file {args.keep_tokens} holds no tokens (one token per line)")
    corpus = read_lines(args.sif_corpus, "SIF corpus") if args.sif_corpus else None
    model = distill(
        args.model, vocabulary=vocabulary, pca_dims=args.pca_dims, pca_whiten=args.pca_whiten,
        sif_coefficient=args.sif_coefficient, sif_corpus=corpus, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, quantize_to=args.quantize_to,
        token_remove_pattern=args.token_remove_pattern or None, keep_tokens=keep,
        token_context=args.token_context, pooling=args.pooling,
        trust_remote_code=args.trust_remote_code, show_progress_bar=not (args.no_progress or args.quiet),
    )
    model.save_pretrained(args.output, model_name=args.name)
    print(f"{args.output}: {model.vocabulary_size} tokens x {model.dim} dims ({model.embedding_dtype})")
    return EXIT_OK
