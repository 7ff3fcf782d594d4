"""getopt(3) parsing driven by an argparse definition, for the peer faces.

A face must reject bad options with its peer's exact words and exit code, and the peers use
getopt(3): glibc's (util-linux waitpid, procps pidwait: options and operands may mix, long
options may be abbreviated) or BSD's (FreeBSD pwait: the first operand ends the options).
argparse words its errors differently, so the faces keep their options in an argparse parser
(the one definition ``--help`` texts, man pages and completions are generated from) and parse
the command line with :func:`parse`, which reads the option table off that parser and reports
errors as glibc's getopt prints them.  Values stay strings: each face checks them itself, with
its peer's messages.
"""

from __future__ import annotations

import argparse
import getopt


class GetoptFailure(Exception):
    """A bad option; ``str()`` is glibc getopt's message, without the program name."""


def _tables(parser: argparse.ArgumentParser) -> tuple[str, list[str], dict[str, argparse.Action]]:
    short, longs, by_opt = "", [], {}
    for action in parser._actions:
        takes = action.nargs != 0
        for o in action.option_strings:
            by_opt[o] = action
            if o.startswith("--"):
                longs.append(o[2:] + ("=" if takes else ""))
            else:
                short += o[1:] + (":" if takes else "")
    return short, longs, by_opt


def parse(parser: argparse.ArgumentParser, argv: list[str], *, permute: bool,
          ) -> tuple[dict[str, object], list[str]]:
    """Parse ``argv`` with the options of ``parser``.

    Returns ``{dest: value}`` (``True`` for a flag; the last string for an option with an
    argument, or every string in order for an ``append`` action) and the operands.  With
    ``permute`` (glibc) options may follow operands; without (BSD) the first operand ends them.
    Raises :class:`GetoptFailure` with glibc's words.
    """
    short, longs, by_opt = _tables(parser)
    try:
        if permute:
            opts, rest = getopt.gnu_getopt(argv, short, longs)
        else:
            opts, rest = getopt.getopt(argv, short, longs)
    except getopt.GetoptError as e:
        raise GetoptFailure(_glibc_words(e, longs)) from None
    values: dict[str, object] = {}
    for o, v in opts:
        action = by_opt[o]
        if action.nargs == 0:
            values[action.dest] = True
        elif isinstance(action, argparse._AppendAction):
            got = values.setdefault(action.dest, [])
            assert isinstance(got, list)
            got.append(v)
        else:
            values[action.dest] = v
    return values, rest


def _glibc_words(e: getopt.GetoptError, longs: list[str]) -> str:
    # Python's getopt names the option in e.opt (a long one by its full name once matched)
    opt, msg = e.opt, e.msg
    if msg.startswith(f"option -{opt} "):  # a short option
        if "requires argument" in msg:
            return f"option requires an argument -- '{opt}'"
        return f"invalid option -- '{opt}'"
    if "not a unique prefix" in msg:
        names = [n.rstrip("=") for n in longs if n.startswith(opt)]
        return (f"option '--{opt}' is ambiguous; possibilities:"
                + "".join(f" '--{n}'" for n in names))
    if "requires argument" in msg:
        return f"option '--{opt}' requires an argument"
    if "must not have an argument" in msg:
        return f"option '--{opt}' doesn't allow an argument"
    return f"unrecognized option '--{opt}'"
