"""The Prometheus metrics of ``exithand watch`` and ``exithand lowmem`` (``docs/metrics.md``).

Counters are fed by the events the commands already print: :class:`WatchMetrics` by each
:class:`exithand.ProcessExit` / :class:`exithand.ExitGap` the public :func:`exithand.watch`
stream yields (so ``--uid``/``--comm``/``--cgroup``/``--pid``/``--nonzero`` apply to what is
counted), :class:`LowmemMetrics` by the low-memory daemon's events and the figures it decided
on.  Labels have bounded cardinality only: ``how`` (3 values), ``code`` (0-255), ``signal`` (a
signal name, at most 64), ``trigger`` (memory, psi, memory+psi), ``mode`` (3 values) and a
configured PSI trigger's text; never a pid or a command name (those are for the journal).
Nothing is computed at scrape time except ``prometheus_client``'s rendering of what is stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import exithand

from .exporter import prometheus
from .records import how

KILL_TO_FREED_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _registry() -> Any:
    prom = prometheus()
    reg = prom.CollectorRegistry()
    prom.ProcessCollector(registry=reg)  # process_cpu_seconds_total etc. of this daemon
    return reg


class WatchMetrics:
    """``exithand_process_exits_total{how,code,signal}``, ``exithand_events_lost_total``,
    ``exithand_event_gaps_total``."""

    def __init__(self) -> None:
        prom = prometheus()
        self.registry = reg = _registry()
        self.exits = prom.Counter(
            "exithand_process_exits", "Process exits seen (after the watch filters), by how "
            "they ended: exited (code), killed or dumped (signal)", ["how", "code", "signal"],
            registry=reg)
        self.lost = prom.Counter(
            "exithand_events_lost", "Process events the kernel dropped (proc connector receive "
            "buffer overflow; events of any kind, not only exits)", registry=reg)
        self.gaps = prom.Counter(
            "exithand_event_gaps", "Overflows seen (each may have lost events; the count of "
            "lost events is unknown for some)", registry=reg)
        self._children: dict[tuple[str, str, str], Any] = {}

    def observe(self, ev: Any) -> None:
        if isinstance(ev, exithand.ExitGap):
            self.gaps.inc()
            if ev.lost:
                self.lost.inc(ev.lost)
            return
        key = (how(ev), "" if ev.exit_code is None or ev.signal is not None
               else str(ev.exit_code & 0xFF),
               "" if ev.signal is None else str(ev.as_dict()["signal_name"]))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.exits.labels(*key)
        child.inc()


def trigger_kind(trigger: str) -> str:
    """A kill's ``trigger`` text -> ``memory``, ``psi`` or ``memory+psi`` (bounded label)."""
    parts = [p.strip() for p in trigger.split(";")]
    mem = any(p.startswith("available") for p in parts)
    psi = any(p.startswith("psi") for p in parts)
    return "memory+psi" if mem and psi else "psi" if psi else "memory"


class _PsiCollector:
    """PSI stall totals as the daemon last sampled them (counters of an external source)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, tuple[float, float, float]] = {}  # trigger -> total, stall, win

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        total = CounterMetricFamily(
            "exithand_lowmem_psi_stall_seconds", "Stall time of a PSI trigger's file (its "
            "'some' or 'full' total=), as the daemon last sampled it", labels=["trigger"])
        stall = GaugeMetricFamily(
            "exithand_lowmem_psi_threshold_seconds", "A PSI trigger's stall threshold per "
            "window", labels=["trigger"])
        win = GaugeMetricFamily(
            "exithand_lowmem_psi_window_seconds", "A PSI trigger's window", labels=["trigger"])
        with self.lock:
            items = list(self.values.items())
        for name, (t, s, w) in items:
            total.add_metric([name], t)
            stall.add_metric([name], s)
            win.add_metric([name], w)
        yield total
        yield stall
        yield win


class LowmemMetrics:
    """The low-memory daemon's metrics; a sink of its :class:`Emitter` (``event``, ``sample``)."""

    def __init__(self) -> None:
        prom = prometheus()
        self.registry = reg = _registry()
        c, g = prom.Counter, prom.Gauge
        self.kills = c("exithand_lowmem_kills", "Victims signalled, by what fired and the kill "
                       "mode", ["trigger", "mode"], registry=reg)
        self.would = c("exithand_lowmem_would_kills", "Victims chosen under --dry-run (never "
                       "signalled)", ["trigger"], registry=reg)
        self.failed = c("exithand_lowmem_kill_failures", "Kills that failed (gone since "
                        "chosen, not ours to signal, a tree/cgroup kill error)", registry=reg)
        self.no_candidate = c("exithand_lowmem_no_candidate", "Triggers that fired with no "
                              "process allowed to be killed", registry=reg)
        self.stuck = c("exithand_lowmem_stuck", "Victims whose memory had not come back after "
                       "stuck-after (no longer credited)", registry=reg)
        self.freed_bytes = c("exithand_lowmem_freed_bytes", "Memory (RSS + swap at the choice) "
                             "of victims whose memory came back", registry=reg)
        self.kill_to_freed = prom.Histogram(
            "exithand_lowmem_kill_to_freed_seconds", "From the kill to the victim's memory "
            "being back (its death, or process_mrelease done)", buckets=KILL_TO_FREED_BUCKETS,
            registry=reg)
        self.overflows = c("exithand_lowmem_table_overflows", "Process table overflows (events "
                           "lost; the next decision listed /proc)", registry=reg)
        self.available = g("exithand_lowmem_memory_available_bytes", "Available memory at the "
                           "daemon's last reading (MemAvailable, or the memory cgroup's)",
                           registry=reg)
        self.total = g("exithand_lowmem_memory_total_bytes", "Total memory of the measured "
                       "source", registry=reg)
        self.swap_free = g("exithand_lowmem_swap_free_bytes", "Free swap at the last reading",
                           registry=reg)
        self.credit = g("exithand_lowmem_credit_bytes", "Memory credited for past kills (on "
                        "its way back) at the last decision", registry=reg)
        self.psi = _PsiCollector()
        reg.register(self.psi)

    def sample(self, **figures: Any) -> None:
        """Figures the daemon just read: available, total, swap_free, credit; psi =
        [(trigger text, total µs, stall s, window s)]."""
        if "available" in figures:
            self.available.set(figures["available"])
        if "total" in figures:
            self.total.set(figures["total"])
        if "swap_free" in figures:
            self.swap_free.set(figures["swap_free"])
        if "credit" in figures:
            self.credit.set(figures["credit"])
        psi = figures.get("psi")
        if psi:
            with self.psi.lock:
                for name, total_us, stall, window in psi:
                    self.psi.values[name] = (total_us / 1e6, stall, window)

    def event(self, event: str, text: str, fields: dict[str, Any]) -> None:
        if event == "kill":
            self.kills.labels(trigger_kind(str(fields.get("trigger", ""))),
                              str(fields.get("kill_mode", "process"))).inc()
            self.sample(**{k: fields[k] for k in ("available", "credit") if k in fields})
        elif event == "would_kill":
            self.would.labels(trigger_kind(str(fields.get("trigger", "")))).inc()
        elif event == "kill_failed":
            self.failed.inc()
        elif event == "no_candidate":
            self.no_candidate.inc()
        elif event == "stuck":
            self.stuck.inc()
        elif event == "freed":
            self.freed_bytes.inc(int(fields.get("memory_bytes") or 0))
            self.kill_to_freed.observe(float(fields.get("seconds") or 0.0))
        elif event == "rescan":
            self.overflows.inc(int(fields.get("overflows") or 1))
        elif event == "report":
            self.sample(**{k: fields[k] for k in ("available", "total", "swap_free")
                           if k in fields})
