"""Output that can never stall or crash the daemon: bounded queues, writer threads, drop counts.

A kill decision must not wait on its log line.  A write to stdout blocks for as long as nobody
reads the pipe (a stuck journald, a paused ``| less``), fails with ``ENOSPC`` on a full disk or
``EPIPE`` once the reader is gone; ``syslog(3)`` blocks when ``/dev/log``'s queue is full.  So each
sink (stdout, syslog) is a :class:`Sink`: :meth:`Sink.put` only appends to a bounded queue
(:data:`CAPACITY` lines) and never blocks; one writer thread per sink does the writing.  A line
that finds the queue full, or whose write fails, is counted as dropped, and the count is written
as its own line (``N event line(s) dropped``) before the next line that does get through, and
reported at exit (:meth:`Sink.close` waits at most ``timeout`` for the queue to drain).  A
blocked writer thread holds only itself: it is a daemon thread, so exit does not wait on it.
Python ignores SIGPIPE, so a closed pipe is an ``EPIPE`` error here, never a signal.

:func:`escape` makes a text line safe for a line-based log: every string read from a process
(comm, exe path, cgroup path) can hold a newline, and a new line starting ``<0>`` is read by
journald as an emergency-priority message.  C0/C1 controls, DEL, U+2028/U+2029 and backslash
become ``\\xNN``/``\\uNNNN``/``\\\\``; a byte that is not UTF-8 (a surrogate escape) becomes
``\\xNN`` of that byte.  JSON lines need nothing more: ``json.dumps`` escapes all of them.
"""

from __future__ import annotations

import collections
import os
import re
import threading
from collections.abc import Callable
from typing import Optional

CAPACITY = 1024
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")


def _esc(m: re.Match[str]) -> str:
    ch = m.group()
    o = ord(ch)
    if ch == "\\":
        return "\\\\"
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}"


def escape(text: str) -> str:
    """``text`` with nothing that could end a log line or hide in one (see the module doc)."""
    return _UNSAFE.sub(_esc, text)


def fd_writer(fd: int) -> Callable[[bytes], None]:
    """Write all of ``data`` to ``fd`` (blocking; only a writer thread calls it)."""
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:  # an inherited O_NONBLOCK fd: wait until it takes more
                import select
                select.select([], [fd], [])
                continue
            view = view[n:]
    return write


class Sink:
    """One output behind a bounded queue and its own writer thread (see the module doc)."""

    def __init__(self, name: str, write: Callable[[bytes], None],
                 notice: Callable[[int], bytes], capacity: int = CAPACITY) -> None:
        self.name = name
        self._write = write
        self._notice = notice
        self._capacity = capacity
        self._queue: collections.deque[Optional[bytes]] = collections.deque()
        self._cond = threading.Condition()
        self.dropped = 0  # lines lost: queue full, or the write failed
        self._told = 0  # of those, how many a notice line has reported
        self.last_error: Optional[str] = None
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=f"exithand-lowmem-{name}",
                                        daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> None:
        """Queue one line; never blocks (a full queue drops it and counts it)."""
        with self._cond:
            if len(self._queue) >= self._capacity:
                self.dropped += 1
                return
            self._queue.append(line)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                line = self._queue.popleft()
                self._busy = line is not None
                untold = self.dropped - self._told
            if line is None:
                return
            try:
                if untold:
                    self._write(self._notice(untold))
                    with self._cond:
                        self._told += untold
                self._write(line)
            except (OSError, ValueError) as e:  # ENOSPC, EPIPE, EIO, a closed file
                with self._cond:
                    self.dropped += 1
                    self.last_error = getattr(e, "strerror", None) or str(e)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for every queued line to be written (or dropped)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float) -> int:
        """Stop the writer once the queue drained (at most ``timeout`` s); lines never
        written: the dropped count plus whatever is still queued."""
        self.drain(timeout)
        with self._cond:
            lost = self.dropped + sum(1 for x in self._queue if x is not None)
            self._queue.append(None)
            self._cond.notify_all()
        return lost
