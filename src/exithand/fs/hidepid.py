"""What the reader's own ``/proc`` hides: ``hidepid=`` of the proc mounted at its ``/proc``.

``ls MNT`` must never show a reader a process its own ``ls /proc`` would not.  A proc instance
mounted with ``hidepid=noaccess|invisible|ptraceable`` (1, 2, 4) lets a reader see only the
processes it has ptrace read access to (``has_pid_permissions`` ->
``ptrace_may_access(PTRACE_MODE_READ_FSCREDS)``), unless it is in the group ``gid=``.

Where the daemon can tell: the options are read from the reader's ``/proc/<pid>/mountinfo``
(the last proc mount at ``/proc`` in its mount namespace, resolved from its root) and cached
per mount namespace until that namespace's mount table changes (:mod:`.caches`).  Visibility
is then asked of the kernel as the reader (the same ptrace check,
:func:`.askkernel.visible`).  Limits: a reader whose ``/proc`` is elsewhere (chroot without
/proc, another path) is judged by nothing here; ``subset=pid`` hides no pid and needs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from exithand import procfs

from .caches import MountinfoCache

_HIDING = {"1", "2", "4", "noaccess", "invisible", "ptraceable"}


@dataclass(frozen=True)
class ProcOptions:
    """``hidepid`` of a reader's /proc: ``hides`` whether anything is hidden, ``gid`` exempt."""

    hides: bool
    gid: Optional[int]


NOT_HIDING = ProcOptions(False, None)


def proc_options(mounts: list[procfs.Mount]) -> ProcOptions:
    """Options of the proc mounted last at ``/proc`` in a ``mountinfo``."""
    found = NOT_HIDING
    for m in mounts:
        if m.mount_point != "/proc" or m.fstype != "proc" or not m.super_options:
            continue
        opts = dict(o.partition("=")[::2] for o in m.super_options.split(","))
        gid = opts.get("gid")
        found = ProcOptions(opts.get("hidepid", "0") in _HIDING,
                            int(gid) if gid is not None and gid.isdigit() else None)
    return found


def parse_mountinfo(text: str) -> ProcOptions:
    """Options of the proc mounted last at ``/proc`` in a ``mountinfo`` text."""
    return proc_options(procfs.parse_mountinfo(text))


_cache: MountinfoCache[ProcOptions] = MountinfoCache(parse_mountinfo)


def options_of(caller_pid: int) -> ProcOptions:
    """The reader's /proc options (cached per mount namespace until its mount table changes:
    :mod:`.caches`)."""
    if caller_pid <= 0:
        return NOT_HIDING
    opts = _cache.get(caller_pid)
    return NOT_HIDING if opts is None else opts


def groups_of(status: Optional[bytes]) -> list[int]:
    """The ``Groups:`` of a ``/proc/<tid>/status`` text."""
    if status is None:
        return []
    for line in status.splitlines():
        if line.startswith(b"Groups:"):
            return [int(g) for g in line.split()[1:] if g.isdigit()]
    return []
