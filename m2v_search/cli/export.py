"""``m2v export-onnx``: write a static model as ONNX graphs plus tokenizer files.

    m2v export-onnx [MODEL] -o DIR [--no-padded]

MODEL is a bundled model name or a model folder (default: the bundled m2v-base). The files
written (see ``m2v_search.onnx_export``) are listed as one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json

from m2v_search.cli.exit_codes import EXIT_OK
from m2v_search.cli.groups import M2V
from m2v_search.cli.options import output_folder


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL",
                        help="the static model: a bundled name or a model folder (default: the bundled "
                             "m2v-base)")
    parser.add_argument("-o", "--output", required=True, type=output_folder, metavar="DIR",
                        help="folder to write to (created; an existing one keeps the files the export does "
                             "not write)")
    parser.add_argument("--no-padded", action="store_true",
                        help="write only onnx/model.onnx (input_ids + offsets), not onnx/model_padded.onnx "
                             "(input_ids + attention_mask)")


@M2V.command("export-onnx", help="export a static model to ONNX graphs with its tokenizer files",
             arguments=_arguments,
             description="Write MODEL as ONNX graphs that give StaticModel.encode's vectors: "
                         "onnx/model.onnx (inputs input_ids and offsets, as EmbeddingBag) and, unless "
                         "--no-padded, onnx/model_padded.onnx (input_ids and attention_mask), with "
                         "tokenizer.json, tokenizer_config.json, special_tokens_map.json, config.json and a "
                         "README.md. The written paths are printed as one JSON object on stdout.")
def run_export_onnx(args: argparse.Namespace) -> int:
    """Run ``m2v export-onnx``."""
    from m2v_search.model import StaticModel
    from m2v_search.onnx_export import PADDED_MODEL_FILE, export_onnx

    model = StaticModel.from_pretrained(args.model)
    padded = not args.no_padded
    model_file = export_onnx(model, args.output, padded=padded)
    written = {
        "output_dir": str(args.output),
        "model": str(model_file),
        "padded_model": str(args.output / PADDED_MODEL_FILE) if padded else None,
        "tokenizer": str(args.output / "tokenizer.json"),
        "config": str(args.output / "config.json"),
    }
    print(json.dumps(written))
    return EXIT_OK
