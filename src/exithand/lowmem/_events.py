"""Event output: one line per event (text or ``--json``), optionally to syslog, and hooks.

Text lines go to stdout, so under systemd they reach the journal with the unit's name;
``--syslog`` also sends them to syslog(3) (facility daemon; warnings at LOG_WARNING).  Each JSON
object has ``event`` and ``time`` (CLOCK_MONOTONIC seconds) plus the event's own fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import syslog
import time
from typing import Any, Optional, TextIO

WARNING_EVENTS = frozenset({"warning", "no_candidate", "kill_failed", "hook_failed"})


class Emitter:
    """Writes events; runs the hook after kills and reaps finished hook processes."""

    def __init__(self, json_lines: bool, use_syslog: bool,
                 hook: Optional[tuple[str, ...]], out: TextIO = sys.stdout) -> None:
        self.json = json_lines
        self.syslog = use_syslog
        self.hook = hook
        self.out = out
        self.hooks: list[subprocess.Popen[bytes]] = []
        #: metrics/journal/notify sinks (:mod:`exithand.obs.sinks`): each gets every event
        self.sinks: list[Any] = []
        if use_syslog:
            syslog.openlog("exithand-lowmem", syslog.LOG_PID, syslog.LOG_DAEMON)

    def emit(self, event: str, text: str, **fields: Any) -> None:
        obj = {"event": event, "time": round(time.monotonic(), 6), **fields}
        line = json.dumps(obj) if self.json else f"exithand lowmem: {text}"
        self.out.write(line + "\n")
        self.out.flush()
        if self.syslog:
            prio = syslog.LOG_WARNING if event in WARNING_EVENTS else syslog.LOG_INFO
            syslog.syslog(prio, text)
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
