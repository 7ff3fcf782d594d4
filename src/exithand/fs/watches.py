"""The registry of live watches: one :class:`.Watch` (one pidfd) per process, shared by every
open file of it, from the first open to the last close (and, for a dead process named by its
pidfs inode, for ``--linger`` seconds more: :mod:`.linger`).

Lifecycle, all on the daemon's trio thread (no locks):

* :meth:`Watches.watch_for` hands out the existing watch of the pinned process (the new
  handle is closed: the first pidfd is the process's and stays), or makes one and starts its
  ``run`` task in the daemon's nursery.
* :meth:`Watches.unref` is one file less.  An unused watch is closed, unless it is of a dead
  process named ``PID:INODE``: then it is kept (:class:`.Lingering`) until its deadline, which
  starts when it is *first* left unused and is never extended by reopening; a sweeper task
  closes the kept watches as their deadlines pass and ends when none is kept.
* :meth:`Watches.drop` closes a watch and forgets every key it is filed under.

Keys are :func:`.deathwatch.key_of` (pid, pidfs inode): the inode names one process for the
life of the system, so a reused pid never finds a dead process's watch.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import trio

import exithand

from .deathwatch import Watch, key_of
from .linger import Lingering

log = logging.getLogger("exithand.fs")


class Watches:
    """The live watches by key, and the kept (lingering) ones of dead processes.

    ``nursery`` must be set before :meth:`watch_for` is called; ``stopping`` tells whether the
    daemon is shutting down (no watch is kept then)."""

    def __init__(self, policy: str, lingering: Lingering[Watch],
                 stopping: Callable[[], bool],
                 owner: Optional[Callable[[Watch], int]] = None) -> None:
        self.policy = policy
        self._owner = owner  # who a lingering watch is charged to (-1: unknown)
        self.live: dict[Any, Watch] = {}
        self.lingering = lingering
        self.nursery: Any = None
        self._stopping = stopping
        self._sweeping = False
        self._linger_changed: Optional[trio.Event] = None  # wakes the sweeper (a new deadline)

    def __len__(self) -> int:
        return len(self.live)

    def watch_for(self, h: exithand.ExitHandle) -> Watch:
        """The watch of ``h``'s process (``h`` is closed if one exists already, else owned)."""
        key = key_of(h)
        w = self.live.get(key) if key is not None else None
        if w is not None and not w.closed:
            h.close()
            return w
        w = Watch(h, key, self.policy)
        if self._owner is not None:  # charged to the process's owner, for good
            w.linger_uid = self._owner(w)
        self.live[key if key is not None else id(w)] = w
        self.nursery.start_soon(w.run, name=f"watch-{w.pid}")
        return w

    def unref(self, w: Watch, uid: int) -> None:
        """One file less on ``w`` (closed by ``uid``).  Unused: closed, or, for a dead process
        named by its pidfs inode, kept for new opens of ``PID:INODE`` until ``--linger``
        seconds after it was first left unused (:mod:`.linger`)."""
        w.refs -= 1
        if w.refs > 0:
            return
        pin = w.key[1] if w.key is not None else None
        if (pin is None or not w.dead.is_set() or w.closed or self._stopping()
                or self.nursery is None or not self.lingering.enabled):
            self.drop(w)
            return
        now = trio.current_time()
        if w.linger_until is None:  # first left unused since death: the clock starts now,
            w.linger_until = now + self.lingering.seconds  # and reopening never extends it
            if w.linger_uid < 0:  # owner unknown (reaped before its credentials were read):
                w.linger_uid = uid  # the closer, for good (others' opens move nothing)
        elif w.linger_until <= now:
            self.drop(w)
            return
        w.read_final()  # what a zombie still shows, before its parent reaps it
        for old in self.lingering.keep((w.pid, pin), w, w.linger_uid, w.linger_until):
            self.drop(old)
        log.debug("lingering pid=%d inode=%d for %.3gs", w.pid, pin, w.linger_until - now)
        if not self._sweeping:
            self._sweeping = True
            self.nursery.start_soon(self._sweep, name="linger-sweeper")
        elif self._linger_changed is not None:  # a re-kept watch's deadline may come sooner
            self._linger_changed.set()

    def drop(self, w: Watch) -> None:
        """Close ``w`` and forget it under every key."""
        for k, v in list(self.live.items()):
            if v is w:
                del self.live[k]
        w.close()

    async def _sweep(self) -> None:
        """Close the kept watches as their time runs out; ends when none is kept."""
        try:
            while True:
                deadline = self.lingering.next_deadline()
                if deadline is None:
                    return
                self._linger_changed = trio.Event()
                with trio.move_on_at(deadline):
                    await self._linger_changed.wait()
                for w in self.lingering.expire(trio.current_time()):
                    if w.refs <= 0:
                        log.debug("linger-expired pid=%d", w.pid)
                        try:
                            self.drop(w)
                        except Exception:  # never take the daemon's nursery down
                            log.exception("closing the watch of pid %d", w.pid)
        finally:
            self._sweeping = False

    def notify_pollers(self) -> None:
        """Wake every poller of every watch (shutdown)."""
        for w in list(self.live.values()):
            w.notify_pollers()

    def close_all(self) -> None:
        """Close every watch, kept or in use, and forget them all."""
        self.lingering.clear()
        for w in list(self.live.values()):
            w.close()
        self.live.clear()
