"""What every ``unimo.*`` / ``preprocess.*`` command line shares (issue 14's naming convention).

* :class:`HelpFormatter`: the module docstring kept as written, and every option's help ending in its default.
* ``--json [PATH]`` (:func:`add_json_option` / :func:`emit_json`): JSON to PATH, or to stdout without a PATH (so
  the older flag form ``--json`` still works).
* Old option spellings stay as hidden aliases for one release: argparse accepts every string given to one
  ``add_argument`` call; :func:`hide_aliases` keeps them out of ``--help`` (they are listed in the README table).

No Paddle import here: ``--help`` must not print Paddle's warnings.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

# the spellings replaced by the convention (accepted, not shown in --help)
DEPRECATED_ALIASES = frozenset({"--checkpoint", "--feature-store", "--src", "--dst", "--out", "--pairs", "--images",
                                "--summary"})


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Raw description/epilog, ``(default: ...)`` after every option's help, deprecated aliases hidden."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        # an old spelling is hidden where it is an alias; where it is still an option's only name (predict --images,
        # eval_retrieval --pairs) it stays
        shown = [s for s in action.option_strings if s not in DEPRECATED_ALIASES] or list(action.option_strings)
        if action.option_strings and shown != action.option_strings:
            action = argparse.Action(shown, action.dest, nargs=action.nargs, metavar=action.metavar,
                                     help=action.help, choices=action.choices, default=action.default,
                                     required=action.required, const=action.const)
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or not action.option_strings or action.required:
            return text  # positionals and required options have no default
        if "default" in text:  # %(default)s, or the default stated in words
            return text
        return f"{text} (default: %(default)s)"


def add_json_option(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help=f"write {what} as JSON to PATH (atomically), or to stdout when no PATH is given")


def emit_json(target: Optional[str], obj: Any, indent: Optional[int] = 2) -> None:
    """``--json`` output: ``-`` = stdout, else an atomic file."""
    if target in (None, "-"):
        print(json.dumps(obj, indent=indent, ensure_ascii=False), file=sys.stdout)
        return
    from .io import write_json_atomic

    write_json_atomic(target, obj, indent=indent)
