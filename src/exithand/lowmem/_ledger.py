"""The "kill again?" ledger: what past kills will still free, and when to decide again.

Why a kill needs credit (measured on Linux 6.18, see docs/benchmarks.md):

* A SIGKILLed victim frees its memory only when it runs its exit (or when ``process_mrelease``
  unmaps it for it).  Until then its RSS + swap is memory on its way back: credited at its
  *current* value, read through the pin (the figure shrinks as ``process_mrelease`` works).
* Freed pages land on per-CPU free lists first, which ``MemAvailable`` does not count, for
  seconds.  After a kill, what was freed but does not show yet is credited, up to the victims'
  sizes, for ``credit_window`` (10 s: a 2 s window measurably was not enough), measured two
  ways and the larger taken: the growth of those lists since the kill (``pcp``), and the drop of
  the system's ``AnonPages`` since the kill less the rise of ``MemAvailable`` since the kill
  (``unseen``: memory unmapped but not yet available; anonymous memory that another process
  allocates meanwhile lowers both figures alike and cancels out, so a runaway allocator is not
  mistaken for memory on its way back).
* Pressure counters lag: after a victim's memory is freed the daemon holds off ``hold_off``
  seconds and then re-checks every trigger from scratch; PSI stall from before the free never
  counts (:meth:`PsiWatch.stalled` takes ``since``).

A victim that is dying blocks decisions for ``kill_timeout``; past it, decisions resume (with
the victim's remaining memory credited) so one stuck victim cannot disable the daemon, but it is
never signalled again: it stays excluded from the candidates for as long as it lives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import exithand

from ._victims import Candidate

FREED_FRACTION = 0.05  # a victim at or below 5% of its size at the kill counts as freed


def live_memory(h: exithand.ExitHandle) -> Optional[int]:
    """RSS + swap of the pinned process now; ``None`` when dead (then the figure could belong
    to a process that reused the number: it is read first, trusted only if still alive after)."""
    if not h.is_alive():
        return None
    total, found = 0, False
    try:
        with open(f"/proc/{h.pid}/status", "rb") as f:
            for line in f:
                if line.startswith((b"VmRSS:", b"VmSwap:")):
                    total += int(line.split()[1]) * 1024
                    found = True
    except OSError:
        return None
    if not h.is_alive():
        return None
    return total if found else 0


@dataclass
class KillRecord:
    """One kill, from the signal until its credit window is over."""

    victim: Candidate
    handle: Optional[exithand.ExitHandle]  # None for a dry run
    t_kill: float
    pcp0: int
    trigger: str
    anon0: int = 0  # system AnonPages at the kill (0: not measured, e.g. a cgroup source)
    avail0: int = 0  # available memory at the kill
    remaining: int = 0
    dead_at: Optional[float] = None
    freed_at: Optional[float] = None
    finished: bool = False  # the reaper thread is done with the handle
    result: Any = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.victim.pid, self.victim.start_time)


class Ledger:
    """Kills in flight and recently freed, and the decision rules built on them."""

    def __init__(self, kill_timeout: float, hold_off: float, credit_window: float,
                 stuck_after: float, grace: float = 0.0) -> None:
        self.kill_timeout = kill_timeout
        self.hold_off = hold_off
        self.credit_window = credit_window
        self.stuck_after = stuck_after
        self.grace = grace
        self.records: list[KillRecord] = []
        self.last_freed = -math.inf

    def add(self, r: KillRecord) -> None:
        r.remaining = r.victim.memory
        self.records.append(r)

    def exclude(self) -> frozenset[tuple[int, int]]:
        """Victims we signalled that may still be alive: never candidates again."""
        return frozenset(r.key for r in self.records if r.dead_at is None)

    def mark_dead(self, r: KillRecord, now: float) -> None:
        if r.dead_at is None:
            r.dead_at = now
            r.remaining = 0
            self._freed(r, now)

    def _freed(self, r: KillRecord, now: float) -> None:
        if r.freed_at is None:
            r.freed_at = now
            self.last_freed = max(self.last_freed, now)

    def refresh(self, now: float) -> None:
        """Re-read the remaining memory of victims still alive; note the ones now freed."""
        for r in self.records:
            if r.dead_at is not None or r.handle is None or r.handle.closed:
                continue
            mem = live_memory(r.handle)
            if mem is None:
                self.mark_dead(r, now)
                continue
            r.remaining = mem
            if mem <= r.victim.memory * FREED_FRACTION:
                self._freed(r, now)  # e.g. process_mrelease on a frozen victim

    def past_deadline(self, r: KillRecord, now: float, limit: float) -> bool:
        """Is ``now`` past ``r``'s deadline ``t_kill + grace + limit``?  The one deadline rule:
        a victim first has ``grace`` to take its SIGTERM, then ``limit``: ``kill_timeout``
        while it blocks decisions (:meth:`waiting`, and the daemon's settling before it stops),
        ``stuck_after`` while what it has left is credited and its record kept
        (:meth:`credit`, :meth:`expired`)."""
        return now >= r.t_kill + self.grace + limit

    def blocking(self, r: KillRecord, now: float) -> bool:
        """Does ``r`` still block decisions (not freed, within ``kill_timeout``)?"""
        return r.freed_at is None and not self.past_deadline(r, now, self.kill_timeout)

    def waiting(self, now: float) -> Optional[str]:
        """Why no decision may be taken now (``None``: decide)."""
        for r in self.records:
            if self.blocking(r, now):
                return f"victim {r.victim.pid} ({r.victim.comm}) is dying"
        if now < self.last_freed + self.hold_off:
            return "holding off after the last kill"
        return None

    def credit(self, now: float, pcp_now: int, anon_now: int = 0, avail_now: int = 0) -> int:
        """Bytes that past kills freed or will free but the memory figures do not show yet.

        ``pcp_now``: bytes on the per-CPU free lists now; ``anon_now``/``avail_now``: the
        system's AnonPages and available memory now (0: not measured).
        """
        credit = 0
        recent = []
        for r in self.records:
            if r.freed_at is None:
                if not self.past_deadline(r, now, self.stuck_after):
                    credit += r.remaining
            elif now < r.freed_at + self.credit_window:
                recent.append(r)
        if recent:
            first = min(recent, key=lambda r: r.t_kill)
            pcp = pcp_now - min(r.pcp0 for r in recent)
            unseen = 0
            if first.anon0 and anon_now:
                unseen = (first.anon0 - anon_now) - (avail_now - first.avail0)
            credit += max(0, min(max(pcp, unseen), sum(r.victim.memory for r in recent)))
        return credit

    def expired(self, now: float) -> list[KillRecord]:
        """Remove and return records that need nothing more (dead or given up, credited,
        reaper done); the caller closes their handles."""
        keep, done = [], []
        for r in self.records:
            over = (r.freed_at is not None and now >= r.freed_at + self.credit_window) or (
                r.freed_at is None and self.past_deadline(r, now, self.stuck_after))
            if over and r.finished and (r.dead_at is not None or r.handle is None):
                done.append(r)
            else:
                keep.append(r)
        self.records = keep
        return done

    def dying(self) -> list[KillRecord]:
        return [r for r in self.records if r.dead_at is None and r.handle is not None]
