"""getopt(3) for the peer faces, from one option table that also builds their argparse parser.

A face must reject bad options with its peer's exact words and exit code, and the peers use
getopt(3): glibc's (util-linux waitpid, procps pidwait: options and operands may mix, long
options may be abbreviated) or BSD's (FreeBSD pwait: the first operand ends the options).
argparse words its errors differently, and importing and building it costs more than a
face's whole run (it also imports shutil, and the stdlib ``getopt`` imports gettext and
locale), so each face keeps its options in a table of :class:`Opt`: :func:`parse` reads the
command line with it, with glibc's messages, and :func:`build_parser` turns the same table into
an argparse parser for ``--help`` texts, man pages and completion.  Values stay strings: each
face checks them itself, with its peer's messages.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Optional


class GetoptFailure(Exception):
    """A bad option; ``str()`` is glibc getopt's message, without the program name."""


class Opt:
    """One option: short letter, long name, destination, metavar (None: a flag), help."""

    __slots__ = ("arg", "dest", "help", "long", "short")

    def __init__(self, short: Optional[str], long: Optional[str], dest: str,
                 arg: Optional[str], help: str) -> None:
        self.short, self.long, self.dest, self.arg, self.help = short, long, dest, arg, help


def parse(options: list[Opt], argv: list[str], *, permute: bool,
          ) -> tuple[dict[str, object], list[str]]:
    """Parse ``argv`` with ``options``.

    Returns ``{dest: value}`` (``True`` for a flag; the last string for an option with an
    argument) and the operands.  With ``permute`` (glibc) options may follow operands; without
    (BSD) the first operand ends them; ``--`` always does.  Raises :class:`GetoptFailure`.
    """
    shorts = {o.short: o for o in options if o.short}
    longs = {o.long: o for o in options if o.long}
    values: dict[str, object] = {}
    operands: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            operands += argv[i:]
            break
        if a.startswith("--") and longs:
            name, eq, val = a[2:].partition("=")
            o = longs.get(name)
            if o is None:
                hits = [n for n in longs if n.startswith(name)]
                if not hits:
                    raise GetoptFailure(f"unrecognized option '--{name}'")
                if len(hits) > 1:
                    raise GetoptFailure(f"option '--{name}' is ambiguous; possibilities:"
                                        + "".join(f" '--{n}'" for n in hits))
                o = longs[hits[0]]
            if o.arg is None:
                if eq:
                    raise GetoptFailure(f"option '--{o.long}' doesn't allow an argument")
                values[o.dest] = True
            elif eq:
                values[o.dest] = val
            elif i < len(argv):
                values[o.dest] = argv[i]
                i += 1
            else:
                raise GetoptFailure(f"option '--{o.long}' requires an argument")
            continue
        if a.startswith("-") and a != "-":
            j = 1
            while j < len(a):
                c = a[j]
                j += 1
                o = shorts.get(c)
                if o is None:
                    raise GetoptFailure(f"invalid option -- '{c}'")
                if o.arg is None:
                    values[o.dest] = True
                    continue
                if j < len(a):
                    values[o.dest] = a[j:]
                elif i < len(argv):
                    values[o.dest] = argv[i]
                    i += 1
                else:
                    raise GetoptFailure(f"option requires an argument -- '{c}'")
                break
            continue
        if not permute:
            operands += argv[i - 1:]
            break
        operands.append(a)
    return values, operands


def build_parser(prog: str, description: str, options: list[Opt], operands: str,
                 ) -> argparse.ArgumentParser:
    """The same options as an argparse parser (for help, man pages and completion only)."""
    import argparse

    p = argparse.ArgumentParser(prog=prog, description=description, add_help=False)
    for o in options:
        names = [n for n in (f"-{o.short}" if o.short else None,
                             f"--{o.long}" if o.long else None) if n]
        if o.arg is None:
            p.add_argument(*names, dest=o.dest, action="store_true", help=o.help)
        else:
            p.add_argument(*names, dest=o.dest, metavar=o.arg, help=o.help)
    p.add_argument("operands", nargs="*", metavar=operands)
    return p
