"""``python -m unimo.convert {legacy,export-legacy,roberta}``: see ``--help`` of each sub-command.

Exit status: 0 converted, 1 input error (message on stderr, nothing written), 2 usage error.
The readable summary goes to stdout; ``--json`` prints the report as JSON instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

import unimo  # noqa: F401  (sets MKL/OpenMP environment before paddle is imported)

from .names import TASKS


def _common(p: argparse.ArgumentParser, dst_help: str) -> None:
    p.add_argument("--dst", required=True, help=dst_help)
    p.add_argument("--overwrite", action="store_true", help="replace the converter's files in an existing --dst")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the summary")


def _task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=TASKS, default=None, help="model to build (default: detected from the names)")
    p.add_argument("--num-labels", type=int, default=None, help="classification / VE label count, VQA answer "
                                                                  "count (default: from the checkpoint's head)")
    p.add_argument("--seed", type=int, default=0, help="seed of the parameters left freshly initialised")
    p.add_argument("--dry-run", action="store_true", help="check names, shapes and files; write nothing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unimo.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("legacy", help="official Paddle 1.x checkpoint dir -> save_pretrained dir")
    p.add_argument("--src", required=True, help="save_persistables directory (one file per variable)")
    p.add_argument("--config", required=True, help="UNIMO JSON config (e.g. model_files/config/unimo_base_en.json)")
    _common(p, "output directory (model_config.json, model_state.pdparams, conversion_report.json)")
    _task_args(p)
    p = sub.add_parser("export-legacy", help="save_pretrained dir -> official Paddle 1.x checkpoint dir")
    p.add_argument("--src", required=True, help="directory written by save_pretrained / this converter")
    _common(p, "legacy directory to write (one file per official variable)")
    p = sub.add_parser("roberta", help="HuggingFace RoBERTa dir -> UNIMO save_pretrained dir")
    p.add_argument("--src", required=True, help="HF directory: config.json + model.safetensors (or "
                                                "pytorch_model.bin when torch is installed)")
    p.add_argument("--config", default=None, help="UNIMO JSON config for the non-text fields (image sizes); text "
                                                  "dimensions always come from the HF config")
    _common(p, "output directory")
    _task_args(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from . import ConversionError, LegacyFormatError, convert_legacy, convert_roberta, export_legacy

    try:
        if args.command == "legacy":
            report = convert_legacy(args.src, args.config, args.dst, task=args.task, num_labels=args.num_labels,
                                    seed=args.seed, overwrite=args.overwrite, dry_run=args.dry_run)
        elif args.command == "export-legacy":
            report = export_legacy(args.src, args.dst, overwrite=args.overwrite)
        else:
            report = convert_roberta(args.src, args.dst, task=args.task, num_labels=args.num_labels,
                                     base_config=args.config, seed=args.seed, overwrite=args.overwrite,
                                     dry_run=args.dry_run)
    except (ConversionError, LegacyFormatError, FileNotFoundError, ValueError) as e:  # input errors: no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
