"""Release blocked readers whose process was killed (or has another signal to handle).

pyfuse3 drops ``FUSE_INTERRUPT``, and the kernel waits for the answer to a request that
userspace has already taken: a reader killed with ``kill -9`` in the middle of ``read()`` would
stay in D state until the watched process dies.  So the daemon notices it itself.  One scanner
task serves all readers (never a loop per reader): every 0.2 s (longer beyond 1,000 blocked
readers, see :meth:`Scanner.period`), and only while some reader is blocked, it re-reads the
opener thread's ``/proc/<tid>/status`` through an fd opened at ``open()`` (a pread at offset 0
regenerates the text; the fd stays bound to that thread, so a reused tid is never read) and
answers EINTR to reads whose opener has an unblocked
signal pending: SIGKILL (bit 0x100 of ``SigPnd``, added to every thread by any fatal signal),
or a signal with a handler (so Ctrl-C reaches a Python reader, which retries the read, PEP 475).

It does nothing else: with no blocked reader it sleeps on an event (no periodic work for
open files; access is judged at death, see :mod:`.watch`).

Limitation: ``read()`` carries no request context in pyfuse3, so the opener is watched, not
the reader; a file descriptor inherited by another process and read there is released only at
death or shutdown if that other process is killed.
"""

from __future__ import annotations

import errno
import logging
from typing import Callable

import trio

from . import policy

log = logging.getLogger("exithand.fs")


class Blocked:
    """One blocked ``read()``: the trio scope to cancel and the errno to answer with."""

    def __init__(self, fh: int, pid: int, opener_tid: int, status_fd: int) -> None:
        self.fh = fh
        self.pid = pid
        self.opener_tid = opener_tid
        self.status_fd = status_fd
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

    def check(self, b: Blocked) -> bool:
        """Release ``b`` if its opener has a pending signal; True if released."""
        if b.status_fd < 0 or b.errno:
            return False
        text = policy.read_thread_status(b.status_fd)
        if text is None or not policy.signal_pending(text):
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
