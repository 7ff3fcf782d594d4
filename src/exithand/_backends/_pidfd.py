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

from .. import _identity, _sys
from .._identity import ProcessIdentity
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


def _poll_events(fd: int) -> int:
    p = select.poll()
    p.register(fd, select.POLLIN)
    ready = p.poll(0)
    return ready[0][1] if ready else 0


def _pidfd_reaped(fd: int) -> bool:
    if _sys.pidfd_has_unique_inode():  # pidfs, Linux 6.9+: POLLHUP once reaped
        return bool(_poll_events(fd) & select.POLLHUP)
    return _sys.fdinfo_pid(fd) == -1


class PidfdRef(ProcessRef):
    """A process pinned by a pidfd, which is also the readable-at-death fd."""

    backend = "pidfd"

    def __init__(self, fd: int, pid: int) -> None:
        self._fd = fd
        inode = os.fstat(fd).st_ino if _sys.pidfd_has_unique_inode() else None
        st = _identity.read_stat(pid)
        start_time = st.start_time if st is not None else None
        # The stat we just read is ours only if the pidfd's process was not reaped before the
        # read finished (after the reap, the number may already name someone else).
        if start_time is not None and _pidfd_reaped(fd):
            start_time = None
        self.identity = ProcessIdentity(pid, inode, start_time, _identity.boot_id())

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
