"""The ``exithand`` command line: argparse front end over the public library API only.

Each subcommand lives in its own module under ``exithand._cmd`` and registers itself here.
Three more are *faces*: exact personalities of the peers, chosen by the first argument
(``exithand pwait ...``) or by the name the program was started as (a symlink named
``pwait``, ``waitpid`` or ``pidwait``, busybox-style), each with its peer's own options,
output, exit codes and parser (``exithand._cmd.faces.pwait`` and so on).

Start-up time matters for a shell tool: only the module of the command being run is
imported, and only its parser is built (``exithand wait ...`` never imports the filesystem,
the killer or the proc connector).  That also makes argparse report a mistyped option with the
subcommand's own usage.
"""

from __future__ import annotations

import importlib
import os
import sys

from ._cmd import _common

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Optional

#: subcommand name -> module under ``exithand._cmd`` (imported only when that command runs)
SUBCOMMANDS = {
    "wait": "wait",
    "kill": "kill",
    "id": "ident",
    "mount": "mount",
    "umount": "umount",
    "info": "info",
    "watch": "watch",
    "lowmem": "lowmem",
}

#: peer name -> face module under ``exithand._cmd``; ``main`` of each takes (argv, prog)
FACES = {
    "pwait": "faces.pwait",
    "waitpid": "faces.waitpid",
    "pidwait": "faces.pidwait",
}

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

peer faces (each with its peer's own options, output and exit codes; see their --help):
  exithand pwait ...     FreeBSD pwait(1)
  exithand waitpid ...   util-linux waitpid(1)
  exithand pidwait ...   procps pidwait(1)
The same runs when exithand is started through a symlink of that name, e.g.
  ln -s "$(command -v exithand)" ~/bin/pwait
"""


def _version() -> str:
    from . import __version__

    return f"exithand {__version__}"


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``exithand`` parser, with one subparser per module in :data:`SUBCOMMANDS` (or just
    the one named ``only``, which is all a run of that command needs)."""
    return _build(only)[0]


def _build(only: Optional[str],
           ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    import argparse  # only commands with argparse parsers (not the faces) pay for it

    from ._cmd._argparse import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="exithand", description=DESCRIPTION,
        formatter_class=HelpFormatter,
        epilog="Run 'exithand COMMAND --help' for each command's options and its exit status.\n\n"
               + _EXIT_CODES_HELP)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in SUBCOMMANDS.items():
        if only is not None and name != only:
            continue
        importlib.import_module(f"exithand._cmd.{modname}").register(sub)
        sub.choices[name].add_argument("--version", action="version", version=_version())
    if only is None:
        for name, modname in FACES.items():
            mod = importlib.import_module(f"exithand._cmd.{modname}")
            sub.add_parser(name, help=mod.HELP, add_help=False)
    return parser, sub.choices


def run_face(name: str, argv: list[str], prog: Optional[str] = None) -> int:
    """Run the peer face ``name`` (``pwait``, ``waitpid``, ``pidwait``) on ``argv``."""
    mod = importlib.import_module(f"exithand._cmd.{FACES[name]}")
    rc: int = mod.main(argv, prog or name)
    return rc


def main(argv: Optional[list[str]] = None) -> int:
    """Run one command; returns its exit code (0 done, 1 error, 2 usage, 124 timeout, 130
    Ctrl-C; a face returns its peer's codes).  Errors become a message on stderr, never a
    traceback."""
    if sys.stderr is None:  # started with fd 2 closed: Python < 3.11's argparse would crash
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (lives as long as the process)
    if argv is None:
        argv = sys.argv[1:]
        invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        if invoked in FACES:  # a symlink named like the peer (busybox-style)
            return run_face(invoked, argv)
    if argv and argv[0] in FACES:
        return run_face(argv[0], argv[1:])
    only = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    fast = None
    if only is not None:  # a plain valid command line needs no argparse (start-up time)
        mod = importlib.import_module(f"exithand._cmd.{SUBCOMMANDS[only]}")
        if hasattr(mod, "fast_parse"):
            fast = mod.fast_parse(argv[1:])
    if fast is not None:
        assert only is not None
        fast.command = only
        return _run(fast, None)
    parser, subparsers = _build(only)
    if only is not None:
        # parse with the subcommand's own parser: a mistyped option then shows its usage
        mod = sys.modules[f"exithand._cmd.{SUBCOMMANDS[only]}"]
        rest = argv[1:]
        if hasattr(mod, "preprocess_argv"):  # kill(1)'s -9 / -KILL forms
            rest = mod.preprocess_argv(rest)
        args = subparsers[only].parse_args(rest)
        args.command = only
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return _common.EXIT_USAGE
    return _run(args, parser)


def _run(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser]) -> int:
    """Run the parsed command; errors become a message on stderr, never a traceback."""
    try:
        rc: int = args.func(args)
        return rc
    except _common.CommandError as e:
        _common.warn(str(e))
        return _common.EXIT_ERROR
    except _common.UsageError as e:
        msg = f"exithand {args.command}: error: {e}\n"
        if parser is not None:
            parser.exit(_common.EXIT_USAGE, msg)
        if sys.stderr is not None:
            try:
                sys.stderr.write(msg)
            except (OSError, ValueError):
                pass
        return _common.EXIT_USAGE
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
