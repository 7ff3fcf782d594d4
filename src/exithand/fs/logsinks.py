"""Where the filesystem daemon's log lines go, without ever blocking it or being forged.

* **Never blocking.**  The daemon serves every user from one trio thread; a ``write()`` to a
  stderr pipe that nobody reads blocks once the pipe's 64 KiB buffer is full, and with it every
  request of every user (measured before: the filesystem froze after ~35 refused opens).  So a
  handler only appends the formatted line to a bounded in-memory queue
  (:class:`BoundedHandler`, ``max_lines``) and a writer thread of its own does the blocking
  ``write()``.  A line that finds the queue full is dropped and counted; the writer reports the
  count (``exithand-fs: 123 log lines dropped: the log was not read fast enough``) as soon as
  it can write again, and at exit.  The daemon's memory for logs is bounded by ``max_lines``.
* **Never forged.**  Every log line's message is escaped (:func:`escape`): control characters
  (newline, carriage return, ESC, ...) and backslashes become ``\\n``, ``\\x1b``, ``\\\\``, so a
  process name or path chosen by a user (``a\\n<0>PWNED``) can never start a line of its own,
  which journald (``JOURNAL_STREAM``) or syslog would read as a priority prefix.  A traceback
  keeps its lines but each continuation line is indented with ``  | ``.
* **Never lost for want of syslog** (:func:`background_sink`): a background daemon logs to
  ``/dev/log`` when there is one, else to a file (``/var/log/exithand-fs.log``, or under
  ``/tmp`` when that is not writable), and the starter is told which.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import socket
import threading
from collections import deque
from typing import ClassVar, Optional

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def escape(text: str) -> str:
    """``text`` with every control character and backslash escaped (one printable line)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class SafeFormatter(logging.Formatter):
    """A formatter whose message is one escaped line; tracebacks follow as ``  | `` lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.getMessage())
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        head, sep, rest = text.partition("\n")
        if not sep:
            return head
        return head + "".join(f"\n  | {escape(line)}" for line in rest.split("\n"))


class JournalFormatter(SafeFormatter):
    """:class:`SafeFormatter` with a ``<N>`` syslog priority prefix, which journald reads on
    a ``JOURNAL_STREAM`` stderr (the only ``<`` a line can start with)."""

    _PRIO: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
        logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRIO.get(record.levelno, 6)}>{super().format(record)}"


class BoundedHandler(logging.Handler):
    """Queue formatted lines (at most ``max_lines``) for a writer thread writing to ``fd``;
    ``emit`` never blocks on the fd.  ``dropped``: lines lost because the queue was full."""

    def __init__(self, fd: int, max_lines: int = 4096) -> None:
        super().__init__()
        self.fd = fd
        self.max_lines = max_lines
        self.dropped = 0
        self._reported = 0
        self._lines: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        self._thread = threading.Thread(target=self._write_loop, name="exithand-fs-log",
                                        daemon=True)
        self._thread.start()
        # a forked child (the background daemon) has no writer thread: give it its own
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._cond = threading.Condition()
        self._busy = False
        if not self._closing:
            self._thread = threading.Thread(target=self._write_loop, name="exithand-fs-log",
                                            daemon=True)
            self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:
            self.handleError(record)
            return
        with self._cond:
            if len(self._lines) >= self.max_lines:
                self.dropped += 1
                return
            self._lines.append(line)
            self._cond.notify()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._lines and not self._closing and self.dropped == self._reported:
                    self._cond.wait()
                if not self._lines and self._closing and self.dropped == self._reported:
                    return
                batch = b"".join(self._lines)
                self._lines.clear()
                lost = self.dropped - self._reported
                self._reported = self.dropped
                self._busy = True
            if lost:
                batch += (f"exithand-fs: {lost} log lines dropped: the log was not read fast "
                          f"enough ({self.dropped} in all)\n").encode()
            try:
                view = memoryview(batch)
                while view:
                    n = os.write(self.fd, view)
                    view = view[n:]
            except OSError:
                pass  # the log's reader is gone: nothing left to tell
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self) -> None:
        self.drain(1.0)

    def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until everything queued is written."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._lines and not self._busy and self.dropped == self._reported,
                timeout)

    def close(self) -> None:
        """Write what is queued (bounded: a log nobody reads is not waited for) and stop."""
        self.drain(1.0)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(0.5)
        super().close()


def _syslog_sink() -> Optional[logging.Handler]:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.connect("/dev/log")
        finally:
            s.close()
        h = logging.handlers.SysLogHandler(address="/dev/log")
    except OSError:
        return None
    h.setFormatter(SafeFormatter("exithand-fs[%(process)d]: %(message)s"))
    return h


#: where a background daemon logs without /dev/log (the first one it can append to)
LOG_FILES = ("/var/log/exithand-fs.log", "/tmp/exithand-fs.log")


def background_sink() -> tuple[logging.Handler, str]:
    """The handler of a background daemon and a phrase saying where its lines go."""
    h = _syslog_sink()
    if h is not None:
        return h, "syslog (/dev/log)"
    for path in LOG_FILES:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC |
                         os.O_NOFOLLOW, 0o640)
        except OSError:
            continue
        if os.fstat(fd).st_uid != os.geteuid():  # made by someone else (/tmp): not ours
            os.close(fd)
            continue
        fh = BoundedHandler(fd)
        fh.setFormatter(SafeFormatter(
            "%(asctime)s exithand-fs[%(process)d] %(levelname)s %(message)s"))
        return fh, f"{path} (no /dev/log)"
    return logging.NullHandler(), "nowhere (no /dev/log and no writable log file)"

