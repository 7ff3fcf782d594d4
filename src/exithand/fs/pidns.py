"""Pid numbers as the *reader* sees them: every lookup and listing in the caller's pid namespace.

A FUSE request carries the caller's pid as seen from the pid namespace the mount was made in
(the daemon's; 0 if the caller is not visible there).  A reader inside a child pid namespace
(``unshare --pid --fork --mount-proc``, a container) means other numbers: its ``30000`` is some
host pid, and most host pids do not exist for it at all.  So every name is translated:

* The caller's namespace is ``/proc/<pid>/ns/pid`` (the daemon is root and may open it); when it
  is the daemon's own, numbers are used as they are.
* Otherwise the nsfs ioctls of Linux 6.11 translate on the namespace fd:
  ``NS_GET_PID_FROM_PIDNS`` (a pid of that namespace -> ours) for lookups and
  ``NS_GET_PID_IN_PIDNS`` (ours -> that namespace's, ESRCH when the process is not in it or
  below it) for listings and for checking at ``open()``.  The argument is the pid itself and the
  answer the return value.
* A caller whose namespace cannot be known (pid 0: not visible from the daemon's namespace; a
  kernel older than 6.11 without those ioctls) sees an empty directory: nothing it could not see
  is ever shown, and nothing is answered about the wrong process.

Races: a translation is a number, not a process.  Callers pin the process (``exithand.open``)
and then translate back and compare; until the pinned process is reaped its number cannot be
reused, so a match after pinning is about that process.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from typing import Optional

import exithand
from exithand import procfs

log = logging.getLogger("exithand.fs")

NS_GET_PID_FROM_PIDNS = 0x8004B706  # _IOR(0xb7, 0x6, int)
NS_GET_PID_IN_PIDNS = 0x8004B708  # _IOR(0xb7, 0x8, int)


def _ns_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


_OURS = _ns_id(procfs.ns_stat("self", "pid"))


class View:
    """A caller's pid namespace.  ``same`` views translate nothing; ``blind`` ones see nothing.

    Holds the namespace fd until :meth:`close`.
    """

    def __init__(self, fd: int = -1, same: bool = False, why: str = "") -> None:
        self.fd = fd
        self.same = same
        self.why = why  # for a blind view: why the namespace is unknown

    @property
    def blind(self) -> bool:
        return not self.same and self.fd < 0

    def to_host(self, pid: int) -> Optional[int]:
        """The daemon's number for the caller's ``pid``; None if the caller has no such pid."""
        if self.same:
            return pid
        if self.fd < 0:
            return None
        try:
            return int(fcntl.ioctl(self.fd, NS_GET_PID_FROM_PIDNS, pid))
        except OSError:
            return None

    def from_host(self, pid: int) -> Optional[int]:
        """The caller's number for the daemon's ``pid``; None if the caller cannot see it."""
        if self.same:
            return pid
        if self.fd < 0:
            return None
        try:
            return int(fcntl.ioctl(self.fd, NS_GET_PID_IN_PIDNS, pid))
        except OSError:
            return None

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def view_of(caller_pid: int) -> View:
    """The pid namespace view of the FUSE caller whose (daemon-namespace) pid is given.

    Raises :class:`exithand.FdLimitError` when the daemon is out of fds."""
    if caller_pid <= 0:
        return View(why="the caller is not visible from the daemon's pid namespace")
    try:
        fd = procfs.open_fd(caller_pid, "ns/pid", os.O_RDONLY)
    except exithand.FdLimitError:
        raise  # out of fds: not "the caller sees nothing" (callers answer ENFILE)
    except exithand.Error as e:
        return View(why=f"cannot open the caller's pid namespace: {e}")
    if _ns_id(os.fstat(fd)) == _OURS:
        os.close(fd)
        return View(same=True)
    try:  # probe the 6.11 ioctl (ESRCH for our own pid is the normal answer)
        fcntl.ioctl(fd, NS_GET_PID_IN_PIDNS, os.getpid())
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EINVAL, errno.ENOSYS):
            os.close(fd)
            return View(why="the kernel cannot translate pids between namespaces "
                        "(NS_GET_PID_IN_PIDNS, Linux 6.11)")
    return View(fd)
