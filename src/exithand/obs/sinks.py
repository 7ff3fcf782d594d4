"""The low-memory daemon's event sinks: metrics, journal, notifications.

A sink receives every event the daemon emits (``event(name, text, fields)``, on the daemon's
thread, after the line is printed), the figures it decided on (``sample(**figures)``), may hand
back warnings to print (``pending()``) and is closed at the end.  Each sink is cheap on the
daemon's thread: a counter increment, one non-blocking-ish datagram, or a queue put; the kill
is always sent before its ``kill`` event exists, so no sink can delay it.  A sink that raises is
caught by the emitter and reported once; the daemon carries on.

:func:`open_sinks` builds and starts them all, or none: a bad value raises
:class:`~.exporter.MetricsError` (``exit_code`` 2), an environment that cannot work raises
MetricsError/JournalError/NotifyError (exit 1).
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

from .exporter import Exporter
from .journal import Journal
from .metrics import LowmemMetrics
from .notify import Notifier, kill_text
from .records import lowmem_record


class MetricsSink:
    def __init__(self, listen: Optional[str], textfile: Optional[str]) -> None:
        self.metrics = LowmemMetrics()
        self.exporter = Exporter(self.metrics.registry, listen, textfile)

    def start(self) -> None:
        self.exporter.start()

    def event(self, event: str, text: str, fields: dict[str, Any]) -> None:
        self.metrics.event(event, text, fields)

    def sample(self, **figures: Any) -> None:
        self.metrics.sample(**figures)

    def pending(self) -> list[str]:
        return []

    def close(self) -> None:
        self.exporter.close()


class JournalSink:
    def __init__(self) -> None:
        self.journal: Optional[Journal] = None
        self.warned = 0

    def start(self) -> None:
        self.journal = Journal(identifier="exithand-lowmem")

    def event(self, event: str, text: str, fields: dict[str, Any]) -> None:
        assert self.journal is not None
        self.journal.send(lowmem_record(event, text, fields))

    def sample(self, **figures: Any) -> None:
        pass

    def pending(self) -> list[str]:
        if self.journal is None or self.journal.dropped == self.warned:
            return []
        n, self.warned = self.journal.dropped - self.warned, self.journal.dropped
        return [f"journal: {n} record(s) dropped (journald did not take them in time)"]

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


class NotifySink:
    """Notifies once per victim: when its memory is back (``freed``) or given up (``stuck``)."""

    def __init__(self, buses: Optional[list[str]]) -> None:
        self.notifier = Notifier(buses)
        self.kills: dict[int, dict[str, Any]] = {}

    def start(self) -> None:
        self.notifier.start()

    def event(self, event: str, text: str, fields: dict[str, Any]) -> None:
        pid = fields.get("pid")
        if not isinstance(pid, int):
            return
        if event == "kill":
            self.kills[pid] = fields
            if len(self.kills) > 64:  # victims whose freeing was never reported
                self.kills.pop(next(iter(self.kills)))
        elif event in ("freed", "stuck") and pid in self.kills:
            kill = self.kills.pop(pid)
            summary, body = kill_text(kill, fields if event == "freed" else None)
            uid = kill.get("uid")
            self.notifier.submit(uid if isinstance(uid, int) else None, summary, body)

    def sample(self, **figures: Any) -> None:
        pass

    def pending(self) -> list[str]:
        return self.notifier.pending()

    def close(self) -> None:
        self.notifier.close(wait=self.notifier.timeout)


def open_sinks(metrics: Optional[str], textfile: Optional[str], journal: bool, notify: bool,
               notify_buses: Optional[list[str]]) -> list[Any]:
    """Build and start the sinks asked for (all or none: a failure closes those started)."""
    sinks: list[Any] = []
    if metrics is not None or textfile is not None:
        sinks.append(MetricsSink(metrics, textfile))
    if journal:
        sinks.append(JournalSink())
    if notify or notify_buses:
        sinks.append(NotifySink(notify_buses))
    started: list[Any] = []
    try:
        for s in sinks:
            s.start()
            started.append(s)
    except BaseException:
        close_sinks(started)
        raise
    return sinks


def close_sinks(sinks: list[Any]) -> None:
    for s in sinks:
        with contextlib.suppress(Exception):
            s.close()
