"""Who may learn how a process ended: the access policy of ``exithand_full`` and ``exitstatus``.

Plain ``exithand`` (death only, no status) is open to anyone who can see the process, as a
pidfd is.  The status files follow the policy the daemon was started with:

``same-user`` (default)
    root (uid 0, or CAP_SYS_PTRACE in the daemon's user namespace), the target's parent, or a
    caller whose uid equals the target's real *and* effective uid as last seen alive.  A
    process that became setuid-other during its life is refused.  This follows the uid part
    of the kernel's ``ptrace_may_access`` (as DESIGN.md words the policy); unlike the kernel it
    does not look at the saved uid or the "dumpable" flag.
``public``
    anyone (FreeBSD-like: any user may learn any exit status there).
``parent``
    the target's parent and root.
``root``
    root only.

The decision is taken at ``open()`` from the FUSE request (the caller's fsuid and thread id;
FUSE passes the *thread* id, so the caller's process is the ``Tgid:`` of that thread) against
the target's credentials read at that moment, and taken again at death against the target's
last credentials (:meth:`exithand.ExitHandle.credentials`): those of the zombie when the daemon
sees it before the reap, else the last ones read alive (re-read every scanner period, 0.2 s,
while a status file is open).  A refused caller gets EACCES.

Note the kernel itself is more generous on recent versions: the proc connector (on 6.6+
kernels that let unprivileged listeners in the initial namespaces subscribe; not all do) and
``PIDFD_INFO_EXIT`` (6.15+, any pidfd holder) show exit codes more widely, so ``same-user``
is stricter than the kernel's own rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import exithand

POLICIES = ("same-user", "public", "parent", "root")
DEFAULT_POLICY = "same-user"

CAP_SYS_PTRACE = 19


@dataclass(frozen=True)
class Caller:
    """Who issued a FUSE request: fsuid, its process (tgid), and whether it is privileged."""

    uid: int
    tgid: int
    privileged: bool


def parse_status(text: bytes) -> dict[bytes, bytes]:
    """``/proc/<tid>/status`` as ``{b"Tgid": b"1234", ...}``."""
    out: dict[bytes, bytes] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(b":")
        if sep:
            out[key] = value.strip()
    return out


def in_our_user_ns(tid: int) -> bool:
    """Is thread ``tid`` in the daemon's own user namespace?

    ``CapEff`` in ``/proc/<tid>/status`` is relative to the thread's user namespace, and any
    user can create one and hold every capability there (``unshare -Ur``).  The kernel's
    ptrace check asks for CAP_SYS_PTRACE in the *target's* namespace; we count a caller's
    capabilities only when it shares ours (the initial one, for a daemon started normally),
    which never grants more than the kernel would.  Reading ``/proc/<tid>/ns/user`` needs
    ptrace read access to the caller: if refused, the capabilities do not count.
    """
    try:
        theirs = os.stat(f"/proc/{tid}/ns/user")
        ours = os.stat("/proc/self/ns/user")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def caller_from_status(uid: int, tid: int, status: Optional[bytes],
                       caps_count: bool = True) -> Caller:
    """Build a :class:`Caller` from the request's uid and the caller thread's status text.

    If the status is unreadable (the thread vanished; tid 0 for a caller in a pid namespace the
    daemon cannot see), only the uid counts: the caller can never be judged a parent.
    ``caps_count``: whether the caller's ``CapEff`` means anything here (see
    :func:`in_our_user_ns`); if not, only uid 0 makes it privileged.
    """
    fields = parse_status(status) if status is not None else {}
    try:
        tgid = int(fields.get(b"Tgid", b"0"))
        capeff = int(fields.get(b"CapEff", b"0"), 16)
    except ValueError:
        tgid, capeff = 0, 0
    privileged = uid == 0 or (caps_count and bool(capeff & (1 << CAP_SYS_PTRACE)))
    return Caller(uid, tgid if tgid > 0 else -1, privileged)


def allowed(policy: str, caller: Caller, target: Optional[exithand.ProcessCredentials]) -> bool:
    """May ``caller`` learn the exit status of ``target``?  ``target`` None: creds unknown."""
    if policy == "public":
        return True
    if caller.privileged:
        return True
    if policy == "root" or target is None:
        return False
    if caller.tgid == target.ppid:
        return True
    if policy == "parent":
        return False
    if policy == "same-user":
        return caller.uid == target.ruid == target.euid
    raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")


def read_thread_status(fd: int) -> Optional[bytes]:
    """Re-read an open ``/proc/<tid>/status`` (pread at 0 regenerates it); None once gone."""
    try:
        return os.pread(fd, 4096, 0)
    except OSError:
        return None


def signal_pending(status: bytes) -> bool:
    """Has this thread an unblocked signal pending (``SigPnd``/``ShdPnd`` minus ``SigBlk``)?

    A fatal signal (``kill -9``, or any signal whose default action kills) adds SIGKILL (bit
    0x100) to every thread's private ``SigPnd``; SIGKILL cannot be blocked, so it always counts.
    """
    # Fast path (the scanner runs this for every blocked reader): the three lines follow
    # each other in every kernel since 2.6; fall back to a full parse if they do not.
    f: dict[bytes, bytes] = {}
    i = status.find(b"\nSigPnd:")
    if i >= 0:
        for line in status[i + 1:i + 90].split(b"\n", 3)[:3]:
            key, _, value = line.partition(b":")
            f[key] = value.strip()
    if not {b"SigPnd", b"ShdPnd", b"SigBlk"} <= f.keys():
        f = parse_status(status)
    try:
        pending = int(f.get(b"SigPnd", b"0"), 16) | int(f.get(b"ShdPnd", b"0"), 16)
        blocked = int(f.get(b"SigBlk", b"0"), 16)
    except ValueError:
        return False
    return bool(pending & ~blocked) or bool(pending & (1 << (9 - 1)))
