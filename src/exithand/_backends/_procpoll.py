"""The no-pidfd fallback: ``/proc`` identity pinning, and one shared monitor thread.

For kernels older than 5.3, or sandboxes whose seccomp filter refuses ``pidfd_open`` (EPERM or
ENOSYS, as some container runtimes do), there is no kernel object to hold.  A process is then
pinned by its *identity*: ``(pid, start time, boot id)``, where the start time is field 22 of
``/proc/<pid>/stat`` (clock ticks since boot).  A number that now shows another start time names
another process: the one we pinned is dead (and reaped).

Death, decided from ``/proc/<pid>/stat`` alone (:func:`probe`):

* entry gone (ENOENT/ESRCH), or start time changed: dead and reaped;
* state ``Z`` (zombie) or ``X`` with ``num_threads`` (field 20) <= 1: dead, not yet reaped;
* state ``Z`` with ``num_threads`` > 1: **alive**.  A leader that called ``pthread_exit`` shows
  ``Z`` while its other threads run; the kernel counts the leader in ``nr_threads`` until the
  group is released, and drops each other thread from it as it is released (``__exit_signal``),
  so the group is dead exactly when the leader is a zombie and the count is down to 1 (the same
  condition as the pidfd's ``thread_group_exited()``).

Every :class:`ProcRef` owns a real file descriptor (an ``eventfd``, or a pipe where there is no
``os.eventfd``) that is made readable once the ref is seen dead, so it works with ``select``,
``epoll``, :class:`exithand.WaitSet` and event loops like a pidfd.  Who looks:

* ``procpoll`` (this module): one daemon thread per process checks every watched ref, with
  adaptive polling: every :data:`POLL_MIN` seconds right after a handle is added or a death is
  seen, backing off by :data:`POLL_BACKOFF` per quiet round to :data:`POLL_MAX`.  Notification
  latency is therefore up to ``POLL_MAX`` for long-lived processes (see docs/benchmarks.md).
  Exit statuses of non-children come from the proc connector's status listener when it can be
  started (it is then used for *how*, never for *whether*), else only for own children.
* ``connector`` (:mod:`._connector`): the same refs, checked only when the proc connector reports
  an exit of their thread group (and all of them after an overflow): no polling at all.

Signals (:meth:`ProcRef.send_signal`) re-read the start time and then call ``kill(2)``.  **The
remaining race, stated honestly:** between that check and ``kill()`` the process can die, be
reaped by its parent and its number be given to a new process, which would get the signal.  The
window is a few microseconds and needs a full PID wrap-around inside it; only pidfds
(``pidfd_send_signal``) close it, which is why the pidfd backend is preferred.  The start time has
a clock-tick resolution (10 ms at ``HZ=100``): a number reused within the same tick by a process
that is then mistaken for ours would need the same wrap-around.
"""

from __future__ import annotations

import errno
import os
import threading
import weakref
from typing import Callable, Optional

from .. import _identity
from .._identity import ProcessIdentity
from .._kernel import procfs as _procfs
from .._kernel import sigwake as _sigwake
from ._base import Backend, ProcessRef

#: adaptive polling bounds of the procpoll monitor (seconds)
POLL_MIN = 0.002
POLL_MAX = 0.1
POLL_BACKOFF = 1.25


def exists_hidden(pid: int) -> bool:
    """Does ``pid`` exist although ``/proc`` does not show it to us?

    A ``/proc`` mounted with ``hidepid=invisible`` (2) hides other users' processes: the entry
    is missing, exactly as for a process that is gone.  ``kill(pid, 0)`` tells them apart: EPERM
    (or success) means a process holds the number; ESRCH that none does.  Cannot see is not dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def probe(ident: ProcessIdentity) -> tuple[bool, bool]:
    """``(dead, reaped)`` for the pinned process, from ``/proc/<pid>/stat`` (see module doc).

    An entry that vanished while the number still names a process (``hidepid``: ours changed
    its credentials and is hidden now) is *not* reported dead: without ``/proc`` we cannot tell
    whether it is ours, and "dead" would be a lie while it runs.  (Residual: if ours died and a
    hidden process reused the number, the death is seen only once that one is gone too.)
    """
    st = _procfs.try_stat(ident.pid)
    if st is None:
        return (False, False) if exists_hidden(ident.pid) else (True, True)
    if ident.start_time is not None and st.start_time != ident.start_time:
        return True, True
    if st.state == "X" or st.state == "x":  # EXIT_DEAD: being released right now
        return True, True
    if st.state == "Z" and st.num_threads <= 1:
        return True, False
    return False, False


def pin(pid: int) -> ProcessIdentity:
    """The identity of the process ``pid`` names now; ``OSError`` like ``pidfd_open``.

    ESRCH if there is no such process; EACCES if one exists that ``/proc`` hides (hidepid);
    ENOENT if ``pid`` is a thread that is not a leader (the
    ``/proc/<tid>`` entries of threads exist but are not listed).  The stat is read twice around
    the ``Tgid`` check, so a number reused in between is noticed (ESRCH).
    """
    st1 = _procfs.try_stat(pid)
    if st1 is None:
        if exists_hidden(pid):
            raise OSError(errno.EACCES, f"process {pid} exists but /proc hides it from us "
                          "(mounted with hidepid=); cannot watch it without pidfds")
        raise OSError(errno.ESRCH, os.strerror(errno.ESRCH))
    tgid = _procfs.tgid(pid)
    st2 = _procfs.try_stat(pid)
    if tgid is None or st2 is None or st2.start_time != st1.start_time:
        raise OSError(errno.ESRCH, os.strerror(errno.ESRCH))
    if tgid != pid:
        raise OSError(errno.ENOENT, f"{pid} is a thread of process {tgid}")
    return ProcessIdentity(pid, None, st1.start_time, _identity.boot_id())


class _Notifier:
    """An fd that becomes (and stays) readable after :meth:`fire`."""

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self.rfd, self.wfd = fd, fd
        else:  # Python < 3.10
            self.rfd, self.wfd = os.pipe()
            os.set_blocking(self.wfd, False)

    def fire(self) -> None:
        if self.rfd == self.wfd:
            os.eventfd_write(self.wfd, 1)
        else:
            try:
                os.write(self.wfd, b"x")
            except BlockingIOError:
                pass

    def close(self) -> None:
        os.close(self.rfd)
        if self.wfd != self.rfd:
            os.close(self.wfd)


class Driver:
    """Who checks refs: the poll monitor here, or the proc connector listener."""

    def add(self, ref: ProcRef) -> None:
        raise NotImplementedError

    def remove(self, ref: ProcRef) -> None:
        raise NotImplementedError


class ProcRef(ProcessRef):
    """A process pinned by ``(pid, start time, boot id)``, with an eventfd readable at death."""

    backend = "procpoll"

    def __init__(self, ident: ProcessIdentity, driver: Driver) -> None:
        self._identity = ident
        self._lock = threading.Lock()  # guards the notifier against a concurrent close()
        self._note: Optional[_Notifier] = _Notifier()
        self._dead = False
        self._driver = driver
        driver.add(self)
        self.check()  # a death before add() would otherwise go unseen

    @property
    def pidfd(self) -> Optional[int]:
        return None

    def fileno(self) -> int:
        note = self._note
        if note is None:
            raise ValueError("I/O operation on closed exit handle")
        return note.rfd

    def check(self) -> bool:
        """Probe; on death make the fd readable (once).  Called by drivers from their thread.

        Runs under the ref's lock, so once ``close()`` has returned no thread is still reading
        ``/proc`` on this ref's behalf (and a closed ref is not probed at all).
        """
        if self._dead:
            return True
        with self._lock:
            if self._note is None:
                return self._dead
            dead, _ = probe(self.identity)
            if dead and not self._dead:
                self._dead = True
                self._note.fire()
            return dead

    def is_dead(self) -> bool:
        self.fileno()  # raises on a closed ref
        return self.check()

    def is_reaped(self) -> bool:
        with self._lock:
            self.fileno()
            return probe(self.identity)[1]

    def send_signal(self, sig: int) -> None:
        """``kill(2)`` after re-verifying the start time (see the module doc for the race)."""
        self.fileno()
        if probe(self.identity)[1]:
            raise OSError(errno.ESRCH, os.strerror(errno.ESRCH))
        os.kill(self.identity.pid, sig)

    def close(self) -> None:
        if self._note is None:
            return
        self._driver.remove(self)
        with self._lock:
            note, self._note = self._note, None
        if note is not None:
            note.close()


class PollMonitor(Driver):
    """One daemon thread checking every watched ref, with adaptive polling.

    The thread starts with the first ref and exits when the last one is removed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._refs: set[ProcRef] = set()
        self._thread: Optional[threading.Thread] = None
        self._interval = POLL_MIN
        self.rounds = 0  # statistics, for tests and benchmarks
        _monitors.add(self)

    def _after_fork_in_child(self) -> None:
        # Only the forking thread survives a fork: restart ours if refs were inherited.
        self._cond = threading.Condition()
        self._thread = None
        refs, self._refs = self._refs, set()
        for r in refs:
            r._lock = threading.Lock()  # another thread may have held it at fork
            self.add(r)

    def add(self, ref: ProcRef) -> None:
        with self._cond:
            self._refs.add(ref)
            self._interval = POLL_MIN  # new handles are often short-lived processes
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="exithand-procpoll",
                                                daemon=True)
                _sigwake.start_thread(self._thread)
            self._cond.notify()

    def remove(self, ref: ProcRef) -> None:
        with self._cond:
            self._refs.discard(ref)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._refs:
                    self._thread = None
                    return
                self._cond.wait(self._interval)
                refs = list(self._refs)
                self.rounds += 1
            died = [r for r in refs if r.check()]
            with self._cond:
                for r in died:
                    self._refs.discard(r)
                if died:
                    self._interval = POLL_MIN
                else:
                    self._interval = min(POLL_MAX, self._interval * POLL_BACKOFF)


_monitors: weakref.WeakSet[PollMonitor] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for m in list(_monitors):
        m._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ProcpollBackend(Backend):
    """Fallback without pidfds: identity by start time, death seen by polling ``/proc``."""

    name = "procpoll"

    def __init__(self, driver_factory: Optional[Callable[[], Driver]] = None,
                 on_open: Optional[Callable[[], object]] = None) -> None:
        """``on_open`` runs before each open: the package wires the proc connector's
        ``start_exit_listener`` in from above (the connector module imports this one)."""
        self._monitor: Optional[Driver] = None
        self._factory = driver_factory or PollMonitor
        self._on_open = on_open
        self._lock = threading.Lock()

    def available(self) -> tuple[bool, str]:
        if not _procfs.exists("self"):
            return False, "/proc is not mounted"
        return True, ""

    def _driver(self) -> Driver:
        with self._lock:
            if self._monitor is None:
                self._monitor = self._factory()
            return self._monitor

    def open(self, pid: int) -> ProcessRef:
        # Without a pidfd there is no PIDFD_INFO_EXIT: a non-child's status can only come from
        # the proc connector, so use it for statuses (not for deaths) where it is available.
        if self._on_open is not None:
            self._on_open()
        return ProcRef(pin(pid), self._driver())
