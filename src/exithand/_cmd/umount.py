"""``exithand umount``: unmount an exithand filesystem, including a stale one."""

from __future__ import annotations

import argparse

from . import _common
from ._argparse import HelpFormatter
from ._common import warn

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

HELP = "unmount an exithand filesystem (also clears a stale 'not connected' mount)"

DESCRIPTION = """\
Unmount the exithand filesystem at MOUNTPOINT. This also clears a stale mount left by a daemon
that was killed hard (every access then fails with 'Transport endpoint is not connected').
Tries 'fusermount3 -u', then a lazy unmount if files are still open (the mount is detached at
once and freed when they are closed). A running daemon exits once its mount is gone.
Only exithand mounts (type fuse.exithand, live or stale) are touched; any other filesystem at
MOUNTPOINT is refused.
"""

EPILOG = """\
examples:
  exithand umount /run/exithand
  exithand umount --lazy /run/exithand     detach at once even while readers hold files open

exit status:
  0    unmounted (notes on stderr say if it was detached lazily)
  1    error: not a mount point, not an exithand mount (type fuse.exithand; any other
       filesystem is refused untouched), or every unmount attempt failed (each one is named)
  2    usage error: bad option
"""


def register(sub: Any) -> None:
    p = sub.add_parser("umount", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("mountpoint", metavar="MOUNTPOINT", type=_common.mountpoint_arg)
    p.add_argument("-l", "--lazy", action="store_true", help="detach now (umount -l)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fs.mounts import MountError, unmount

    try:
        for note in unmount(args.mountpoint, lazy=args.lazy):
            warn(f"umount: {note}")
    except MountError as e:
        warn(f"umount: {e}")
        return _common.EXIT_ERROR
    return _common.EXIT_OK
