"""Release blocked readers whose process was killed (or has another signal to handle).

pyfuse3 drops ``FUSE_INTERRUPT``, and the kernel waits for the answer to a request that
userspace has already taken: a reader killed with ``kill -9`` in the middle of ``read()`` would
stay in D state until the watched process dies.  So the daemon notices it itself.  One scanner
task serves all readers (never a loop per reader): every 0.2 s (longer beyond 1,000 blocked
readers, see :meth:`Scanner.period`), and only while some reader is blocked, it reads the
opener thread's ``/proc/<tgid>/task/<tid>/status`` and answers EINTR to reads whose opener has
an unblocked signal pending: SIGKILL (bit 0x100 of ``SigPnd``, added to every thread by any
fatal signal), or a signal with a handler (so Ctrl-C reaches a Python reader, which retries
the read, PEP 475).

If the opener thread is gone or a zombie (a main thread that opened the file, handed the read
to another thread and returned: ``exit_group`` kills every thread, and the reading one waits in
D state), every thread of the opener's process is checked for a pending SIGKILL.

No fd is held per reader (paths are read; the fds of a daemon are its pidfds, one per watched
process).  Before a reader is released, the opener's start time (``/proc/<tgid>/stat`` field
22, taken at ``open()``) is compared, so a process that reused the number is never mistaken for
the opener.  With no reader blocked the task sleeps on an event: open files cost no periodic
work at all (access is judged at death, see :mod:`.watch`).

Limitation: ``read()`` carries no request context in pyfuse3, so the opener is watched, not
the reader; a file descriptor inherited by another process and read there is released only at
death or shutdown if that other process is killed.
"""

from __future__ import annotations

import errno
import logging
from typing import Callable

import trio

import exithand
from exithand import procfs

from . import access as policy

log = logging.getLogger("exithand.fs")


def start_time(tgid: int) -> int | None:
    """Field 22 of ``/proc/<tgid>/stat`` (:func:`exithand.procfs.try_stat`, parsed after the
    last ``)``), None if unreadable."""
    st = procfs.try_stat(tgid)
    return st.start_time if st is not None else None


def _zombie(status: bytes) -> bool:
    return b"\nState:\tZ" in status or b"\nState:\tX" in status


class Blocked:
    """One blocked ``read()``: the trio scope to cancel and the errno to answer with."""

    def __init__(self, fh: int, pid: int, opener_tgid: int, opener_tid: int,
                 opener_start: int | None) -> None:
        self.fh = fh
        self.pid = pid
        self.opener_tgid = opener_tgid
        self.opener_tid = opener_tid
        self.opener_start = opener_start
        self.scope = trio.CancelScope()
        self.errno = 0

    def release(self, err: int) -> None:
        if not self.errno:
            self.errno = err
        self.scope.cancel()


class Scanner:
    """The one periodic task: checks blocked readers' openers (only while some are blocked)."""

    def __init__(self, blocked: Callable[[], list[Blocked]], interval: float = 0.2) -> None:
        self._blocked = blocked
        self.interval = interval
        self._wake = trio.Event()

    def wake(self) -> None:
        """Call when a read starts blocking (starts an idle scanner)."""
        self._wake.set()

    @staticmethod
    def interrupted(b: Blocked) -> bool:
        """Has ``b``'s opener a signal pending (or is its process being killed)?"""
        if b.opener_tgid <= 0 or b.opener_start is None:
            return False
        text = procfs.try_read(b.opener_tgid, "status", b.opener_tid)
        if text is not None and policy.signal_pending(text):
            return start_time(b.opener_tgid) == b.opener_start
        if text is not None and not _zombie(text):
            return False
        # the opener thread is gone: a fatal signal puts SIGKILL on every live thread
        if start_time(b.opener_tgid) != b.opener_start:
            return False  # the opener process is gone (or the number is another's)
        try:
            tids = procfs.tasks(b.opener_tgid)
        except exithand.Error:
            return False
        for tid in tids:
            t = procfs.try_read(b.opener_tgid, "status", tid)
            if t is not None and not _zombie(t) and policy.signal_pending(t, fatal_only=True):
                return True
        return False

    def check(self, b: Blocked) -> bool:
        """Release ``b`` if its opener has a pending signal; True if released."""
        if b.errno or not self.interrupted(b):
            return False
        log.debug("read-interrupted fh=%d pid=%d opener=%d", b.fh, b.pid, b.opener_tid)
        b.release(errno.EINTR)
        return True

    def period(self, n: int) -> float:
        """Seconds between scans for ``n`` blocked readers.

        One check costs ~15 us (regenerating ``/proc/<tid>/status`` dominates): 1,000 readers
        every 0.2 s is ~7.5% of a CPU.  Beyond that the period grows as n / 5000 s (2 s for
        10,000 readers), so the scanner never costs more than that, and a killed reader is
        released within one period.
        """
        return max(self.interval, n / 5000)

    async def run(self) -> None:
        while True:
            blocked = self._blocked()
            if not blocked:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            await trio.sleep(self.period(len(blocked)))
            for i, b in enumerate(self._blocked()):
                self.check(b)
                if i % 256 == 255:
                    await trio.sleep(0)  # never stall the FUSE workers for long
