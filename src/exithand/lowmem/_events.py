"""Event output: one line per event (text or ``--json``), optionally to syslog, and hooks.

Text lines go to stdout, so under systemd they reach the journal with the unit's name;
``--syslog`` also sends them to syslog(3) (facility daemon; warnings at LOG_WARNING).  Each JSON
object has ``event`` and ``time`` (CLOCK_MONOTONIC seconds) plus the event's own fields.

Neither sink can stall or crash the daemon: both go through :class:`._output.Sink` (a bounded
queue and a writer thread; what is lost is counted, reported in a ``dropped`` line when output
works again, in the ``stop`` event and on stderr at exit).  Text lines (stdout and syslog) are
escaped by :func:`._output.escape`: a process's comm, exe or cgroup path never starts a line.
"""

from __future__ import annotations

import json
import os
import subprocess
import syslog
import threading
import time
from typing import Any, Optional, TextIO

from ._output import Sink, escape, fd_writer

WARNING_EVENTS = frozenset({"warning", "no_candidate", "kill_failed", "hook_failed"})


class Emitter:
    """Writes events; runs the hook after kills and reaps finished hook processes."""

    def __init__(self, json_lines: bool, use_syslog: bool,
                 hook: Optional[tuple[str, ...]], out: Optional[TextIO] = None) -> None:
        """``out``: write there synchronously (in-process tests); by default fd 1 through a
        :class:`Sink`."""
        self.json = json_lines
        self.syslog = use_syslog
        self.hook = hook
        self.out = out
        self.hooks: list[subprocess.Popen[bytes]] = []
        self.stdout: Optional[Sink] = None
        self.syslog_sink: Optional[Sink] = None
        #: metrics/journal/notify sinks (:mod:`exithand.obs.sinks`): each gets every event
        self.sinks: list[Any] = []
        if out is None:
            self.stdout = Sink("stdout", fd_writer(1), self._notice)
        if use_syslog:
            syslog.openlog("exithand-lowmem", syslog.LOG_PID, syslog.LOG_DAEMON)
            self.syslog_sink = Sink("syslog", _syslog_write, lambda n: b"4" + (
                f"{n} syslog message(s) dropped".encode()))

    def _line(self, event: str, text: str, fields: dict[str, Any]) -> str:
        if self.json:
            return json.dumps({"event": event, "time": round(time.monotonic(), 6), **fields})
        return f"exithand lowmem: {escape(text)}"

    def _notice(self, n: int) -> bytes:
        text = f"{n} event line(s) dropped: output was blocked or failing"
        return (self._line("dropped", text, {"dropped": n}) + "\n").encode(
            "utf-8", "backslashreplace")

    @property
    def dropped(self) -> int:
        return self.stdout.dropped if self.stdout is not None else 0

    def emit(self, event: str, text: str, **fields: Any) -> None:
        line = self._line(event, text, fields) + "\n"
        if self.stdout is not None:
            self.stdout.put(line.encode("utf-8", "backslashreplace"))
        elif self.out is not None:
            self.out.write(line)
            self.out.flush()
        if self.syslog_sink is not None:
            prio = syslog.LOG_WARNING if event in WARNING_EVENTS else syslog.LOG_INFO
            self.syslog_sink.put(str(prio).encode() + escape(text).encode(
                "utf-8", "backslashreplace"))
        if self.sinks:
            obj = {"event": event, "time": round(time.monotonic(), 6), **fields}
            for s in list(self.sinks):
                try:
                    s.event(event, text, obj)
                except Exception as e:  # a sink never stops the daemon: say so once, drop it
                    self.sinks.remove(s)
                    self.emit("warning", f"{type(s).__name__} stopped: {type(e).__name__}: {e}",
                              message=str(e))

    def sample(self, **figures: Any) -> None:
        """Figures the daemon just read (for the metrics sink); nothing without sinks."""
        for s in self.sinks:
            s.sample(**figures)

    def close(self, timeout: float = 1.0) -> None:
        """Give the writers up to ``timeout`` to finish; say on stderr what was lost (from a
        thread of its own, so that a blocked stderr cannot hold the exit either)."""
        lost = {}
        for sink in (self.stdout, self.syslog_sink):
            if sink is not None:
                n = sink.close(timeout)
                if n:
                    lost[sink.name] = (n, sink.last_error)
        if not lost:
            return
        msg = "".join(f"exithand lowmem: {n} {name} line(s) dropped"
                      + (f" (last error: {err})" if err else " (blocked)") + "\n"
                      for name, (n, err) in lost.items()).encode()
        t = threading.Thread(target=_try_write, args=(2, msg), daemon=True)
        t.start()
        t.join(timeout)

    def run_hook(self, fields: dict[str, Any]) -> None:
        """Start the hook with ``EXITHAND_*`` variables (never waits for it)."""
        if self.hook is None:
            return
        env = dict(os.environ)
        for k, v in fields.items():
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                env[f"EXITHAND_{k.upper()}"] = str(v)
        env["EXITHAND_EVENT"] = json.dumps(fields)
        try:
            self.hooks.append(subprocess.Popen(self.hook, env=env, stdin=subprocess.DEVNULL,
                                               close_fds=True))
        except OSError as e:
            self.emit("hook_failed", f"hook {self.hook[0]} failed to start: {e.strerror}",
                      error=str(e))

    def reap_hooks(self) -> None:
        for s in self.sinks:
            for text in s.pending():
                self.emit("warning", text, message=text)
        for p in list(self.hooks):
            if p.poll() is not None:
                self.hooks.remove(p)
                if p.returncode:
                    self.emit("hook_failed", f"hook {self.hook[0] if self.hook else '?'} "
                              f"exited with status {p.returncode}", status=p.returncode)


def _syslog_write(data: bytes) -> None:
    """A queued syslog message: the priority digit, then the (escaped) text."""
    syslog.syslog(int(data[:1]), data[1:].decode("utf-8", "backslashreplace"))


def _try_write(fd: int, data: bytes) -> None:
    try:
        fd_writer(fd)(data)
    except OSError:
        pass
