"""``exithand id``: print ``PID:INODE`` for each process, util-linux ``getino -p``'s job.

A script pins a process with it *before* it waits, kills or records it: ``PID:INODE`` names
one process for the whole boot (the pidfs inode of Linux 6.9+ is never reused), so a later
``exithand wait``/``kill``/``waitpid`` on that text can never act on a process that merely
got the same number.
"""

from __future__ import annotations

import exithand

from . import _common
from ._common import CommandError, emit

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Any, Optional

HELP = "print PID:INODE for each process, to pin it for a later wait or kill"

DESCRIPTION = """\
Print PID:INODE for each PID (one line each, in the order given): the pid and its pidfs inode
(Linux 6.9+), which together name one process for the whole boot. Give that text to 'exithand
wait', 'exithand kill', 'exithand waitpid' or util-linux waitpid(1): if the number has been
reused by then, the target counts as gone and nothing acts on the newcomer.
"""

EPILOG = """\
examples:
  t=$(exithand id "$pid") && ... && exithand wait "$t"
  exithand id $(pgrep -x nginx)

exit status:
  0    every PID was printed
  1    a PID is not running (the others are still printed), is a thread, or this kernel's
       pidfds have no inode (before Linux 6.9)
  2    usage error: bad option or malformed PID
"""


def register(sub: Any) -> None:
    from ._argparse import HelpFormatter  # argparse only when the parser is needed

    p = sub.add_parser("id", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("targets", nargs="+", metavar="PID", help="PID or /proc/PID")
    p.set_defaults(func=run)


def fast_parse(argv: list[str]) -> Optional[Any]:
    """Plain PIDs without argparse (see ``wait.fast_parse``); None: let argparse parse."""
    if not argv or any(a.startswith("-") for a in argv):
        return None
    from types import SimpleNamespace

    return SimpleNamespace(targets=list(argv), func=run)


def run(args: argparse.Namespace) -> int:
    targets = _common.parse_targets(args.targets)
    rc = _common.EXIT_OK
    for t in targets:
        try:
            with exithand.open(t.pid, inode=t.inode) as h:
                ident = h.identity
        except exithand.Error as e:
            _common.warn(f"{t.text}: {e}")
            rc = _common.EXIT_ERROR
            continue
        if ident.inode is None:
            raise CommandError(f"{t.text}: this kernel's pidfds have no unique inode (needs "
                               "Linux 6.9 pidfs); nothing to pin with")
        emit(str(ident))
    return rc
