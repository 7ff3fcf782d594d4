"""Who may learn how a process ended: the access policy of ``exithand_full`` and ``exitstatus``.

Plain ``exithand`` (death only, no status) is open to anyone who can see the process, as a
pidfd is.  The status files follow the policy the daemon was started with:

``same-user`` (default)
    exactly what the kernel would answer: the reader may learn the status if the kernel would
    show it the zombie's exit code (``/proc/<pid>/stat`` field 52, gated by ptrace read
    access: same real, effective and saved uid *and* gid, target dumpable, or CAP_SYS_PTRACE,
    plus LSMs), asked *as that reader* (see :mod:`.askkernel`), at the moment of death; or
    the reader is the target's parent (which learns it from ``wait()`` anyway).
``public``
    anyone (FreeBSD-like: any user may learn any exit status there).
``parent``
    the target's parent, and privileged callers.
``root``
    uid 0 and privileged callers only.

"Privileged" is CAP_SYS_PTRACE in the caller's effective set *and* the daemon's user
namespace (uid 0 without it is asked about like anyone else).

When it is decided: at ``open()`` (a refused open fails with EACCES), and again at death
from the zombie, before any reader is answered (credentials and dumpability can change until
the last instant: a setuid ``exec`` just before exiting).  The daemon learns of the death from
the pidfd and asks the kernel while the zombie still exists; if the parent reaps it before
that, nothing the daemon can read tells what the kernel would have answered, so a
``same-user`` reader is refused (EACCES, the reason in the log) -- never judged on an earlier
sample.  Privileged readers, ``public``, and a parent are unaffected.

What no policy can hide: on Linux 6.15+ ``PIDFD_GET_INFO`` with ``PIDFD_INFO_EXIT`` gives the
status *after the reap* to any pidfd holder (no ptrace check), and on 6.6+ the proc connector
shows exit codes to unprivileged listeners where the kernel allows it.  So the policy protects
the zombie phase and zombies never reaped, not the status after the reap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import exithand
from exithand import procfs

POLICIES = ("same-user", "public", "parent", "root")
DEFAULT_POLICY = "same-user"

CAP_SYS_PTRACE = procfs.CAP_SYS_PTRACE


@dataclass(frozen=True)
class Caller:
    """Who issued a FUSE request: fsuid/fsgid, its process (tgid, in the daemon's pid
    namespace), and whether it holds CAP_SYS_PTRACE in the daemon's user namespace."""

    uid: int
    gid: int
    tgid: int
    privileged: bool


#: ``kernel()`` of :func:`decide`: ``(True|False, "")``, or ``(None, why it cannot be asked)``
KernelAnswer = tuple[Optional[bool], str]


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
        theirs = procfs.ns_stat(tid, "user")
        ours = procfs.ns_stat("self", "user")
    except exithand.Error:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def caller_from_status(uid: int, gid: int, tid: int, status: Optional[bytes],
                       caps_count: bool = True) -> Caller:
    """Build a :class:`Caller` from the request's fsuid/fsgid and the caller thread's status.

    If the status is unreadable (the thread vanished; tid 0 for a caller in a pid namespace the
    daemon cannot see), only the ids count: the caller can never be judged a parent.
    ``caps_count``: whether the caller's ``CapEff`` means anything here (see
    :func:`in_our_user_ns`); if not, the caller holds no capability for us.
    """
    fields = parse_status(status) if status is not None else {}
    try:
        tgid = int(fields.get(b"Tgid", b"0"))
        capeff = int(fields.get(b"CapEff", b"0"), 16)
    except ValueError:
        tgid, capeff = 0, 0
    privileged = caps_count and bool(capeff & (1 << CAP_SYS_PTRACE))
    return Caller(uid, gid, tgid if tgid > 0 else -1, privileged)


def decide(policy: str, caller: Caller, ppid: Optional[int],
           kernel: Callable[[], KernelAnswer]) -> tuple[bool, str]:
    """May ``caller`` learn the exit status?  ``(allowed, reason)``.

    ``ppid``: the target's parent (None if never read); ``kernel()`` asks the kernel as the
    caller (called only for ``same-user`` callers that nothing else admits).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == "public" or caller.privileged:
        return True, ""
    if policy == "root":
        return (True, "") if caller.uid == 0 else (False, "policy root: uid 0 only")
    if ppid is not None and caller.tgid == ppid:
        return True, ""
    if policy == "parent":
        return False, "policy parent: not the parent"
    ans, why = kernel()
    if ans is None:
        return False, f"cannot tell what the kernel would answer: {why}"
    return (True, "") if ans else (False, "the kernel refuses this reader ptrace read access")


def read_thread_status(tid: int) -> Optional[bytes]:
    """``/proc/<tid>/status`` now; None if unreadable (gone)."""
    return procfs.try_read(tid, "status")


def signal_pending(status: bytes, fatal_only: bool = False) -> bool:
    """Has this thread an unblocked signal pending (``SigPnd``/``ShdPnd`` minus ``SigBlk``)?

    A fatal signal (``kill -9``, or any signal whose default action kills) adds SIGKILL (bit
    0x100) to every thread's private ``SigPnd``; SIGKILL cannot be blocked, so it always counts.
    ``fatal_only``: only that SIGKILL bit (for threads other than the opener).
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
    if fatal_only:
        return bool(pending & (1 << (9 - 1)))
    return bool(pending & ~blocked) or bool(pending & (1 << (9 - 1)))
