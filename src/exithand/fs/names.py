"""Which names exist in the filesystem.  Everything here treats its input as hostile.

Top level: ``<pid>`` or ``<pid>:<inode>``, in canonical decimal (ASCII digits, no sign, no
leading zero, no spaces), ``1 <= pid <= pid_max`` and ``inode >= 1``.  Anything else -- other
bytes, ``0``, negative or huge numbers, Unicode digits, ``0012`` -- does not exist (ENOENT).
Whether a well-formed pid names a live process (and not a thread) is decided by
:func:`exithand.open`, at lookup and again at open.
"""

from __future__ import annotations

from typing import Optional

import exithand

#: The files of each process directory, in ``ls`` order.  The index is used in inode numbers.
FILES = ("exithand", "exithand_full", "exitstatus")
EXITHAND, EXITHAND_FULL, EXITSTATUS = 1, 2, 3  # 1 + index in FILES


def _canonical_uint(s: str) -> bool:
    return 0 < len(s) <= 20 and s.isascii() and s.isdigit() and (s == "0" or s[0] != "0")


def parse_dir_name(name: bytes) -> Optional[tuple[int, Optional[int]]]:
    """``b"1234"`` -> ``(1234, None)``, ``b"1234:81"`` -> ``(1234, 81)``; ``None`` if invalid."""
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        return None
    pid_s, sep, ino_s = text.partition(":")
    if not _canonical_uint(pid_s) or (sep and not _canonical_uint(ino_s)):
        return None
    try:
        pid, inode = exithand.parse_target(text)  # range checks: 1 <= pid <= pid_max, inode > 0
    except ValueError:
        return None
    return pid, inode


def file_kind(name: bytes) -> Optional[int]:
    """``b"exithand"`` -> EXITHAND (1) etc.; ``None`` for any other name."""
    try:
        return FILES.index(name.decode("ascii")) + 1
    except (UnicodeDecodeError, ValueError):
        return None
