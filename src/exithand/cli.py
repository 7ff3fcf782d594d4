"""The ``exithand`` command line: argparse front end over the public library API only.

Each subcommand lives in its own module under ``exithand._cmd`` and registers itself here.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from . import __version__
from ._cmd import _common, info, kill, mount, umount, wait
from ._cmd import watch as watch_cmd

_SUBCOMMANDS = [wait, kill, mount, umount, info, watch_cmd]

DESCRIPTION = """\
Wait for the death of any Linux process, race-free: handles pin a process (not a pid number),
a zombie counts as dead, and exit statuses are reported when the system can honestly tell them.
"""


_EXIT_CODES_HELP = """\
exit status (every command; details in each command's --help):
  0    done
  1    error (the message on stderr says which)
  2    usage error
  124  timeout (-t ran out)
  130  interrupted (Ctrl-C)
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``exithand`` parser, with one subparser per module in ``_SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="exithand", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'exithand COMMAND --help' for each command's options and its exit status.\n\n"
               + _EXIT_CODES_HELP)
    parser.add_argument("--version", action="version", version=f"exithand {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _SUBCOMMANDS:
        mod.register(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run one command; returns its exit code (0 done, 1 error, 2 usage, 124 timeout, 130
    Ctrl-C).  Errors become a message on stderr, never a traceback."""
    if sys.stderr is None:  # started with fd 2 closed: Python < 3.11's argparse would crash
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (lives as long as the process)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return _common.EXIT_USAGE
    try:
        rc: int = args.func(args)
        return rc
    except _common.CommandError as e:
        _common.warn(str(e))
        return _common.EXIT_ERROR
    except _common.UsageError as e:
        parser.exit(_common.EXIT_USAGE, f"exithand {args.command}: error: {e}\n")
    except KeyboardInterrupt:
        return _common.EXIT_INTERRUPTED
    except _common.Terminated as e:  # SIGTERM/SIGHUP where a command asked for cleanup
        return 128 + e.signum
    except BrokenPipeError:  # the reader of our output went away (| head): no message
        _common.abandon_stdout()
        return _common.EXIT_ERROR
    return _common.EXIT_ERROR  # not reached: parser.exit raises


if __name__ == "__main__":
    sys.exit(main())
