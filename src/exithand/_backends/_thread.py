"""Handles on one thread's exit: ``pidfd_open(tid, PIDFD_THREAD)`` (Linux 6.9).

Kernel facts (measured on 6.18, tests/test_threads.py):

* ``pidfd_open(tid, PIDFD_THREAD)`` pins one thread (task); EINVAL before 6.9 (unknown flag),
  ESRCH when no task has that id (never was, or exited: a non-leader thread is released at
  its exit, so an exited thread id is gone at once).
* A thread pidfd of a **non-leader** polls POLLIN|POLLHUP as soon as that thread exits (it is
  released at once: there is no zombie phase for a non-leader thread).
* A thread pidfd of the **leader** does *not* become readable when the leader alone exits
  (``pthread_exit``) while other threads run: the kernel's ``pidfd_poll`` withholds POLLIN
  from a "delayed group leader" even for PIDFD_THREAD.  The leader's own state is then ``Z``
  in ``/proc/<tid>/stat``.  So a leader thread's exit is seen by polling that state (one shared
  monitor thread, the procpoll backend's adaptive poll), or the pidfd's POLLIN once the whole
  group is dead: the leader rule (a dead leader thread is a dead *thread*, not a dead process).
* ``PIDFD_GET_INFO`` (6.13) on a thread pidfd gives ``pid`` = the tid and ``tgid`` = its
  process, race-free (asked through the pinned task; ESRCH once it is gone).
* ``pidfd_send_signal(fd, sig, NULL, PIDFD_SIGNAL_THREAD)`` signals that thread only.

A thread has no exit status of its own (only a process has a wait status): a thread handle's
:meth:`~exithand.ExitHandle.status` is "unknown" with that reason.
"""

from __future__ import annotations

import errno
import os
import select

from .. import _identity
from .._kernel import syscalls as _sys
from ._base import ProcessRef
from ._pidfd import PidfdRef, _poll_events, pidfd_identity
from ._procpoll import PollMonitor, ProcRef

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Optional


def thread_group(fd: int, tid: int) -> Optional[int]:
    """The process (tgid) the pinned thread belongs to; None if it is gone.

    ``PIDFD_GET_INFO`` answers through the pinned task (6.13); without it ``/proc/<tid>/status``
    is read and trusted only if the pidfd does not say reaped afterwards.
    """
    try:
        info = _sys.pidfd_get_info(fd, _sys.PIDFD_INFO_PID)
    except OSError as e:
        if e.errno == errno.ESRCH:
            return None
    else:
        if info.tgid is not None:
            return info.tgid
    tgid = _identity.read_tgid(tid)
    if _poll_events(fd) & select.POLLHUP:
        return None
    return tgid


class ThreadRef(PidfdRef):
    """A non-leader thread pinned by a PIDFD_THREAD pidfd, readable when it exits: a pidfd
    handle whose identity is read at open and whose signals reach that thread only."""

    thread = True
    __slots__ = ("_tgid",)

    def __init__(self, fd: int, tid: int, tgid: int) -> None:
        super().__init__(fd, tid)
        self._tgid = tgid
        self._ident = pidfd_identity(fd, tid)  # at open: a thread is released at its exit

    @property
    def tgid(self) -> int:
        return self._tgid

    def send_signal(self, sig: int) -> None:
        _sys.pidfd_send_signal_thread(self.fileno(), sig)


class LeaderThreadRef(ProcRef):
    """The leader thread of a process, pinned by a PIDFD_THREAD pidfd; its exit is seen by
    polling its own state (see the module doc: the kernel's pidfd does not fire for it)."""

    backend = "pidfd"
    thread = True

    def __init__(self, fd: int, tid: int, monitor: PollMonitor) -> None:
        self._tfd = fd
        self._tgid = tid
        super().__init__(pidfd_identity(fd, tid), monitor)

    @property
    def tgid(self) -> int:
        return self._tgid

    @property
    def pidfd(self) -> Optional[int]:
        return self._tfd if self._tfd >= 0 else None

    def _leader_exited(self) -> bool:
        if _poll_events(self._tfd) & select.POLLIN:
            return True  # the whole group is dead (or reaped)
        st = _identity.read_stat(self.identity.pid)
        exited = st is None or st.state in ("Z", "X", "x")
        # the number is ours until the reap; a reap in between means dead anyway
        return exited or bool(_poll_events(self._tfd) & select.POLLHUP)

    def check(self) -> bool:
        if self._dead:
            return True
        with self._lock:
            if self._note is None:
                return self._dead
            if self._leader_exited():
                self._dead = True
                self._note.fire()
            return self._dead

    def is_reaped(self) -> bool:
        self.fileno()
        return bool(_poll_events(self._tfd) & select.POLLHUP)

    def send_signal(self, sig: int) -> None:
        self.fileno()
        _sys.pidfd_send_signal_thread(self._tfd, sig)

    def close(self) -> None:
        if self._note is None:
            return
        super().close()
        fd, self._tfd = self._tfd, -1
        if fd >= 0:
            os.close(fd)


_monitor: Optional[PollMonitor] = None


def open_thread(tid: int) -> ProcessRef:
    """Pin thread ``tid`` (of any process); ``OSError`` like ``pidfd_open(tid, PIDFD_THREAD)``."""
    global _monitor
    fd = _sys.pidfd_open_thread(tid)
    try:
        tgid = thread_group(fd, tid)
        if tgid is None:
            raise OSError(errno.ESRCH, f"thread {tid} exited while it was being opened")
        if tgid != tid:
            return ThreadRef(fd, tid, tgid)
        if _monitor is None:
            _monitor = PollMonitor()
        return LeaderThreadRef(fd, tid, _monitor)
    except BaseException:
        os.close(fd)
        raise
