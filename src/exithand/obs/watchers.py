"""``exithand watch``'s observers: each exit the stream yields, counted and/or journaled.

Fed by the public :func:`exithand.watch` stream after its filters, on the command's own thread:
a counter increment (:class:`~.metrics.WatchMetrics`; the HTTP server and the textfile writer
have their own threads) and one datagram (:class:`~.journal.Journal`, bounded wait).
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import exithand

from .exporter import Exporter
from .journal import Journal
from .metrics import WatchMetrics
from .records import exit_record, gap_record


class WatchObservers:
    def __init__(self, metrics: Optional[str], textfile: Optional[str], journal: bool) -> None:
        self.metrics: Optional[WatchMetrics] = None
        self.exporter: Optional[Exporter] = None
        if metrics is not None or textfile is not None:
            self.metrics = WatchMetrics()
            self.exporter = Exporter(self.metrics.registry, metrics, textfile)
        self.want_journal = journal
        self.journal: Optional[Journal] = None

    def start(self) -> None:
        """Bind, write, connect (MetricsError / JournalError); all or nothing."""
        try:
            if self.want_journal:
                self.journal = Journal(identifier="exithand-watch")
            if self.exporter is not None:
                self.exporter.start()
        except BaseException:
            self.close()
            raise

    def observe(self, ev: Any) -> None:
        if self.metrics is not None:
            self.metrics.observe(ev)
        if self.journal is not None:
            self.journal.send(gap_record(ev) if isinstance(ev, exithand.ExitGap)
                              else exit_record(ev))

    def close(self) -> None:
        if self.exporter is not None:
            with contextlib.suppress(Exception):
                self.exporter.close()
            self.exporter = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
