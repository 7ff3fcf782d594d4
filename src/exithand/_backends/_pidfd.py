"""The pidfd backend (default): Linux 5.3+ ``pidfd_open`` and poll.

Kernel facts this relies on:

* ``pidfd_open(pid, 0)`` (5.3) needs no permission beyond seeing the pid.  EINVAL for
  ``pid <= 0``; ESRCH when absent or already reaped; a non-leader thread id gives ENOENT on 6.15+
  (EINVAL before), unless ``PIDFD_THREAD`` (6.9) is asked for, which we never do.  A zombie can
  be opened and is readable at once.
* A pidfd polls POLLIN once the *whole thread group* has exited (zombie or later), so a leader
  that ``pthread_exit``-ed while threads live is correctly not dead.  From 6.9 a reaped process
  also gives POLLHUP; before that, ``/proc/self/fdinfo/<fd>`` shows ``Pid: -1`` once reaped.
* ``pidfd_send_signal`` (5.1) signals the pinned process; a reaped one gives ESRCH, never a
  process that reused the number.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import signal
import threading

from .. import _identity
from .._identity import ProcessIdentity
from .._kernel import procfs as _procfs
from .._kernel import syscalls as _sys
from ._base import Backend, ProcessRef

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Optional


@functools.cache
def can_use_pidfd_open() -> tuple[bool, str]:
    """Probe by really calling ``pidfd_open(getpid())``, as psutil does.

    EMFILE/ENFILE mean the syscall exists (we are just out of fds): usable.  ENOSYS (old kernel)
    and EPERM (a seccomp filter, as some container runtimes install) mean not usable.
    ``EXITHAND_NO_PIDFD=1`` or ``EXITHAND_DISABLE=pidfd`` make the probe fail, to test fallbacks.
    """
    if os.environ.get("EXITHAND_NO_PIDFD") or _sys.feature_disabled("pidfd"):
        return False, "disabled by EXITHAND_NO_PIDFD / EXITHAND_DISABLE=pidfd"
    if not hasattr(os, "pidfd_open"):
        return False, "this Python has no os.pidfd_open (needs 3.9 built on Linux 5.3+)"
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as e:
        if e.errno in (errno.EMFILE, errno.ENFILE):
            return True, ""
        return False, f"pidfd_open failed: {os.strerror(e.errno or 0)} (kernel < 5.3 or seccomp)"
    os.close(fd)
    return True, ""


#: taken only for the first read of a ref's identity
_IDENT_LOCK = threading.Lock()


def _poll_events(fd: int) -> int:
    p = select.poll()
    p.register(fd, select.POLLIN)
    ready = p.poll(0)
    return ready[0][1] if ready else 0


def _pidfd_reaped(fd: int) -> bool:
    if _sys.pidfd_has_unique_inode():  # pidfs, Linux 6.9+: POLLHUP once reaped
        return bool(_poll_events(fd) & select.POLLHUP)
    return _sys.fdinfo_pid(fd) == -1


def pidfd_identity(fd: int, pid: int) -> ProcessIdentity:
    """What pidfd ``fd`` (of process or thread ``pid``) is: pidfs inode, and the start time
    from ``/proc/<pid>/stat`` kept only if the pidfd's task was not reaped before the read
    finished (after the reap, the number may already name someone else)."""
    inode = os.fstat(fd).st_ino if _sys.pidfd_has_unique_inode() else None
    st = _procfs.try_stat(pid)
    start_time = st.start_time if st is not None else None
    if start_time is not None and _pidfd_reaped(fd):
        start_time = None
    return ProcessIdentity(pid, inode, start_time, _identity.boot_id())


class PidfdRef(ProcessRef):
    """A process pinned by a pidfd, which is also the readable-at-death fd.

    Opening costs one ``pidfd_open`` and nothing else: the pidfd *is* the identity (it pins
    the process, not the number), so there is nothing to verify unless the caller named a
    process (``inode=``/``start_time=``, checked by :class:`exithand.ExitHandle`).  What
    :attr:`identity` describes is read on first use:

    * the pidfs inode (6.9+) by ``fstat(pidfd)``, exact at any time while the fd is open;
    * the start time from ``/proc/<pid>/stat``, kept only if the pidfd's process was still
      unreaped once the read finished (until the reap the number cannot name anyone else).
      Read lazily it is ``None`` for a process reaped before anyone asked: the documented
      "died before it could be read".  Without pidfs the start time is the only identity
      there is, so it is read at open, as soon as possible (``EXITHAND_DISABLE=pidfs``).

    Before this was lazy, the ``/proc`` read and the reap check were 3/4 of ``exithand.open``
    (37.8 us against 4.2 us for a bare ``pidfd_open`` + ``epoll.register``; docs/benchmarks.md).
    """

    backend = "pidfd"
    __slots__ = ("__weakref__", "_fd", "_ident", "_pid")  # no __dict__: 10,000s of these

    def __init__(self, fd: int, pid: int) -> None:
        self._fd = fd
        self._pid = pid
        self._ident: Optional[ProcessIdentity] = None
        if not _sys.pidfd_has_unique_inode():
            self._ident = self._read_identity(fd)

    def _read_identity(self, fd: int) -> ProcessIdentity:
        return pidfd_identity(fd, self._pid)

    @property
    def identity(self) -> ProcessIdentity:
        ident = self._ident
        if ident is None:
            with _IDENT_LOCK:  # two first readers must agree (a reap between reads would not)
                ident = self._ident
                if ident is None:
                    ident = self._ident = self._read_identity(self.fileno())
        return ident

    @property
    def pid(self) -> int:
        return self._pid

    def pidfs_inode(self) -> Optional[int]:
        if self._ident is not None:
            return self._ident.inode
        return os.fstat(self.fileno()).st_ino if _sys.pidfd_has_unique_inode() else None

    @property
    def pidfd(self) -> Optional[int]:
        return self._fd if self._fd >= 0 else None

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("I/O operation on closed exit handle")
        return self._fd

    def is_dead(self) -> bool:
        return bool(_poll_events(self.fileno()) & select.POLLIN)

    def is_reaped(self) -> bool:
        return _pidfd_reaped(self.fileno())

    def send_signal(self, sig: int) -> None:
        signal.pidfd_send_signal(self.fileno(), sig)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class PidfdBackend(Backend):
    """Default backend: one pidfd per process, no polling anywhere."""

    name = "pidfd"

    def available(self) -> tuple[bool, str]:
        return can_use_pidfd_open()

    def open(self, pid: int) -> ProcessRef:
        fd = os.pidfd_open(pid)
        try:
            return PidfdRef(fd, pid)
        except BaseException:
            os.close(fd)
            raise

    def adopt_pidfd(self, pidfd: int) -> ProcessRef:
        pid = _sys.fdinfo_pid(pidfd)
        if pid is None:
            raise OSError(errno.EBADF, f"fd {pidfd} is not a pidfd")
        if pid <= 0:
            # -1: reaped; 0: lives in a pid namespace we cannot see into
            raise OSError(errno.ESRCH, "the pidfd's process is reaped or not visible here")
        return PidfdRef(pidfd, pid)
