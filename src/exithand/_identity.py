"""Process identity, and parsing of ``/proc/<pid>/stat``.

A PID number is not a process: once a process is reaped its number can be handed to a new one.
A pidfd pins the process itself, so the only race left is in turning a number into a pidfd.  We
close it by *verifying after open*: the caller says which process it meant (pidfs inode, or start
time) and we compare with what the pidfd (or ``/proc``) says.

* pidfs inode (``fstat(pidfd).st_ino``, Linux 6.9+): 64-bit, never reused within a boot.
* start time (``/proc/<pid>/stat`` field 22, clock ticks since boot) plus the boot id: the
  classic identity on older kernels (what psutil uses).  Two processes can share a start time only
  if the number wraps around within one clock tick, which pid_max makes impossible in practice.

``/proc/<pid>/stat`` must be parsed from the *last* ``)``: field 2, the command name, may
contain spaces and parentheses (``prctl(PR_SET_NAME)`` lets a process choose it).
"""

from __future__ import annotations

import os
import time

from ._kernel import procfs as _procfs

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Optional
else:
    from ._kernel.frozen import dataclass


#: the fields of ``/proc/<pid>/stat`` we use (:class:`exithand.procfs.Stat`)
ProcStat = _procfs.Stat
#: parse the text of ``/proc/<pid>/stat`` (split at the last ``)``)
parse_stat = _procfs.parse_stat
#: ``/proc/sys/kernel/random/boot_id``: start times are only comparable within one boot
boot_id = _procfs.boot_id


def read_stat(pid: int) -> Optional[ProcStat]:
    """Read and parse ``/proc/<pid>/stat``; ``None`` when the entry is gone or unparseable."""
    return _procfs.try_stat(pid)


def read_tgid(pid: int) -> Optional[int]:
    """The ``Tgid:`` of ``/proc/<pid>/status`` (a thread's process), ``None`` when unreadable."""
    return _procfs.tgid(pid)


def pid_max() -> int:
    """The kernel's current ``pid_max`` (per pid namespace from 6.14), or the hard limit 2**22.

    Read on every :func:`check_pid`, so with bare ``os`` calls: a buffered text ``open()`` costs
    about 3x more (about 19 vs 6 us here), which was a fifth of ``exithand.open``'s time.
    """
    try:
        fd = os.open("/proc/sys/kernel/pid_max", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return int(os.read(fd, 32))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return 4194304  # PID_MAX_LIMIT on 64-bit


_pid_max_seen = 0

#: clock ticks per second: the unit of ``/proc/<pid>/stat`` field 22 (USER_HZ, 100 on Linux)
CLK_TCK = _procfs.CLK_TCK


def boot_time() -> float:
    """``btime`` of ``/proc/stat``: the wall-clock time of boot, whole seconds since the epoch.

    Read each time (cheap, and the kernel moves it when the wall clock is stepped), as
    ``psutil.boot_time()`` does; 0.0 if unreadable.
    """
    try:
        fd = os.open("/proc/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = b""
            while b"btime " not in data or not data.split(b"btime ", 1)[1].count(b"\n"):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        return float(data.split(b"btime ", 1)[1].split(b"\n", 1)[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def create_time_of(start_time: int) -> float:
    """Start time in clock ticks since boot -> seconds since the epoch, as
    ``psutil.Process.create_time()`` computes it (``btime + ticks / CLK_TCK``)."""
    return boot_time() + start_time / CLK_TCK


def uptime_ticks() -> int:
    """Clock ticks since boot now (``CLOCK_BOOTTIME``, the clock of stat field 22)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLK_TCK)


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a handle is about: not a number, a process.

    ``inode`` is the pidfs inode (``None`` before Linux 6.9); ``start_time`` is field 22 of
    ``/proc/<pid>/stat`` (``None`` if the process died before it could be read); ``boot_id``
    scopes both to one boot.  ``str()`` gives ``PID:INODE`` (util-linux ``waitpid`` syntax), or
    just ``PID`` when there is no inode.
    """

    pid: int
    inode: Optional[int]
    start_time: Optional[int]
    boot_id: str

    def __str__(self) -> str:
        return f"{self.pid}:{self.inode}" if self.inode is not None else str(self.pid)

    @property
    def create_time(self) -> Optional[float]:
        """The start time as seconds since the epoch, as ``psutil.Process.create_time()``
        gives it (``None`` when ``start_time`` is).  Derived from the boot time now, so a wall
        clock step since boot moves it, as it moves psutil's."""
        return None if self.start_time is None else create_time_of(self.start_time)


def parse_target(text: str) -> tuple[int, Optional[int]]:
    """Parse a ``PID`` or ``PID:INODE`` target, as util-linux ``waitpid(1)`` accepts it.

    ``parse_target("1234:81234")`` returns ``(1234, 81234)``; ``parse_target("1234")`` returns
    ``(1234, None)``.  Pass the pair on as ``exithand.open(pid, inode=inode)``.  The inode is
    the process's pidfs inode (``str(h.identity)``; Linux 6.9+).  ASCII decimal digits only;
    surrounding whitespace is ignored.

    Raises ``TypeError`` for a non-``str`` and ``ValueError`` (naming the target) for anything
    malformed: not a number, a pid <= 0 or above the kernel's ``pid_max``, an inode <= 0.
    """
    if not isinstance(text, str):
        raise TypeError(f"target must be a str, not {type(text).__name__}")
    pid_s, sep, ino_s = text.strip().partition(":")
    pid = _parse_int(pid_s, "pid", text)
    inode = _parse_int(ino_s, "inode", text) if sep else None
    if inode is not None and inode <= 0:
        raise ValueError(f"invalid target {text!r}: inode must be a positive integer")
    try:
        check_pid(pid)
    except ValueError as e:
        raise ValueError(f"invalid target {text!r}: {e}") from None
    return pid, inode


def _parse_int(s: str, what: str, whole: str) -> int:
    # ASCII decimal only, as strtol(3) reads pids in kill(1)/waitpid(1): str.isdigit() and
    # int() also accept other scripts' digits ("\u0661\u0662" is 12) and int() then fails on
    # some of them (superscripts), so test the characters themselves.
    digits = s[1:] if s.startswith("-") else s
    if not digits or not all("0" <= c <= "9" for c in digits):
        raise ValueError(f"invalid target {whole!r}: {what} must be an integer")
    return int(s)


def check_pid(pid: object) -> int:
    """Validate a pid argument: a real ``int`` (not bool), 1 <= pid <= pid_max."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise ValueError(f"invalid pid {pid!r}: must be an int, not {type(pid).__name__}")
    if pid <= 0:
        raise ValueError(f"invalid pid {pid}: must be a positive integer")
    global _pid_max_seen
    # pid_max can be raised at run time: re-read it only when a pid exceeds the cached value
    # (a lowered pid_max needs no check: such a pid simply does not exist, ESRCH later)
    if pid > _pid_max_seen:
        _pid_max_seen = pid_max()
        if pid > _pid_max_seen:
            raise ValueError(f"invalid pid {pid}: larger than the kernel's pid_max "
                             f"({_pid_max_seen})")
    return pid
