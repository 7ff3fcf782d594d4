"""The three kill modes of the low-memory daemon, each in one place: how a chosen victim dies.

* ``process``: the pinned victim is signalled through its pidfd: SIGKILL, or SIGTERM and
  SIGKILL after ``grace`` (:meth:`Killer.escalate`); only once SIGKILL is pending is it boosted
  (:func:`._reaper.boost`: nice -20 and every allowed CPU for each thread, while its pidfd says
  it is alive), so no boosted process can survive (a child forked on SIGTERM, a daemon crash
  between boost and kill: see :mod:`._daemon`).  A SIGKILLed
  victim is handed to the reaper thread for ``process_mrelease`` (Linux 5.15: its memory is
  unmapped on our CPU even if it is frozen or starved); success frees the memory though the
  victim may still live, and it is never signalled again (the ledger excludes it).
* ``tree``: :func:`exithand.kill_and_wait` with ``tree=True`` on a worker thread.
* ``cgroup``: :func:`exithand.kill_cgroup` on the victim's cgroup v2 (``cgroup.kill``) on a
  worker thread; a victim in the root cgroup, or a cgroup the library refuses before signalling
  anything (not v2, the root, one that holds the daemon), is killed alone as in ``tree``
  without the tree.

Nothing here blocks the daemon's loop: the threads post ``(record, kind, result)`` on
:attr:`Killer.results` and wake the loop, which reads them.  The pidfd signal closes the pid
reuse race (the pin was taken while the victim was a candidate).
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from typing import Any, Callable, Optional

import exithand

from ._config import Config
from ._events import Emitter
from ._ledger import KillRecord, Ledger
from ._reaper import boost, release, v2_cgroup


class Killer:
    """Kills victims as ``cfg.kill_mode`` says; results come back on :attr:`results`."""

    def __init__(self, cfg: Config, ledger: Ledger, out: Emitter,
                 wake: Callable[[], None]) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.out = out
        self.wake = wake
        self.jobs: queue.Queue[Optional[KillRecord]] = queue.Queue()  # for the reaper thread
        self.results: queue.Queue[tuple[KillRecord, str, Any]] = queue.Queue()
        self.term_deadline: dict[int, float] = {}  # id(record) -> when to escalate

    def start(self, r: KillRecord, fields: dict[str, Any], now: float
              ) -> Optional[exithand.Error]:
        """Kill ``r``'s victim (``r.handle`` pins it) as the kill mode says, adding what the
        kill event reports to ``fields``; the error when it could not even be signalled (then
        the record is finished and marked dead: gone since the pin, or not ours to kill)."""
        if self.cfg.kill_mode == "process":
            return self._process(r, fields, now)
        self._start_worker(r, fields)
        return None

    def _process(self, r: KillRecord, fields: dict[str, Any], now: float
                 ) -> Optional[exithand.Error]:
        cfg = self.cfg
        h = r.handle
        assert h is not None
        err: Optional[str] = None
        sig = signal.SIGTERM if cfg.grace else signal.SIGKILL
        try:
            h.send_signal(sig)
            if sig == signal.SIGKILL:
                err = boost(h)  # only now: SIGKILL is pending
        except exithand.Error as e:  # gone since the pin, or not ours to kill
            r.finished = True
            self.ledger.mark_dead(r, now)
            return e
        fields.update(boost_error=err, signal=signal.Signals(sig).name)
        if sig == signal.SIGKILL and cfg.mrelease:
            self.jobs.put(r)
        else:
            r.finished = not cfg.mrelease
            if cfg.grace:
                self.term_deadline[id(r)] = now + cfg.grace
        return None

    def escalate(self, now: float) -> None:
        """SIGKILL the ``process``-mode victims still alive ``grace`` after their SIGTERM."""
        for r in list(self.ledger.records):
            due = self.term_deadline.get(id(r))
            if due is None or now < due:
                continue
            del self.term_deadline[id(r)]
            if r.dead_at is None and r.handle is not None and r.handle.is_alive():
                with contextlib.suppress(exithand.Error):
                    r.handle.send_signal(signal.SIGKILL)
                    boost(r.handle)  # SIGKILL is pending: nothing boosted can outlive it
                    self.out.emit("escalate", f"{r.victim.pid} still alive after SIGTERM: "
                                  "SIGKILL", pid=r.victim.pid)
                if self.cfg.mrelease:
                    self.jobs.put(r)
                    continue
            r.finished = True

    def reaper(self) -> None:
        """process_mrelease for each SIGKILLed victim, one after the other, off the main loop
        (the thread's target; ends at :meth:`stop`)."""
        while True:
            r = self.jobs.get()
            if r is None:
                return
            assert r.handle is not None
            t0 = time.monotonic()
            outcome, err = release(r.handle)
            self.results.put((r, "mrelease", (outcome, err, time.monotonic() - t0)))
            self.wake()

    def stop(self) -> None:
        """End the reaper thread once the jobs before this are done."""
        self.jobs.put(None)

    def _start_worker(self, r: KillRecord, fields: dict[str, Any]) -> None:
        cfg = self.cfg
        assert r.handle is not None
        sig = signal.SIGTERM if cfg.grace else signal.SIGKILL
        h = r.handle
        cgroup = None
        if cfg.kill_mode == "cgroup":
            cgroup = v2_cgroup(h.pid)
            fields["cgroup_killed"] = cgroup

        if cfg.kill_mode == "cgroup" and cgroup is None:
            fields["cgroup_note"] = "in the root cgroup v2 (or none): the process alone"

        def alone() -> Any:
            return exithand.kill_and_wait(h, signal=sig, grace=cfg.grace,
                                          release_memory=cfg.mrelease, timeout=cfg.stuck_after,
                                          tree=cfg.kill_mode == "tree")

        def work() -> None:
            res: Any
            kind = cfg.kill_mode
            try:
                if cfg.kill_mode == "cgroup" and cgroup is not None:
                    try:
                        res = exithand.kill_cgroup(cgroup, signal=sig, grace=cfg.grace,
                                                   release_memory=cfg.mrelease,
                                                   timeout=cfg.stuck_after)
                    except exithand.CgroupError:
                        # refused before anything was signalled (not v2, the root, holds the
                        # daemon itself): the chosen process still has to go
                        kind = "process"
                        res = alone()
                else:
                    res = alone()
            except Exception as e:  # reported as an event; the daemon carries on
                res = e
            self.results.put((r, kind, res))
            self.wake()

        threading.Thread(target=work, name="exithand-lowmem-kill", daemon=True).start()
