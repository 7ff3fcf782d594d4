"""Repeated warnings, rate-limited per person and per kind, with nothing lost from the count.

A refused open costs a user one syscall and cost the root daemon one log line: a loop of them
gave 1,757 lines/s, and the journal's own rate limit then dropped *everyone's* lines.  So each
warning a request can cause (a refused open, a quota hit) goes through :meth:`Throttle.warn`
with the person it is charged to (:mod:`.persons`) and its kind:

* in each window (``window`` s, 5 by default, starting at the first such warning), the first
  ``burst`` (3) lines of one person and kind are logged as asked;
* the rest are logged at DEBUG only (seen with ``--debug``, never by default) and counted;
* when the window ends, one summary line per person and kind that went over:
  ``uid 65534: 8,848 opens refused in the last 5 s (3 logged)``.  The periodic task
  (:meth:`Throttle.run`) ends each window even when the flood has stopped, so every count is
  reported.

So one person's sustained rate is at most ``kinds x (burst + 1) / window`` lines/s (4 kinds:
3.2 lines/s).  Bounded state: at most ``max_keys`` (person, kind) counters per window; more
people than that are summed under ``other users``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

import trio

OTHERS = -1


class Comm:
    """A thread's command name, read from ``/proc/<tid>/comm`` only if the line that names it
    is formatted (a throttled line at DEBUG without ``--debug`` costs no read).  The name is
    the user's choice: :mod:`.logsinks` escapes it like every message."""

    def __init__(self, tid: int) -> None:
        self.tid = tid

    def __str__(self) -> str:
        try:
            with open(f"/proc/{self.tid}/comm", "rb", buffering=0) as f:
                return f.read(64).rstrip(b"\n").decode("utf-8", "backslashreplace")
        except OSError:
            return "?"


class Throttle:
    """Per (person, kind) rate limiting of a logger's repeated warnings."""

    def __init__(self, logger: logging.Logger, window: float = 5.0, burst: int = 3,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 4096) -> None:
        self.log = logger
        self.window = window
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._counts: dict[tuple[int, str], int] = {}
        self._start: Optional[float] = None
        self._wake: Optional[trio.Event] = None

    def warn(self, person: int, kind: str, level: int, msg: str, *args: Any) -> None:
        """Log ``msg % args`` at ``level`` unless ``person`` already had ``burst`` warnings of
        ``kind`` in this window (then at DEBUG), and count it.  ``kind`` is a plural phrase
        ("opens refused") used in the summary."""
        now = self.clock()
        if self._start is not None and now - self._start >= self.window:
            self.flush(now)
        if self._start is None:
            self._start = now
            if self._wake is not None:
                self._wake.set()
        key = (person, kind)
        if key not in self._counts and len(self._counts) >= self.max_keys:
            key = (OTHERS, kind)
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        self.log.log(level if n <= self.burst else logging.DEBUG, msg, *args)

    def flush(self, now: Optional[float] = None) -> int:
        """End the window: one summary line per (person, kind) over its burst.  Returns the
        number of summary lines."""
        if self._start is None:
            return 0
        span = (self.clock() if now is None else now) - self._start
        lines = 0
        for (person, kind), n in sorted(self._counts.items()):
            if n > self.burst:
                who = "other users" if person == OTHERS else f"uid {person}"
                self.log.warning("%s: %s %s in the last %.3g s (%d logged)", who, f"{n:,}",
                                 kind, max(span, self.window), self.burst)
                lines += 1
        self._counts.clear()
        self._start = None
        return lines

    async def run(self) -> None:
        """End every window on time (the daemon's nursery runs this); idle when quiet."""
        while True:
            self._wake = trio.Event()
            if self._start is None:
                await self._wake.wait()
            start = self._start
            if start is None:
                continue
            await trio.sleep(max(0.0, start + self.window - self.clock()))
            if self._start == start:
                self.flush()
