"""The project's one error convention.

* :class:`UserError` - something the user can fix (bad config value, missing file, bad data). Printed as one line
  ``error: <file>[:<line>]: <field>: <what is wrong> (<hint>)`` and exit status 2; ``UNIMO_DEBUG=1`` adds the
  traceback. Under ``paddle.distributed.launch`` only rank 0 prints it.
* :class:`DataError` - a bad record of a data file (a ``UserError`` with a short ``reason`` code);
  :class:`IssueLog` raises it, or with ``skip_bad`` counts it by reason (the one skip counter of the project).
* Exit codes of every CLI: 0 ok, 2 bad input or usage, 1 internal error (a bug: the traceback is shown).

:func:`run_cli` wraps a CLI ``main`` with that convention.
"""
from __future__ import annotations

import os
import sys
import traceback
from collections import Counter
from typing import Any, Callable, Optional

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """An error the user can act on: names the file (and line), the field, what is wrong and a hint."""

    def __init__(self, message: str, *, file: Optional[str] = None, line: Optional[int | str] = None,
                 field: Optional[str] = None, hint: Optional[str] = None):
        self.file, self.line, self.field, self.message, self.hint = (
            None if file is None else str(file), line, field, message, hint)
        super().__init__(self.format())

    def format(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        if self.field:
            parts.append(str(self.field))
        text = ": ".join(parts + [self.message]) if parts else self.message
        return f"{text} ({self.hint})" if self.hint else text

    def __str__(self) -> str:
        return self.format()


class ConfigError(UserError):
    """A bad configuration key or value (raised before any model is built or data is read)."""


class DataError(UserError, ValueError):
    """A bad record: ``file:line: field 'f': message``; ``reason`` is the short code used in skip summaries."""

    def __init__(self, path: str, line: int | str | None, field: str | None, message: str, reason: str = "bad_value",
                 hint: Optional[str] = None):
        self.path, self.reason = str(path), reason
        super().__init__(message, file=str(path), line=line, field=None if field is None else f"field '{field}'",
                         hint=hint)
        self.field = field

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        what = f" field '{self.field}':" if self.field else ""
        text = f"{where}:{what} {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class IssueLog:
    """Raise bad records, or (``skip_bad``) count them by reason; keeps the first few messages for the summary."""

    def __init__(self, skip_bad: bool, keep_messages: int = 20):
        self.skip_bad = skip_bad
        self.skipped: Counter[str] = Counter()
        self.messages: list[str] = []
        self._keep = keep_messages

    def report(self, err: DataError) -> None:
        if not self.skip_bad:
            raise err
        self.skipped[err.reason] += 1
        if len(self.messages) < self._keep:
            self.messages.append(str(err))

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> dict[str, Any]:
        return {"skipped_total": self.total_skipped, "skipped": dict(self.skipped), "messages": list(self.messages)}


def is_rank_zero() -> bool:
    return os.environ.get("PADDLE_TRAINER_ID", "0") in ("", "0")


def debug_enabled() -> bool:
    return os.environ.get("UNIMO_DEBUG", "") not in ("", "0")


def report_user_error(err: BaseException, prog: Optional[str] = None) -> None:
    """Print ``error: ...`` once (rank 0 only under the launcher); the traceback with ``UNIMO_DEBUG=1``."""
    if not is_rank_zero():
        return
    if debug_enabled():
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    prefix = f"{prog}: " if prog else ""
    print(f"{prefix}error: {err}", file=sys.stderr, flush=True)


# exceptions that carry a message meant for the user even though they are not UserErrors
_USER_EXCEPTIONS: tuple[type, ...] = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                      PermissionError)


def register_user_exceptions(*types: type) -> None:
    """Let :func:`run_cli` treat other modules' error classes (converter, feature-format errors) as user errors."""
    global _USER_EXCEPTIONS
    _USER_EXCEPTIONS = tuple(dict.fromkeys(_USER_EXCEPTIONS + types))


def run_cli(main: Callable[..., Any], argv: Optional[list[str]] = None, prog: Optional[str] = None,
            user_exceptions: tuple[type, ...] = ()) -> int:
    """Run ``main(argv)`` with the exit-code convention; returns the code (the caller passes it to ``sys.exit``).

    ``main`` may return an int exit code, or anything else (= 0). ``SystemExit`` (argparse usage errors: 2) passes
    through unchanged."""
    try:
        result = main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _USER_EXCEPTIONS + tuple(user_exceptions) as err:  # noqa: B030 (tuples of classes)
        report_user_error(err, prog)
        return EXIT_USAGE
    return result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK
