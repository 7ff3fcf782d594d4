"""The proc connector backend: exit statuses at death time, and deaths seen without polling.

One shared listener per process (:data:`LISTENER`), started lazily and thread-safely: a daemon
thread reading a netlink socket subscribed to ``PROC_EVENT_EXIT`` only (the 6.6+ kernel-side
filter; unfiltered on older kernels).  Byte-level details and the kernel facts behind them are in
:mod:`._netlink`, hand-written with :mod:`struct` after evaluating pyroute2's
``ProcEventSocket``: the core must stay standard-library only, and pyroute2 offers neither the
6.6 event filter, nor detection of an ignored subscription, nor overflow accounting (details
there).  It serves two purposes:

1. **Status at death** (:func:`start_exit_listener`).  Every :class:`exithand.ExitHandle` opened
   while the listener runs is registered (a *watch*), and the exit event of its process is kept
   with the watch: wait status, exit signal, parent.  :func:`_provider` hands it to
   :mod:`exithand._status_sources`, so ``status()`` of a non-child is known the moment it dies,
   not only
   after its parent reaps it.
2. **Death notification without pidfds** (:class:`ConnectorBackend`): refs pinned by start time
   (as in :mod:`._procpoll`) whose eventfd is made readable when an exit event for their thread
   group arrives and ``/proc`` confirms the whole group is dead.

Matching an event to a watch (the PID reuse race).  An event names a number (``tgid``), and a
number can be reused.  A watch takes an event only if, when the event is read, its *own* process
is dead, checked through the handle's own ref (its pidfd, or its ``/proc`` identity; the watch
holds the ref weakly and skips it once closed); and then

* if the process is not yet reaped, its zombie still holds the number, so no other process can
  have sent an exit event under it since it died: the event is ours;
* if it is reaped, the event is accepted only if the watch was *armed* (seen alive after it was
  registered) and no overflow happened since: events arrive in the order they were sent, our
  process's final exit event is sent at its death (but see the window below), and its number
  cannot be reused before its reap, so the first event for the number that finds our process
  dead is ours.
* in both cases the event must be stamped (``timestamp_ns``, CLOCK_MONOTONIC) no earlier than
  the moment the watch saw its process alive, or, for a process already dead when registered,
  than its birth (start time).  A listener that lags can still hold the exit event of an
  *earlier* owner of the number, sent before our process existed; without this rule that
  event was taken as ours (an invented status, reproduced in tests/test_connector_reuse.py).
  Start times have clock-tick resolution: a number reused within the tick of the previous
  owner's death, seen only by a lagging listener, is the remaining blind spot there.
* the first accepted event wins; later ones never overwrite it.

The remaining window: the kernel sends the exit event after ``exit_notify()``, so a parent may
reap the zombie *before* the event is sent.  If, in that gap of a few instructions, the number
were reused by a new process that also died and got its event out first, the new process's event
would be taken.  That needs a full PID wrap-around while one CPU is between two statements of
``do_exit()``; we accept it and say so.  The status is never used to decide *whether* a process
died: that is always its own pidfd or ``/proc`` (the design rule "only for how, never for
whether").

Overflow.  When the socket queue overflows the kernel drops events and ``recv`` fails with
ENOBUFS.  We then count a gap, mark every watch as having seen one (their status may be lost:
the sources after this one still answer, e.g. PIDFD_INFO_EXIT after reap), and resynchronise
every connector-driven ref by checking it through its own identity, so no death is lost.  The
kernel reports ENOBUFS only once per congestion: further drops stay silent until a receive finds
the queue empty (``NETLINK_S_CONGESTED``, cleared in ``netlink_rcv_wake()``).  So after ENOBUFS
the listener reads without blocking until the queue is empty and resynchronises again *then*
(found the hard way: a death was missed in 1 run of 6 under load before this).  Were
the listener thread to fail, its refs move to the polling monitor of :mod:`._procpoll`.

Threads.  Every thread's exit sends an event under the group's ``tgid``, and threads exiting
after a group exit began carry the group's code, but a leader that called ``pthread_exit`` sends
an early event with its own code (0) while its other threads live on and may still ``exit(7)``.
A lagging listener meets that early event with the group already dead, and events sent from
different CPUs may be queued out of order.  So a watch counts the wait statuses of every event
it can tell is its group's (all of them while the zombie holds the number; after the reap, those
read before the listener next found its queue empty), and when they differ the provider declines
with a reason: the group's status then comes from the exact sources (``/proc`` field 52 of the
zombie, ``PIDFD_INFO_EXIT`` after the reap), or is reported unknown.  The listener reads in
batches (everything queued) so that a backlog is seen together (:meth:`_Listener._on_exits`).

Waiting for an in-flight event.  A pidfd turns readable in ``exit_notify()``, a moment before
the kernel sends the exit event, so a ``status()`` right after a wakeup may come before the
event.  The provider first lets the listener catch up with what is queued (the batch in
progress, then one more if the socket is still readable), then, for an armed watch with no gap
and no event yet, waits for the event, which is certain to come; bounded by
:data:`EVENT_GRACE` in all (normally microseconds).  Remaining window: a status read after an
early thread event was counted and before the last thread, preempted between ``exit_notify()``
and sending its event, sends it, gets the early code.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Optional

from .._kernel import netlink as _netlink
from .._kernel import procfs as _procfs
from .._kernel import sigwake as _sigwake
from .._status import SOURCE_CONNECTOR, ExitStatus
from . import _hooks
from ._base import Backend, ProcessRef
from ._procpoll import Driver, PollMonitor, ProcRef, pin

#: longest wait for the exit event of an armed watch whose process is already dead (seconds)
EVENT_GRACE = 1.0
#: receive buffer asked for; override with EXITHAND_CONNECTOR_RCVBUF (bytes) to test overflow
DEFAULT_RCVBUF = 4 << 20


@dataclass(frozen=True)
class ListenerStatistics:
    """What the shared listener has seen (trio-style ``statistics()``)."""

    running: bool
    filtered: bool
    events: int
    gaps: int
    watches: int
    driven: int
    reason: str


class _Watch:
    """One registered handle's process: its ref (weakly) and its exit event once seen."""

    __slots__ = ("armed", "batch", "codes", "event", "gap", "not_before", "ref")

    def __init__(self, ref: ProcessRef) -> None:
        self.ref = weakref.ref(ref)
        self.armed = False
        self.gap = False
        self.event: Optional[_netlink.ProcEvent] = None  # the first event taken
        self.batch = -1  # the listener batch ``event`` was taken in
        self.codes: set[int] = set()  # wait statuses of every event counted as the group's
        # CLOCK_MONOTONIC ns: an exit event stamped earlier was sent before this process could
        # have died (it belongs to an earlier owner of the number, still queued when read)
        self.not_before = _born_not_before(ref)

    def probe(self) -> Optional[tuple[bool, bool]]:
        """``(dead, reaped)`` through the ref's own pidfd or identity; None once it is closed.

        A ``close()`` racing with this may let the fd number be reused before we poll it; the
        answer then only concerns the closed handle's own watch, which nobody can ask again.
        """
        ref = self.ref()
        if ref is None:
            return None
        try:
            dead = ref.is_dead()
            return dead, dead and ref.is_reaped()
        except (ValueError, OSError):
            return None


def _born_not_before(ref: ProcessRef) -> int:
    """A CLOCK_MONOTONIC time (ns) no later than the birth of ``ref``'s process; 0 if unknown.

    The start time (``/proc/<pid>/stat`` field 22) counts clock ticks of CLOCK_BOOTTIME, rounded
    down; events are stamped with CLOCK_MONOTONIC (``ktime_get_ns()``).  The two differ by the
    time spent suspended, which only grows, so subtracting today's difference gives a
    monotonic time at or before the birth: a genuine exit event is never stamped earlier.
    """
    start = ref.identity.start_time
    if start is None:
        return 0
    born_boot = start * 1_000_000_000 // _CLK_TCK
    suspended = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return max(0, born_boot - max(0, suspended) - _monotonic_offset_ns())


def _monotonic_offset_ns() -> int:
    """Our time namespace's CLOCK_MONOTONIC offset (Linux 5.6; 0 in the initial one).

    Event stamps are the host's ``ktime_get_ns()``; our clocks and the start times in
    ``/proc`` are shifted by the namespace's offsets, so a local time minus this is the
    host's.  Read once: a process never changes its own time namespace.
    """
    global _MONO_OFFSET
    if _MONO_OFFSET is None:
        _MONO_OFFSET = 0
        data = _procfs.try_read("self", "timens_offsets")
        try:
            for line in (data or b"").decode("ascii", "replace").splitlines():
                name, secs, nsecs = line.split()
                if name == "monotonic":
                    _MONO_OFFSET = int(secs) * 1_000_000_000 + int(nsecs)
        except ValueError:
            pass
    return _MONO_OFFSET


_MONO_OFFSET: Optional[int] = None
_CLK_TCK = _procfs.CLK_TCK


class _Listener(Driver):
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._state: Optional[tuple[bool, str]] = None
        self._sock: Optional[socket.socket] = None
        self._filtered = False
        self._alive = False
        self._watches: dict[int, list[_Watch]] = {}
        self._by_ref: dict[int, _Watch] = {}
        self._driven: dict[int, set[ProcRef]] = {}
        self._fallback: Optional[PollMonitor] = None
        self._congested = False
        self._in_batch = False  # events taken from the socket, not yet matched
        self._batch_seq = 0  # batches matched so far
        self._last_drained = 0  # the last batch after which the queue was found empty
        self._thread: Optional[threading.Thread] = None
        self.events = 0
        self.gaps = 0

    # ----- start ------------------------------------------------------------------------

    def start(self) -> tuple[bool, str]:
        """Start once (memoized, also when unavailable); ``(running, reason-if-not)``."""
        with self._lock:
            if self._state is None:
                self._state = self._start()
            return self._state

    def _start(self) -> tuple[bool, str]:
        rcvbuf = DEFAULT_RCVBUF
        env = os.environ.get("EXITHAND_CONNECTOR_RCVBUF")
        # ASCII digits that fit SO_RCVBUF's int, else ignored (isdigit() alone let "\u00b2"
        # through to int(), and 2**33 made setsockopt() raise)
        if env and env.isascii() and env.isdigit() and int(env) <= 2**31 - 1:
            rcvbuf = int(env)
        sock, filtered, why = _netlink.subscribe_checked(_netlink.PROC_EVENT_EXIT, rcvbuf)
        if sock is None:
            return False, why
        self._sock = sock
        self._filtered = filtered
        self._alive = True
        t = threading.Thread(target=self._run, args=(sock,), name="exithand-connector",
                             daemon=True)
        self._thread = t
        _sigwake.start_thread(t)
        return True, ""

    # ----- the thread ---------------------------------------------------------------------

    def _run(self, sock: socket.socket) -> None:
        # Events are read in *batches*: wait for data without taking it (MSG_PEEK), mark a
        # batch in progress, then take everything queued (non-blocking reads until EAGAIN) and
        # process it in order.  A batch lets a lagging listener see a thread group's *last*
        # exit event along with earlier ones (see _on_exits), and the in-progress mark plus
        # the queue's readability let event_for() wait until everything queued has been seen.
        #
        # After ENOBUFS the socket stays "congested" (NETLINK_S_CONGESTED) until a receive finds
        # the queue empty, and drops meanwhile raise no new ENOBUFS.  So the resynchronisation
        # happens when the queue has been drained (a non-blocking receive would block): every
        # drop before that moment is covered by it, and any drop after it reports ENOBUFS anew.
        while True:
            try:
                if not self._congested:
                    sock.recv(1, socket.MSG_PEEK)  # blocks until something is queued
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self._on_gap()
                    continue
                self._on_broken(e)
                return
            with self._lock:
                self._in_batch = True
            events, empty, err = _read_batch(sock)
            self._on_exits(events, empty)
            if err is not None:
                if err.errno == errno.ENOBUFS:
                    self._on_gap()
                    continue
                self._on_broken(err)
                return
            if empty and self._congested:
                self._resync()

    def _on_exits(self, events: list[_netlink.ProcEvent], drained: bool) -> None:
        """Match one batch of exit events (in the order they were queued) to watches.

        ``drained``: the read that ended the batch found the queue empty.

        Every thread's exit sends an event under the group's ``tgid``.  Threads that exit after
        a group exit began carry the group's code, but a leader that called ``pthread_exit``
        sends an early event with its own (0) while the group lives on.  A listener reading in
        time skips it (the process is alive then); a lagging one meets it with the group
        already dead, and events sent from different CPUs may even be queued out of order.  So
        no single event can be trusted when a group sent several with different codes: each
        watch counts the wait statuses of all the events it can tell are its group's, and the
        provider declines (the group's status is then left to the exact sources: /proc field 52
        of the zombie, PIDFD_INFO_EXIT after the reap) when they differ.  For a dead process:

        * not reaped: our zombie holds the number, so every event under it is ours: counted;
        * reaped (armed, no gap; see the module docstring): the first event is taken, and later
          ones are counted through the first batch read after the one that took it (the probe
          runs after a batch is read, so the last thread's event can follow in the next one),
          and on while the queue was not drained since (a lagging listener's backlog); after
          that the number may have been reused and they are ignored.
        """
        with self._cond:
            self._batch_seq += 1
            seq = self._batch_seq
            self.events += len(events)
            probes: dict[int, Optional[tuple[bool, bool]]] = {}
            for ev in events:
                for w in list(self._watches.get(ev.tgid, ())):
                    key = id(w)
                    if ev.timestamp_ns < w.not_before:
                        continue  # (stamped before our process could have died: not ours)
                    if key not in probes:
                        probes[key] = w.probe()
                    pr = probes[key]
                    if pr is None or not pr[0]:
                        continue
                    reaped = pr[1]
                    if w.event is None:
                        if reaped and (not w.armed or w.gap):
                            continue
                        w.event, w.batch = ev, seq
                    elif reaped and not (w.batch == seq or self._last_drained <= w.batch):
                        continue  # the backlog of its death was read: maybe a newcomer's
                    w.codes.add(ev.exit_code)
            if drained:
                self._last_drained = seq
            self._in_batch = False
            self._cond.notify_all()
            refs = [r for tgid in {ev.tgid for ev in events} for r in self._driven.get(tgid, ())]
        for r in refs:
            if r.check():
                self.remove(r)

    def _on_gap(self) -> None:
        """ENOBUFS: events were dropped.  Every watch may have lost its event (statuses then
        come from the other sources); deaths are resynchronised once the queue is drained."""
        with self._cond:
            self.gaps += 1
            self._congested = True
            for ws in self._watches.values():
                for w in ws:
                    w.gap = True
            self._cond.notify_all()
        self._check_driven()

    def _resync(self) -> None:
        with self._cond:
            self._congested = False
            for ws in self._watches.values():  # registered during the congestion
                for w in ws:
                    w.gap = True
        self._check_driven()

    def _check_driven(self) -> None:
        with self._cond:
            refs = [r for rs in self._driven.values() for r in rs]
        for r in refs:  # resynchronise: every driven ref checked through its own identity
            if r.check():
                self.remove(r)

    def _on_broken(self, exc: OSError) -> None:
        with self._cond:
            self._alive = False
            self._state = (False, f"proc connector listener failed: {exc}")
            for ws in self._watches.values():
                for w in ws:
                    w.gap = True
            self._cond.notify_all()
            refs = [r for rs in self._driven.values() for r in rs]
            self._driven.clear()
            self._fallback = PollMonitor()
        for r in refs:
            r._driver = self._fallback
            self._fallback.add(r)
            r.check()

    # ----- Driver, for connector-driven refs ----------------------------------------------------

    def add(self, ref: ProcRef) -> None:
        with self._lock:
            if self._fallback is not None:
                ref._driver = self._fallback
                self._fallback.add(ref)
                return
            self._driven.setdefault(ref.pid, set()).add(ref)

    def remove(self, ref: ProcRef) -> None:
        with self._lock:
            s = self._driven.get(ref.pid)
            if s is not None:
                s.discard(ref)
                if not s:
                    del self._driven[ref.pid]

    # ----- watches (status at death) -------------------------------------------------------------

    def register(self, ref: ProcessRef) -> None:
        """Open hook: remember ``ref``'s process so its exit event is kept."""
        if not self._alive:
            return
        w = _Watch(ref)
        key = id(ref)
        with self._lock:
            w.gap = self._congested  # drops may be going on unreported right now
            self._watches.setdefault(ref.pid, []).append(w)
            self._by_ref[key] = w
        # Registered first, checked second: alive now means its exit event is still to come,
        # and will be stamped after ``now`` (events still queued from before are not ours).
        now = time.monotonic_ns() - _monotonic_offset_ns()
        pr = w.probe()
        w.armed = pr is not None and not pr[0]
        if w.armed:
            w.not_before = max(w.not_before, now)
        weakref.finalize(ref, self._unregister, key, ref.pid, w)

    def _unregister(self, key: int, pid: int, w: _Watch) -> None:
        with self._lock:
            if self._by_ref.get(key) is w:
                del self._by_ref[key]
            ws = self._watches.get(pid)
            if ws is not None and w in ws:
                ws.remove(w)
                if not ws:
                    del self._watches[pid]

    def after_fork_in_child(self) -> None:
        """The listener thread does not exist in a forked child: start afresh there.

        The inherited socket is closed (it is the parent's subscription: reading it would steal
        the parent's events); connector-driven refs move to a polling monitor.
        """
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        refs = [r for rs in self._driven.values() for r in rs]
        self._state = None
        self._alive = False
        self._congested = False
        self._in_batch = False
        self._watches.clear()
        self._by_ref.clear()
        self._driven.clear()
        if refs:
            self._fallback = PollMonitor()
            for r in refs:
                r._lock = threading.Lock()  # another thread may have held it at fork
                r._driver = self._fallback
                self._fallback.add(r)

    def event_for(self, ref: ProcessRef) -> tuple[Optional[_netlink.ProcEvent], set[int]]:
        """``ref``'s exit event and the wait statuses of all its group's events seen; waits
        (bounded by :data:`EVENT_GRACE` in all) for the listener to catch up with what is
        queued, and for an event certain to come."""
        with self._cond:
            w = self._by_ref.get(id(ref))
            if w is None:
                return None, set()
            if self._alive and self._sock is not None \
                    and threading.current_thread() is not self._thread:
                deadline = time.monotonic() + EVENT_GRACE
                # a batch in progress, then one more if events are queued (or being read):
                # either may hold a later event of the group (its last thread's)
                sock = self._sock
                for _ in range(2):
                    if not (self._in_batch or _queued(sock)):
                        break
                    if not self._wait_next_batch(deadline):
                        break
                if w.event is None and w.armed and not w.gap and self._alive:
                    self._cond.wait_for(lambda: w.event is not None or w.gap or not self._alive,
                                        max(0.0, deadline - time.monotonic()))
            return w.event, set(w.codes)

    def _wait_next_batch(self, deadline: float) -> bool:
        """(Lock held.)  Wait until the listener ends one more batch; False on timeout."""
        target = self._batch_seq + 1
        return self._cond.wait_for(lambda: self._batch_seq >= target or not self._alive,
                                   max(0.0, deadline - time.monotonic()))

    def statistics(self) -> ListenerStatistics:
        with self._lock:
            why = self._state[1] if self._state is not None else "not started"
            return ListenerStatistics(
                running=self._alive, filtered=self._filtered, events=self.events,
                gaps=self.gaps, watches=len(self._by_ref),
                driven=sum(len(s) for s in self._driven.values()), reason=why)


#: most datagrams read into one batch (each holds one event), so a flood cannot starve status
#: readers waiting for the batch to end
MAX_BATCH = 1024


def _read_batch(sock: socket.socket) -> tuple[list[_netlink.ProcEvent], bool, Optional[OSError]]:
    """Take what is queued, without blocking: ``(exit events, queue found empty, error)``."""
    events: list[_netlink.ProcEvent] = []
    for _ in range(MAX_BATCH):
        try:
            data = sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return events, True, None
        except InterruptedError:
            continue
        except OSError as e:
            return events, False, e
        events.extend(ev for ev in _netlink.parse(data) if ev.what == _netlink.PROC_EVENT_EXIT)
    return events, False, None


def _queued(sock: socket.socket) -> bool:
    """Is anything (or an error) queued on the socket?  poll(), which takes nothing: a peek
    from this thread could take the listener's ENOBUFS."""
    p = select.poll()
    p.register(sock.fileno(), select.POLLIN)
    return bool(p.poll(0))


LISTENER = _Listener()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=LISTENER.after_fork_in_child)


def _provider(ref: ProcessRef) -> Optional[ExitStatus]:
    """Status provider for :mod:`exithand._status_sources`: the exit event kept for this handle, or
    an unknown status (with the reason; later sources are still asked) when its thread group
    sent events with different codes."""
    ev, codes = LISTENER.event_for(ref)
    if ev is None:
        return None
    if len(codes) > 1:
        seen = ", ".join(ExitStatus.from_wait_status(ref.pid, c, SOURCE_CONNECTOR).describe()
                         .split(": ", 1)[-1].rstrip(".") for c in sorted(codes))
        return ExitStatus.unknown(ref.pid, "its threads' exit events disagree (" + seen + "), "
                                  "so the proc connector cannot tell the process's status")
    return ExitStatus.from_wait_status(ref.pid, ev.exit_code, SOURCE_CONNECTOR)


def start_exit_listener() -> bool:
    """Start the shared proc connector listener and use it for exit statuses.

    Once it runs, every :class:`~exithand.ExitHandle` opened afterwards gets its exit status
    (wait status, read from the kernel's exit event) at death time, even for processes that are
    not your children and whose parent has not reaped them.  Idempotent and thread-safe.

    Returns ``False``, changing nothing, where the proc connector is unusable: without
    CAP_NET_ADMIN before Linux 6.6 or on a 6.6+ kernel that still refuses unprivileged binds to
    the group (6.18.44 here), or outside the initial user and pid namespace, where the kernel
    ignores the subscription silently (detected by a self-test exit).
    """
    ok, _ = LISTENER.start()
    if not ok:
        return False
    _hooks.register_provider(_provider)
    _hooks.register_open_hook(LISTENER.register)
    return True


def stop_exit_listener() -> None:
    """Stop using the listener for statuses (the thread keeps running; tests use this to
    isolate themselves).  Handles opened afterwards are not watched."""
    _hooks.unregister_provider(_provider)
    _hooks.unregister_open_hook(LISTENER.register)


def statistics() -> ListenerStatistics:
    """Counters of the shared listener (events read, overflow gaps, watched processes)."""
    return LISTENER.statistics()


class ConnectorRef(ProcRef):
    """A ref pinned by start time whose death is reported by proc connector events."""

    backend = "connector"


class ConnectorBackend(Backend):
    """No pidfds, no polling: ``/proc`` identity plus the shared proc connector listener."""

    name = "connector"

    def available(self) -> tuple[bool, str]:
        return LISTENER.start()

    def open(self, pid: int) -> ProcessRef:
        if not start_exit_listener():
            why = LISTENER.start()[1]
            raise OSError(errno.EOPNOTSUPP, f"proc connector unavailable: {why}")
        return ConnectorRef(pin(pid), LISTENER)
