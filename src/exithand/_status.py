"""ExitStatus: how a process ended, or an honest "unknown" with the reason.

One converter from the kernel's wait status (:meth:`ExitStatus.from_wait_status`), one from
``waitid`` ``si_code``/``si_status`` (:meth:`ExitStatus.from_siginfo`), one rule for unknown
(:meth:`ExitStatus.unknown`).  A status is never invented: if no source answered, ``known`` is
False and ``reason`` says why.

Wait status encoding (``<sys/wait.h>``): low 7 bits = terminating signal (0 = normal exit),
bit 7 (0x80) = core dumped, bits 8..15 = exit code.

:class:`Coredump` is what is known about a core dump, with its own ``source``: the wait
status' core bit (``WCOREDUMP``, from whichever source gave the status) says only dumped or
not; ``PIDFD_INFO_COREDUMP`` (Linux 6.16, see :mod:`exithand._kernel.syscalls`) adds who the
dump was written as (user or root), whether it was skipped, and from 6.19 the signal.
"""

from __future__ import annotations

import os
import signal as _signal

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Any, Optional
else:
    from ._kernel.frozen import dataclass

# Where a status came from, best first.  Values are stable strings (they appear in --json).
SOURCE_CHILD = "child"  # waitid(P_PIDFD, WEXITED | WNOWAIT) on our own child
SOURCE_POPEN = "popen"  # subprocess.Popen reaped it and kept the returncode
SOURCE_CONNECTOR = "connector"  # netlink proc connector exit event, at death time
SOURCE_ZOMBIE = "zombie"  # /proc/<pid>/stat field 52 of a zombie (needs ptrace read access)
SOURCE_PIDFD_INFO = "pidfd_info"  # PIDFD_GET_INFO + PIDFD_INFO_EXIT after reap (Linux 6.15)


@dataclass(frozen=True)
class Coredump:
    """What is known about a process's core dump; ``ExitStatus.coredump`` is None when no source
    says anything (a normal exit, an unknown status, a Popen returncode).

    ``dumped``: a core was written.  ``skipped``: the kernel skipped the dump
    (``PIDFD_COREDUMP_SKIP``).  ``written_as``: ``"user"`` or ``"root"`` (``PIDFD_COREDUMP_USER``
    / ``_ROOT``: whose credentials the dump was written with), None when the source cannot say.
    ``signal``: the signal that caused the dump where the kernel reports it (6.19), else None.
    ``source``: ``"pidfd_info"`` (PIDFD_INFO_COREDUMP) or the status's own source when it comes
    from the wait status' core bit.
    """

    dumped: bool
    skipped: bool
    written_as: Optional[str]
    signal: Optional[int]
    source: str

    def describe(self) -> str:
        """``core dumped``, ``core dumped as root``, ``core dump skipped``, ``no core dump``."""
        if self.dumped:
            return "core dumped" + (f" as {self.written_as}" if self.written_as else "")
        return "core dump skipped" if self.skipped else "no core dump"

    def as_dict(self) -> dict[str, Any]:
        return {"dumped": self.dumped, "skipped": self.skipped, "written_as": self.written_as,
                "signal": self.signal, "source": self.source}


def coredump_from_wait_status(status: int, source: str) -> Optional[Coredump]:
    """The core bit of a wait status: only for a death by signal (a normal exit says nothing)."""
    if status & 0x7F == 0:
        return None
    return Coredump(bool(status & 0x80), False, None, None, source)


def signal_name(sig: int) -> str:
    """``SIGKILL`` for 9; ``SIG42`` for numbers without a name."""
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}"


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended.

    Exactly one of ``exit_code`` / ``signal`` is set when ``known``; both are ``None`` otherwise.
    ``returncode`` follows :mod:`subprocess`: the exit code, or ``-signal``.
    """

    pid: int
    exit_code: Optional[int]
    signal: Optional[int]
    core_dumped: bool
    known: bool
    source: Optional[str]
    reason: Optional[str] = None
    #: what is known about a core dump (see :class:`Coredump`); None when no source says
    coredump: Optional[Coredump] = None

    @classmethod
    def from_wait_status(cls, pid: int, status: int, source: str) -> ExitStatus:
        """Decode a raw wait status (as ``waitpid``, field 52, PIDFD_INFO_EXIT give it)."""
        sig = status & 0x7F
        if sig == 0:
            return cls(pid, (status >> 8) & 0xFF, None, False, True, source)
        return cls(pid, None, sig, bool(status & 0x80), True, source, None,
                   coredump_from_wait_status(status, source))

    @classmethod
    def from_siginfo(cls, pid: int, si_code: int, si_status: int, source: str) -> ExitStatus:
        """Decode ``waitid`` results: CLD_EXITED carries the code, CLD_KILLED/DUMPED a signal."""
        if si_code == os.CLD_EXITED:
            return cls(pid, si_status, None, False, True, source)
        dumped = si_code == os.CLD_DUMPED
        return cls(pid, None, si_status, dumped, True, source, None,
                   Coredump(dumped, False, None, None, source))

    @classmethod
    def unknown(cls, pid: int, reason: str) -> ExitStatus:
        """The one way to say we do not know; ``reason`` is shown to users."""
        return cls(pid, None, None, False, False, None, reason)

    def with_pid(self, pid: int) -> ExitStatus:
        """The same status under another number for the same process: the one a reader in
        another pid namespace knows it by (``/proc/PID/status`` NSpid).  Everything else,
        including ``source`` and ``reason``, is kept."""
        return type(self)(pid, self.exit_code, self.signal, self.core_dumped, self.known,
                          self.source, self.reason, self.coredump)

    def with_coredump(self, coredump: Optional[Coredump]) -> ExitStatus:
        """The same status with other coredump details (``core_dumped`` follows them)."""
        dumped = coredump.dumped if coredump is not None else self.core_dumped
        return type(self)(self.pid, self.exit_code, self.signal, dumped, self.known,
                          self.source, self.reason, coredump)

    def without_coredump(self) -> ExitStatus:
        """The status minus every coredump detail (for a reader who may not learn them)."""
        return type(self)(self.pid, self.exit_code, self.signal, False, self.known,
                          self.source, self.reason, None)

    @property
    def returncode(self) -> Optional[int]:
        """``subprocess``-style: exit code, ``-signal`` if killed, ``None`` if unknown."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            return -self.signal
        return None

    @property
    def wait_status(self) -> Optional[int]:
        """Re-encode as a raw wait status (``None`` if unknown)."""
        if self.exit_code is not None:
            return self.exit_code << 8
        if self.signal is not None:
            return self.signal | (0x80 if self.core_dumped else 0)
        return None

    def __int__(self) -> int:
        rc = self.returncode
        if rc is None:
            raise ValueError(f"exit status of {self.pid} is unknown: {self.reason}")
        return rc

    def describe(self) -> str:
        """FreeBSD pwait's words: ``1234: exited with status 7.`` / ``1234: killed by signal 9.``"""
        if self.exit_code is not None:
            return f"{self.pid}: exited with status {self.exit_code}."
        if self.signal is not None:
            cd = self.coredump
            if cd is not None and (cd.dumped or cd.skipped):
                core = f" ({cd.describe()})"
            else:
                core = " (core dumped)" if self.core_dumped else ""
            return f"{self.pid}: killed by signal {self.signal}{core}."
        return f"{self.pid}: exited (status unknown: {self.reason})."

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the CLI's ``--json`` shape, minus timing)."""
        return {
            "pid": self.pid,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "signal_name": signal_name(self.signal) if self.signal is not None else None,
            "core_dumped": self.core_dumped,
            "known": self.known,
            "source": self.source,
            "reason": self.reason,
            "coredump": self.coredump.as_dict() if self.coredump is not None else None,
        }
