"""The daemon's main loop: triggers -> ledger -> victim -> kill, never blocking on a death.

One ``epoll`` holds the PSI trigger fds (``EPOLLPRI``), every dying victim's pidfd
(``EPOLLIN``: readable when its whole thread group is dead, Linux 5.3) and a wake-up pipe (signals,
the reaper thread).  The loop wakes on those or on a timer (``interval`` for the memory floors,
a quarter window for PSI samples), and decides only when :class:`Ledger.waiting` allows it.

Killing a process (``kill-mode process``; the kill modes live in :mod:`._killmodes`):

1. The victim is pinned (:func:`._victims.pin`).
2. SIGKILL (or SIGTERM, then SIGKILL after ``grace``) through the pidfd; *after* the SIGKILL,
   while its pidfd says it is alive, it is boosted: nice -20 and every allowed CPU for each of
   its threads (lmkd does the same before its ``process_mrelease``), so a victim short of CPU
   cannot hold its memory.  Only after: a victim boosted before its SIGTERM could fork a child
   that inherits nice -20 and survives, and a daemon that crashed between the boost and the
   kill would leave the victim at -20.  With SIGKILL pending, the kernel refuses the victim's
   forks (``fatal_signal_pending`` in ``copy_process``) and every boosted thread is dying, so
   no path leaves a boosted survivor and nothing needs restoring at the next start.  The pidfd
   check closes the reuse race except for a death *and* reap *and* reuse between the check and
   the ``setpriority``; the worst outcome of that is a wrongly niced process, never a signal.
3. ``process_mrelease`` on the reaper thread (``ExitHandle.release_memory``, Linux 5.15): the
   victim's memory is unmapped on our CPU even if the victim is frozen or starved.  Success means
   the memory is freed; the victim may still live (a frozen cgroup), and it is never signalled
   again (:meth:`Ledger.exclude`).
4. The loop carries on: the pidfd reports the death, the ledger credits what is still on its way.

Candidates come from an :class:`exithand.ProcessTable` (proc connector fork/exit events) where
the kernel lets us subscribe and no ``scope`` is set: a decision then reads only the listed
processes' own ``/proc`` files and never lists ``/proc``.  Its socket is drained at every
wake-up of the loop (at least every tick), *not* kept in the ``epoll``: a fork-heavy machine
would otherwise wake the daemon at every fork, and each wake-up samples the PSI files.  Its
32 MiB receive buffer holds about 30,000 events between two ticks; more is an overflow, which
costs one listing.
Where the connector is unavailable (not root, a container, ``EXITHAND_DISABLE=connector``) each
decision lists ``/proc`` (a ``warning`` event says why at the start); after an overflow
(events lost) the next decision lists it once (a ``rescan`` event).  Under ``scope`` the
``cgroup.procs`` files are read instead, as before: no event tells cgroup moves.

``kill-mode tree`` and ``cgroup`` run :func:`exithand.kill_and_wait` (``tree=True``) or
:func:`exithand.kill_cgroup` on a worker thread, with ``release_memory=True``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import select
import signal
import threading
import time
from typing import Any, Optional, Union

import exithand

from ._config import Config
from ._events import Emitter
from ._killmodes import Killer
from ._ledger import KillRecord, Ledger
from ._meminfo import CgroupMemory, Memory, SystemMemory, pcp_bytes
from ._psi import PsiUnavailable, PsiWatch
from ._units import Amount, SettingError
from ._victims import Candidate, candidates, pin

MIB = 1048576
MCL_CURRENT, MCL_FUTURE = 1, 2


class SetupError(Exception):
    """The environment cannot support the configuration (e.g. no PSI): exit 1."""


def _mib(n: int) -> str:
    return f"{n / MIB:.0f} MiB"


class Daemon:
    """Build with a checked :class:`Config`; :meth:`setup` then :meth:`run`."""

    def __init__(self, cfg: Config, out: Emitter) -> None:
        self.cfg = cfg
        self.out = out
        self.ledger = Ledger(cfg.kill_timeout, cfg.hold_off, cfg.credit_window,
                             cfg.stuck_after, cfg.grace or 0.0)
        self.watches: list[PsiWatch] = []
        self.source: Union[SystemMemory, CgroupMemory] = SystemMemory()
        self.use_pcp = True
        self.mem_min: Optional[Amount] = cfg.mem_min
        self.epoll: Optional[select.epoll] = None
        self.wake_r = self.wake_w = -1
        self.killer = Killer(cfg, self.ledger, out, self._wake)
        self.jobs = self.killer.jobs
        self.results = self.killer.results
        self.term_deadline = self.killer.term_deadline
        self.by_fd: dict[int, KillRecord] = {}
        self.kills = 0
        self.stop_signal: Optional[int] = None
        self.quiet_until = -1.0
        self.warned_no_candidate = False
        self.reported: set[int] = set()
        self.stuck: set[int] = set()  # id(record): the "stuck" event was emitted
        self.started = time.monotonic()
        self.warnings: list[str] = []
        self.table: Optional[exithand.ProcessTable] = None
        self.table_gaps = 0

    # ----- setup: everything or nothing -------------------------------------------------------

    def setup(self) -> None:
        """Open every source and apply hygiene; raises SettingError (2) or SetupError (1)."""
        cfg = self.cfg
        try:
            if cfg.memory_cgroup:
                try:
                    self.source = CgroupMemory(cfg.memory_cgroup)
                except ValueError as e:
                    raise SettingError(f"memory-cgroup: {e}") from None
                self.use_pcp = False
            self._check_floor(self.source.read())
            now = time.monotonic()
            for spec in cfg.psi:
                try:
                    w = PsiWatch(spec, now)
                except PsiUnavailable as e:
                    if not cfg.psi_optional:
                        raise SetupError(f"{e} (set psi-optional to run on the memory floors "
                                         "alone)") from None
                    self.warnings.append(f"{e}; running without this trigger")
                    continue
                self.watches.append(w)
                if w.polled:
                    self.warnings.append(f"psi {spec}: {w.polled_reason}; polling its totals "
                                         "instead of a kernel trigger")
            if cfg.psi and not self.watches and self.mem_min is None:
                self.mem_min = Amount(percent=10.0)
                self.warnings.append("no PSI trigger is usable: falling back to mem-min 10%")
            if self.use_pcp:
                try:
                    pcp_bytes()
                except OSError as e:
                    self.use_pcp = False
                    self.warnings.append(f"/proc/zoneinfo unreadable ({e.strerror}): "
                                         "per-CPU free lists are not credited")
            self.epoll = select.epoll()
            self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self.epoll.register(self.wake_r, select.EPOLLIN)
            for w in self.watches:
                if not w.polled:
                    self.epoll.register(w.fd, select.EPOLLPRI)
            self._open_table()
        except BaseException:
            self.close()
            raise
        self._hygiene()

    def _check_floor(self, mem: Memory) -> None:
        """Refuse a floor that the memory can never rise above: it would kill at every check."""
        if self.mem_min is not None and self.mem_min.resolve(mem.total) >= mem.total:
            raise SettingError(f"mem-min: {self.mem_min} is not below the {_mib(mem.total)} "
                               f"of {self.source.name}: every check would kill")

    def _open_table(self) -> None:
        if self.cfg.policy.scope:
            return  # cgroup.procs is read per decision: no event tells cgroup moves
        try:
            self.table = exithand.ProcessTable()
        except exithand.BackendUnavailable as e:
            self.warnings.append(f"no process table ({e}): each decision lists /proc")
            return

    def _hygiene(self) -> None:
        if self.cfg.mlockall:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
                self.warnings.append(f"mlockall failed: {os.strerror(ctypes.get_errno())}")
        if self.cfg.protect_self:
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("-1000")
            except OSError as e:
                self.warnings.append(f"cannot set our oom_score_adj to -1000 ({e.strerror}; "
                                     "lowering it needs CAP_SYS_RESOURCE)")

    def close(self) -> None:
        self.killer.stop()
        for r in self.ledger.records:
            if r.handle is not None and not r.handle.closed and r.finished:
                r.handle.close()
        for w in self.watches:
            with contextlib.suppress(OSError):
                w.close()
        self.watches = []
        if self.epoll is not None:
            self.epoll.close()
            self.epoll = None
        if self.table is not None:
            self.table.close()
            self.table = None
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                os.close(fd)
        self.wake_r = self.wake_w = -1

    # ----- the loop ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"s")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"r")

    def run(self) -> int:
        """Run until a signal, ``max-kills`` or ``duration``; returns the exit code."""
        cfg = self.cfg
        assert self.epoll is not None
        old = {s: signal.signal(s, self._on_signal)
               for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        reaper = threading.Thread(target=self.killer.reaper, name="exithand-lowmem-reaper",
                                  daemon=True)
        reaper.start()
        try:
            self._start_event()
            floors_tick = cfg.interval if self.mem_min is not None else 1.0
            psi_tick = min((w.spec.window / 4 for w in self.watches), default=1.0)
            tick = min(floors_tick, psi_tick)
            next_tick = next_report = time.monotonic()
            end = self.started + cfg.duration if cfg.duration > 0 else None
            while self.stop_signal is None:
                now = time.monotonic()
                busy = self.ledger.dying() or self.term_deadline
                wake_at = min(next_tick if not busy else min(next_tick, now + cfg.interval),
                              next_report if cfg.report_interval > 0 else next_tick,
                              end if end is not None else next_tick)
                events = self.epoll.poll(max(0.0, wake_at - now))
                now = time.monotonic()
                if self.table is not None:
                    self.table.update()  # not in the epoll: see the module doc
                hint = self._events(events, now)
                self._results(now)
                for w in self.watches:
                    w.sample(now)
                if self.out.sinks and self.watches:
                    self.out.sample(psi=[(str(w.spec), w.samples[-1][1], w.spec.stall,
                                          w.spec.window) for w in self.watches])
                if end is not None and now >= end:
                    break
                self.killer.escalate(now)
                if hint or now >= next_tick or busy:
                    self.step(now)
                    if now >= next_tick:
                        next_tick = now + tick
                if cfg.report_interval > 0 and now >= next_report:
                    self._report(now)
                    next_report = now + cfg.report_interval
                self.out.reap_hooks()
                if cfg.max_kills and self.kills >= cfg.max_kills and self._settled(now):
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        dropped = self.out.dropped
        self.out.emit("stop", f"stopping after {self.kills} kill(s)"
                      + (f", {dropped} event line(s) dropped" if dropped else ""),
                      kills=self.kills, signal=self.stop_signal, dropped=dropped)
        if self.stop_signal == signal.SIGINT:
            return 130
        return 0

    def _start_event(self) -> None:
        cfg = self.cfg
        for w in self.warnings:
            self.out.emit("warning", w, message=w)
        triggers = [str(w.spec) for w in self.watches]
        if self.mem_min is not None:
            triggers.append(f"available < {self.mem_min}" + self._swap_words())
        self.out.emit("start", f"watching {self.source.name}: {'; '.join(triggers)}"
                      + (" [dry run]" if cfg.dry_run else ""),
                      triggers=triggers, source=self.source.name, dry_run=cfg.dry_run,
                      pid=os.getpid(), kill_mode=cfg.kill_mode,
                      candidates_from=self._source_name(),
                      psi_polled=[w.polled for w in self.watches])

    def _swap_words(self) -> str:
        """How the swap floor reads at start: said plainly where there is no swap (22.4)."""
        if not isinstance(self.source, SystemMemory):
            return " (swap-min applies to the system only, not to a cgroup)"
        if self.source.read().swap_total == 0:
            return " (no swap on this machine: swap-min does not apply)"
        return f" (and free swap < {self.cfg.swap_min})"

    def _events(self, events: list[tuple[int, int]], now: float) -> bool:
        hint = False
        for fd, ev in events:
            if fd == self.wake_r:
                with contextlib.suppress(OSError):
                    os.read(self.wake_r, 4096)
            elif fd in self.by_fd:
                r = self.by_fd.pop(fd)
                assert self.epoll is not None
                self.epoll.unregister(fd)
                self.ledger.mark_dead(r, now)
                self._freed_event(r, now, "dead")
            else:
                if ev & select.EPOLLERR:
                    w = next(w for w in self.watches if w.fd == fd)
                    raise SetupError(f"the PSI source {w.spec.path} went away")
                hint = True
        return hint

    def _forget(self, h: exithand.ExitHandle) -> None:
        """Take a handle's pidfd out of the epoll before it is closed (dead seen elsewhere)."""
        fd = h.fileno()
        if self.by_fd.pop(fd, None) is not None and self.epoll is not None:
            self.epoll.unregister(fd)

    def _settled(self, now: float) -> bool:
        """Nothing left to wait for before stopping: no victim blocks decisions any more
        (:meth:`Ledger.blocking`) and the reaper thread has no job queued."""
        return not any(self.ledger.blocking(r, now) for r in self.ledger.records) \
            and self.jobs.empty()

    # ----- decisions --------------------------------------------------------------------------

    def step(self, now: float) -> None:
        """One decision: refresh the ledger, then kill if a trigger fires with credit counted."""
        led = self.ledger
        led.refresh(now)
        for r in led.records:
            if r.freed_at is not None:
                self._freed_event(r, now, "released")
            elif now >= r.t_kill + led.grace + led.stuck_after:
                self._stuck_event(r)
        for r in led.expired(now):
            if r.handle is not None:
                self._forget(r.handle)
                r.handle.close()
        if self.cfg.max_kills and self.kills >= self.cfg.max_kills:
            return
        if led.waiting(now) is not None or now < self.quiet_until:
            return
        mem = self.source.read()
        pcp = pcp_bytes() if self.use_pcp else 0
        credit = led.credit(now, pcp, mem.anon, mem.available)
        self.out.sample(available=mem.available, total=mem.total, swap_free=mem.swap_free,
                        credit=credit)
        reasons = self._triggers(now, mem, credit)
        if not reasons:
            self.warned_no_candidate = False
            return
        self._kill(now, reasons, mem, credit, pcp)

    def _triggers(self, now: float, mem: Memory, credit: int) -> list[str]:
        reasons = []
        if self.mem_min is not None:
            floor = self.mem_min.resolve(mem.total)
            seen = mem.available + credit
            swap_low = mem.swap_total == 0 or mem.swap_free < self.cfg.swap_min.resolve(
                mem.swap_total)
            if seen < floor and swap_low:
                reasons.append(f"available {_mib(mem.available)} + credit {_mib(credit)} < "
                               f"{_mib(floor)}" + ("" if mem.swap_total == 0 else
                                                   f", swap free {_mib(mem.swap_free)}"))
        since = self.ledger.last_freed
        for w in self.watches:
            grown = w.stalled(now, since)
            if grown is not None:
                reasons.append(f"psi {w.spec}: {grown / 1000:.0f} ms stalled")
        return reasons

    def _source_name(self) -> str:
        return "table" if self.table is not None else "scope" if self.cfg.policy.scope \
            else "scan"

    def _candidates(self, exclude: frozenset[tuple[int, int]]) -> tuple[list[Candidate], str]:
        """The candidates, and where their pids came from: "table", "rescan" (the table after
        an overflow), "scan" (no table) or "scope"."""
        t = self.table
        if t is None:
            return candidates(self.cfg.policy, exclude), self._source_name()
        t.update()
        source = "table"
        if t.stale:
            source = "rescan"
            lost = t.gaps - self.table_gaps
            self.table_gaps = t.gaps
            self.out.emit("rescan", f"process events were lost ({lost} overflow(s)): "
                          "listing /proc again", overflows=lost)
        return candidates(self.cfg.policy, exclude, t.pids(), t.discard), source

    def _kill(self, now: float, reasons: list[str], mem: Memory, credit: int, pcp: int) -> None:
        cfg = self.cfg
        exclude = self.ledger.exclude()
        picked: Optional[tuple[exithand.ExitHandle, Candidate]] = None
        found, source = self._candidates(exclude)
        for c in found:
            picked = pin(c, cfg.policy, exclude)
            if picked is not None:
                break
        trig = "; ".join(reasons)
        if picked is None:
            if not self.warned_no_candidate:
                self.out.emit("no_candidate", f"{trig}, but no process may be killed",
                              trigger=trig, candidates_from=source)
                self.warned_no_candidate = True
            self.quiet_until = now + cfg.hold_off
            return
        h, v = picked
        fields: dict[str, Any] = {**v.as_dict(), "trigger": trig, "available": mem.available,
                                  "credit": credit, "pcp": pcp, "candidates_from": source}
        if cfg.dry_run:
            h.close()
            self.out.emit("would_kill", f"would kill {v.pid} ({v.comm}), score {v.score}, "
                          f"{_mib(v.memory)}: {trig}", **fields)
            r = KillRecord(v, None, now, pcp, trig, finished=True)
            self.ledger.add(r)
            self.ledger.mark_dead(r, now)
            return
        r = KillRecord(v, h, now, pcp, trig, anon0=mem.anon, avail0=mem.available)
        self.ledger.add(r)
        self.kills += 1
        self.warned_no_candidate = False
        mode = cfg.kill_mode
        e = self.killer.start(r, fields, now)  # the kill modes: ._killmodes
        if e is not None:
            self.out.emit("kill_failed", f"cannot signal {v.pid} ({v.comm}): {e}",
                          **fields, error=str(e))
            self.reported.add(id(r))
            return
        assert self.epoll is not None
        self.by_fd[h.fileno()] = r
        self.epoll.register(h.fileno(), select.EPOLLIN)
        self.out.emit("kill", f"killing {v.pid} ({v.comm}), score {v.score}, "
                      f"{_mib(v.memory)}: {trig}", **fields, kill_mode=mode)

    def _results(self, now: float) -> None:
        while True:
            try:
                r, kind, res = self.results.get_nowait()
            except queue.Empty:
                return
            r.finished = True
            r.result = res
            if kind == "mrelease":
                outcome, err, secs = res
                if outcome in ("released", "already_released"):
                    r.remaining = 0
                    self.ledger._freed(r, now)
                self.out.emit("mrelease", f"process_mrelease {r.victim.pid}: {outcome}"
                              + (f" ({err})" if err else "") + f" in {secs:.3f} s",
                              pid=r.victim.pid, mrelease=outcome, error=err,
                              seconds=round(secs, 6))
                self._freed_event(r, now, "released")
            elif isinstance(res, Exception):
                self.out.emit("kill_failed", f"{kind} kill of {r.victim.pid} failed: {res}",
                              pid=r.victim.pid, error=str(res))
            else:
                items = res if isinstance(res, list) else list(getattr(res, "processes", []))
                self.out.emit("killed", f"{kind} kill of {r.victim.pid}: {len(items)} "
                              "process(es) ended", pid=r.victim.pid, kill_mode=kind,
                              processes=[x.as_dict() for x in items])

    def _freed_event(self, r: KillRecord, now: float, how: str) -> None:
        if r.freed_at is None or id(r) in self.reported or r.handle is None:
            return
        self.reported.add(id(r))
        fields = {**r.victim.as_dict(), "seconds": round(r.freed_at - r.t_kill, 6), "how": how}
        self.out.emit("freed", f"{r.victim.pid} ({r.victim.comm}): memory back after "
                      f"{r.freed_at - r.t_kill:.3f} s ({how})", **fields)
        self.out.run_hook({**fields, "trigger": r.trigger})

    def _stuck_event(self, r: KillRecord) -> None:
        """Once per victim whose memory is not back after stuck-after (no longer credited)."""
        if id(r) in self.reported or id(r) in self.stuck or r.handle is None:
            return
        self.stuck.add(id(r))
        self.out.emit("stuck", f"{r.victim.pid} ({r.victim.comm}): memory not back after "
                      f"stuck-after ({self.cfg.stuck_after:g} s); no longer credited",
                      **r.victim.as_dict(), trigger=r.trigger)

    def _report(self, now: float) -> None:
        mem = self.source.read()
        pcp = pcp_bytes() if self.use_pcp else 0
        self.out.emit("report", f"available {_mib(mem.available)} of {_mib(mem.total)}, "
                      f"swap free {_mib(mem.swap_free)}, per-CPU lists {_mib(pcp)}, "
                      f"{self.kills} kill(s), {len(self.ledger.dying())} dying",
                      available=mem.available, total=mem.total, swap_free=mem.swap_free,
                      pcp=pcp, kills=self.kills, uptime=round(now - self.started, 3))


def run(cfg: Config, out: Emitter) -> int:
    """Set up (all or nothing), then run; raises SettingError/SetupError before the start."""
    d = Daemon(cfg, out)
    d.setup()
    try:
        return d.run()
    finally:
        d.close()
