"""One pass over ``/proc``: what pgrep(1)-style selection needs to know of each process.

The pidwait face selects processes as procps ``pgrep`` does (``src/pgrep.c``,
``select_procs``) and pins each match with a pidfd checked against the start time read
here, so a process that dies and whose number is reused between this scan and the pin is
never waited for (the pin fails: the newcomer has another start time).

Kernel facts used: ``/proc/PID/stat`` is parsed from the last ``)`` (the name may contain
spaces and parentheses); field 3 is the state, 4 ppid, 5 pgrp, 6 session, 7 tty_nr, 22 the
start time in clock ticks since boot.  ``/proc/PID/status`` gives the real/effective uids and
gids; ``/proc/PID/cmdline`` is NUL-separated and empty for kernel threads and zombies (pgrep
then shows ``[comm]``, as ps does).  A process may vanish at any point of the scan: every read
that fails drops it, never the scan.
"""

from __future__ import annotations

import os

from exithand import Error, procfs

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import NamedTuple, Optional

    class Proc(NamedTuple):
        """One process as the scan saw it."""

        pid: int
        comm: str
        state: str
        ppid: int
        pgrp: int
        session: int
        tty_nr: int
        start_time: int  # clock ticks since boot: the identity the pin is checked against
else:
    from collections import namedtuple

    Proc = namedtuple("Proc", "pid comm state ppid pgrp session tty_nr start_time")

CLK_TCK = procfs.CLK_TCK


def read_proc(pid: int) -> Optional[Proc]:
    """The stat fields of ``pid``, or None if it is gone (or not a process)."""
    st = procfs.try_stat(pid)
    if st is None:
        return None
    return Proc(pid, st.comm, st.state, st.ppid, st.pgrp, st.session, st.tty_nr, st.start_time)


def scan(only: Optional[set[int]] = None) -> Iterator[Proc]:
    """Every process (thread-group leader) visible in ``/proc``, in pid order; with ``only``,
    just those of these pids that exist (what a scan filtered on them would keep, without
    reading every other process)."""
    if only is not None:  # /proc/TID exists for a thread too, but a scan never lists it
        pids = sorted(p for p in only if p > 0 and procfs.tgid(p) == p)
    else:
        try:
            pids = sorted(procfs.pids())
        except OSError:
            return
    for pid in pids:
        p = read_proc(pid)
        if p is not None:
            yield p


def cmdline(pid: int, comm: str) -> Optional[str]:
    """The command line, arguments joined by spaces; ``[comm]`` when empty (kernel threads,
    zombies), as procps shows it; None if the process is gone."""
    raw = procfs.try_read(pid, "cmdline")
    if raw is None:
        return None
    if not raw:
        return f"[{comm}]"
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "surrogateescape")


def ids(pid: int) -> Optional[tuple[int, int, int]]:
    """(real uid, effective uid, real gid) from ``/proc/PID/status``, None if gone."""
    data = procfs.try_read(pid, "status")
    if data is None:
        return None
    fields = procfs.parse_status(data)
    uid = procfs.id_list(fields.get("Uid", ""))
    gid = procfs.id_list(fields.get("Gid", ""))
    if len(uid) < 2 or not gid:
        return None
    return uid[0], uid[1], gid[0]


def cgroups(pid: int) -> Optional[list[str]]:
    """The lines of ``/proc/PID/cgroup`` (``0::/path`` for cgroup v2), None if gone."""
    raw = procfs.try_read(pid, "cgroup")
    return None if raw is None else raw.decode("utf-8", "surrogateescape").splitlines()


NAMESPACES = ("ipc", "mnt", "net", "pid", "user", "uts")  # procps' list, in its order


def namespaces(pid: int, which: tuple[str, ...] = NAMESPACES) -> Optional[dict[str, int]]:
    """Namespace inode of each kind in ``which`` (``/proc/PID/ns/KIND``), None if gone or
    not readable (another user's process: procps then cannot compare either)."""
    out = {}
    for ns in which:
        try:
            out[ns] = procfs.ns_stat(pid, ns).st_ino
        except Error:
            return None
    return out


def tty_name(tty_nr: int) -> str:
    """The controlling terminal's name without ``/dev/`` (``pts/3``, ``tty1``, ``ttyS0``),
    ``?`` for none, as procps prints it; others are looked up under ``/dev``."""
    if tty_nr == 0:
        return "?"
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{minor + (major - 136) * 256}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    if major == 5 and minor == 1:
        return "console"
    for d in ("/dev", "/dev/pts"):
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        st = e.stat()
                    except OSError:
                        continue
                    if st.st_rdev == os.makedev(major, minor) and not e.is_dir():
                        return e.path[len("/dev/"):]
        except OSError:
            continue
    return "?"


def uptime() -> float:
    """Seconds since boot (``/proc/uptime``), for pgrep's ``-O`` (elapsed time)."""
    with open("/proc/uptime", "rb") as f:
        return float(f.read().split()[0])


def ancestors(pid: int) -> set[int]:
    """``pid`` and every ancestor of it (pgrep ``-A``)."""
    out = set()
    while pid > 0 and pid not in out:
        out.add(pid)
        p = read_proc(pid)
        if p is None:
            break
        pid = p.ppid
    return out
