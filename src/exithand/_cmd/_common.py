"""Shared pieces of the subcommands: exit codes, target parsing, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit status:
  0    done: the processes waited for are dead
  1    error: a target does not exist (without -e), is a thread, or access was denied
  2    usage error: bad option or malformed target
  124  timeout: some targets were still alive (listed with -p)
  130  interrupted (Ctrl-C)
"""


class UsageError(Exception):
    """Bad command-line input: message printed, exit 2."""


def timeout_arg(text: str) -> float:
    """argparse type for ``-t``: fractional seconds >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: not a number") from None
    if v != v or v < 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: must be >= 0 seconds")
    return v


def positive_int_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: must be at least 1")
    return v


def emit(line: str) -> None:
    """Print one line and flush (output is often piped to another program)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def emit_json(obj: dict[str, Any]) -> None:
    emit(json.dumps(obj, sort_keys=False))


def debug(msg: str) -> None:
    """A line on stderr when ``EXITHAND_DEBUG=1`` (scripts and tests use it as a sync point)."""
    if os.environ.get("EXITHAND_DEBUG") == "1":
        sys.stderr.write(f"exithand: debug: {msg}\n")
        sys.stderr.flush()


def warn(msg: str) -> None:
    sys.stderr.write(f"exithand: {msg}\n")
    sys.stderr.flush()
