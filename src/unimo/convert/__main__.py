"""``python -m unimo.convert {legacy,export-legacy,roberta}``: see ``--help`` of each sub-command.

Exit status: 0 converted, 2 bad input or usage (one ``error:`` message on stderr, nothing written), 1 internal
error (traceback). The readable summary goes to stdout; ``--json`` prints the report as JSON instead, ``--json
PATH`` writes it to PATH (the summary still printed). Old spellings ``--src`` / ``--dst`` are accepted for
``--input`` / ``--output``.
``legacy`` refuses a checkpoint that lacks a backbone tensor (only heads may be freshly initialised, listed in the
report) unless ``--allow-missing``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import unimo  # noqa: F401  (sets MKL/OpenMP environment before paddle is imported)

from ..utils.cli import HelpFormatter, add_json_option, emit_json
from .names import TASKS


def _common(p: argparse.ArgumentParser, dst_help: str) -> None:
    p.add_argument("--output", "--dst", dest="output", required=True, help=dst_help)
    p.add_argument("--overwrite", action="store_true",
                   help="replace the converter's files in an existing --output (other files are kept; default: a "
                        "non-empty --output is an error)")
    add_json_option(p, "the conversion report")


def _task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASKS, default=None, help="model to build (default: detected from the names)")
    p.add_argument("--num-labels", type=int, default=None, help="classification / VE label count, VQA answer "
                                                                  "count (default: from the checkpoint's head)")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameters left freshly initialised")
    p.add_argument("--dry-run", action="store_true", help="check names, shapes and files; write nothing")
    p.add_argument("--weights-format", choices=("safetensors", "pdparams"), default="safetensors",
                   help="model.safetensors (opening it runs no code) or PaddleNLP's model_state.pdparams")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unimo.convert", description=__doc__,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("legacy", help="official Paddle 1.x checkpoint dir -> save_pretrained dir",
                       formatter_class=HelpFormatter)
    p.add_argument("--input", "--src", dest="input", required=True,
                   help="save_persistables directory (one file per variable)")
    p.add_argument("--config", required=True, help="UNIMO JSON config (e.g. model_files/config/unimo_base_en.json)")
    _common(p, "output directory (model_config.json, model.safetensors, conversion_report.json)")
    _task_args(p)
    p.add_argument("--allow-missing", action="store_true",
                   help="freshly initialise backbone tensors the checkpoint lacks, listed (default: such a checkpoint "
                        "is an error; heads are always initialised and listed)")
    p = sub.add_parser("export-legacy", help="save_pretrained dir -> official Paddle 1.x checkpoint dir",
                       formatter_class=HelpFormatter)
    p.add_argument("--input", "--src", dest="input", required=True,
                   help="directory written by save_pretrained / this converter")
    _common(p, "legacy directory to write (one file per official variable)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="read a model_state.pdparams with Paddle's unrestricted loader, which can run code: only "
                        "for a trusted source (default: refuse anything but arrays)")
    p = sub.add_parser("roberta", help="HuggingFace RoBERTa dir -> UNIMO save_pretrained dir",
                       formatter_class=HelpFormatter)
    p.add_argument("--input", "--src", dest="input", required=True,
                   help="HF directory: config.json + model.safetensors (or pytorch_model.bin when torch is "
                        "installed)")
    p.add_argument("--config", default=None, help="UNIMO JSON config for the non-text fields (image sizes); text "
                                                  "dimensions always come from the HF config")
    _common(p, "output directory")
    _task_args(p)
    return parser


def _main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from ..utils.errors import UserError
    from . import ConversionError, convert_legacy, convert_roberta, export_legacy

    try:
        if args.command == "legacy":
            report = convert_legacy(args.input, args.config, args.output, task=args.task, num_labels=args.num_labels,
                                    seed=args.seed, overwrite=args.overwrite, dry_run=args.dry_run,
                                    allow_missing=args.allow_missing, weights_format=args.weights_format)
        elif args.command == "export-legacy":
            report = export_legacy(args.input, args.output, overwrite=args.overwrite,
                                   trust_pickle=args.trust_pickle)
        else:
            report = convert_roberta(args.input, args.output, task=args.task, num_labels=args.num_labels,
                                     base_config=args.config, seed=args.seed, overwrite=args.overwrite,
                                     dry_run=args.dry_run, weights_format=args.weights_format)
    except ValueError as e:  # the readers' value checks (a bad file or value): an input error, as before
        if isinstance(e, UserError):
            raise
        raise ConversionError(str(e)) from e
    if args.json is not None:
        emit_json(args.json, report.to_dict())
    if args.json != "-":  # `--json` alone: the report replaces the summary (as the old flag did)
        print(report.summary())
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status: 0 ok, 2 bad input or usage (ConversionError, LegacyFormatError: user errors), 1 internal."""
    from ..utils.errors import run_cli

    return run_cli(_main, list(argv) if argv is not None else None)


if __name__ == "__main__":
    sys.exit(main())
