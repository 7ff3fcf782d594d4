"""Who a process runs as (real/effective uid) and who its parent is, read race-free.

Kernel facts:

* ``PIDFD_GET_INFO`` with ``PIDFD_INFO_CREDS | PIDFD_INFO_PID`` (Linux 6.13) answers about the
  pidfd's own process, so it can never describe a newcomer that reused the number.  It works on a
  live process and on a zombie (a zombie keeps the credentials it died with), and fails with
  ESRCH once the process is reaped (only exit info survives the reap, 6.15).
* Before 6.13 we read the ``PPid:`` and ``Uid:`` lines of ``/proc/<pid>/status`` (readable by
  anyone who can see the process) and then check that our process was not reaped meanwhile:
  until the reap the number cannot be reused, so the lines were about our process.
* Credentials stop changing at death: what a zombie shows is final.  After the reap nothing can
  be read any more, so callers that need "the credentials as last seen alive" must read them
  while they can (see :meth:`exithand.ExitHandle.credentials`).
"""

from __future__ import annotations

import errno

from ._backends import ProcessRef
from ._kernel import procfs as _procfs
from ._kernel import syscalls as _sys
from ._kernel.errors import NoSuchProcess

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Optional
else:
    from ._kernel.frozen import dataclass


@dataclass(frozen=True)
class ProcessCredentials:
    """A process's real/effective uid and parent pid, as read at one moment.

    ``final`` is True when they were read after the process died (from the zombie), so they
    are the credentials it died with; False when read while it lived (it may change them later,
    e.g. with ``setuid``).
    """

    pid: int
    ppid: int
    ruid: int
    euid: int
    final: bool


def _from_pidfd(ref: ProcessRef, fd: int) -> Optional[ProcessCredentials]:
    try:
        info = _sys.pidfd_get_info(fd, _sys.PIDFD_INFO_CREDS | _sys.PIDFD_INFO_PID)
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            return None  # kernel < 6.13: use /proc
        raise
    if info.ruid is None or info.euid is None or info.ppid is None:
        return None
    return ProcessCredentials(ref.pid, info.ppid, info.ruid, info.euid, False)


def _from_proc(ref: ProcessRef) -> ProcessCredentials:
    ppid = ruid = euid = None
    try:
        fields = _procfs.status(ref.pid)
    except NoSuchProcess:
        raise OSError(errno.ESRCH, "process is gone") from None
    if "PPid" in fields and "Uid" in fields:
        ppid = int(fields["PPid"])
        ruid, euid = _procfs.id_list(fields["Uid"])[:2]
    if ppid is None or ruid is None or euid is None or ref.is_reaped():
        raise OSError(errno.ESRCH, "process is gone")
    return ProcessCredentials(ref.pid, ppid, ruid, euid, False)


def read_credentials(ref: ProcessRef) -> ProcessCredentials:
    """Read now; raises ``OSError(ESRCH)`` once the process is reaped.

    ``final`` is set when the process was already dead before the read started.
    """
    dead_before = ref.is_dead()
    fd = ref.pidfd
    creds = _from_pidfd(ref, fd) if fd is not None else None
    if creds is None:
        creds = _from_proc(ref)
    if dead_before:
        creds = ProcessCredentials(creds.pid, creds.ppid, creds.ruid, creds.euid, True)
    return creds
