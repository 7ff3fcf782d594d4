"""Release blocked readers whose process was killed (or has another signal to handle).

pyfuse3 drops ``FUSE_INTERRUPT``, and the kernel waits for the answer to a request that
userspace has already taken: a reader killed with ``kill -9`` in the middle of ``read()`` would
stay in D state until the watched process dies.  So the daemon notices it itself.  One scanner
task serves all readers (never a loop per reader): every ``interval`` seconds, and only while
some reader is blocked, it re-reads the opener thread's ``/proc/<tid>/status`` through an fd
opened at ``open()`` (a pread at offset 0 regenerates the text; the fd stays bound to that
thread, so a reused tid is never read) and answers EINTR to reads whose opener has an unblocked
signal pending: SIGKILL (bit 0x100 of ``SigPnd``, added to every thread by any fatal signal),
or a signal with a handler (so Ctrl-C reaches a Python reader, which retries the read, PEP 475).

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
    """The one task that checks the openers of all blocked readers for pending signals."""

    def __init__(self, blocked: Callable[[], list[Blocked]], interval: float = 0.2) -> None:
        self._blocked = blocked
        self.interval = interval
        self._wake = trio.Event()

    def reader_blocked(self) -> None:
        """Call when a read starts blocking (starts the scan if it was idle)."""
        self._wake.set()

    def scan_once(self) -> int:
        """Release readers whose opener has a pending signal; returns how many."""
        n = 0
        for b in self._blocked():
            if b.status_fd < 0 or b.errno:
                continue
            text = policy.read_thread_status(b.status_fd)
            if text is not None and policy.signal_pending(text):
                log.debug("read-interrupted fh=%d pid=%d opener=%d", b.fh, b.pid, b.opener_tid)
                b.release(errno.EINTR)
                n += 1
        return n

    async def run(self) -> None:
        while True:
            if not self._blocked():
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            await trio.sleep(self.interval)
            self.scan_once()
