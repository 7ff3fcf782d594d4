"""Where a dead process's exit status comes from, best source first.

:func:`resolve` asks each source in turn (5 first, for a handle not made from a Popen: once
the process is reaped it is exact and one ioctl, and before that it says "not yet") and
returns the first answer; if none answers it
returns :meth:`ExitStatus.unknown` with every reason it met.  It is only called once the process
is dead.

1. **child** -- ``waitid(P_PIDFD, fd, WEXITED | WNOWAIT | WNOHANG)`` (Linux 5.4).  Works only for
   our own children.  ``WNOWAIT`` leaves the zombie in place: the library never reaps a caller's
   child behind its back (``Popen.wait()`` still works afterwards).
2. **popen** -- a :class:`subprocess.Popen` we were built from already reaped it.
3. **connector** -- an exit event from the netlink proc connector, captured at death time (an
   optional provider registers itself with :func:`register_provider`).
4. **zombie** -- ``/proc/<pid>/stat`` field 52 of a zombie (asked after a quick look at 5,
   which answers only after the reap: the two never both answer, see :func:`resolve`).  The
   kernel prints the real value only to callers with ptrace read access
   (``PTRACE_MODE_READ_FSCREDS``) and ``0`` to everyone else, so 0 alone proves nothing.
   We ask the same access question of the kernel by reading the
   ``/proc/<pid>/exe`` link, which is guarded by the same check: EACCES means no access; on a
   zombie an allowed caller gets ENOENT (its mm is gone).  For a whole thread group the kernel
   prints the group's exit code once a group exit began, as waitpid reports it (measured on
   6.18: a leader that called ``pthread_exit``, then another thread's ``exit(7)``, shows 7<<8,
   not the leader's own 0; tests/test_connector_threads.py).
5. **pidfd_info** -- ``PIDFD_GET_INFO`` with ``PIDFD_INFO_EXIT`` (Linux 6.15), after the reap.

**Coredump details** (:func:`with_coredump`): a death by signal carries the wait status' core
bit as :class:`~exithand._status.Coredump` (dumped or not, ``source`` the status's own).  Where
the kernel recorded more (``PIDFD_INFO_COREDUMP``, 6.16: dumped / skipped, written as user or
root; the signal from 6.19), that replaces it with ``source`` ``"pidfd_info"``.  A
``coredump_mask`` of 0 means the kernel recorded nothing (6.16-6.18 record only dumps into a
coredump socket), so the core bit stays the answer.  ``EXITHAND_DISABLE=pidfd_coredump``
forces the kernels without it.

Each read of ``/proc/<pid>`` is followed by a check that our pidfd's process was not reaped in
between: until the reap the number cannot be reused, so what we read was about our process.
"""

from __future__ import annotations

import errno
import os
import time

from ._backends import ProcessRef, _hooks
from ._kernel import procfs as _procfs
from ._kernel import syscalls as _sys
from ._kernel.errors import AccessDenied, Error
from ._status import (
    SOURCE_CHILD,
    SOURCE_PIDFD_INFO,
    SOURCE_POPEN,
    SOURCE_ZOMBIE,
    Coredump,
    ExitStatus,
)

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any, Optional

# Status providers and open hooks are registered by backends (the proc connector) into a table
# below them (_backends._hooks), so no backend imports this module: re-exported here for callers.
register_provider = _hooks.register_provider
unregister_provider = _hooks.unregister_provider
register_open_hook = _hooks.register_open_hook
unregister_open_hook = _hooks.unregister_open_hook
notify_open = _hooks.notify_open


def child_status(ref: ProcessRef) -> Optional[ExitStatus]:
    """Our own child, read with WNOWAIT (never reaps).  None if not our child / not exited."""
    fd = ref.pidfd
    try:
        if fd is not None and hasattr(os, "P_PIDFD"):
            res = os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        else:
            res = os.waitid(os.P_PID, ref.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    except ChildProcessError:
        return None
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ECHILD):
            return None
        raise
    if res is None:
        return None
    if fd is None and ref.is_reaped():
        # P_PID names a number: if ours was reaped (by someone else) and the number reused by
        # another child of ours, that child's status is not ours.  Checked after waitid: with
        # WNOWAIT a zombie we saw still holds the number, so "not reaped" now proves it ours.
        return None
    return ExitStatus.from_siginfo(ref.pid, res.si_code, res.si_status, SOURCE_CHILD)


def is_own_child(ref: ProcessRef) -> bool:
    """Is the pinned process a child of ours?  ``waitid(WNOHANG | WNOWAIT)``: never reaps.

    ECHILD means it is not (the kernel only lets a parent wait).  Without a pidfd the waitid
    names a number, so the answer counts only if our process was not reaped meanwhile.
    """
    fd = ref.pidfd
    flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
    try:
        if fd is not None and hasattr(os, "P_PIDFD"):
            os.waitid(os.P_PIDFD, fd, flags)
        else:
            os.waitid(os.P_PID, ref.pid, flags)
    except ChildProcessError:
        return False
    return fd is not None or not ref.is_reaped()


def popen_status(ref: ProcessRef, popen: Any) -> Optional[ExitStatus]:
    """The ``returncode`` of the Popen the handle was made from, once Popen has reaped it."""
    rc = getattr(popen, "returncode", None) if popen is not None else None
    if rc is None:
        return None
    if rc < 0:
        return ExitStatus(ref.pid, None, -rc, False, True, SOURCE_POPEN)
    return ExitStatus(ref.pid, rc, None, False, True, SOURCE_POPEN)


def has_ptrace_read_access(pid: int) -> bool:
    """Would the kernel show us ptrace-guarded fields of ``pid`` (``PTRACE_MODE_READ_FSCREDS``)?

    ``readlink(/proc/<pid>/exe)`` runs that exact check first: EACCES means no.
    """
    try:
        _procfs.exe(pid)
    except AccessDenied:
        return False
    except Error:
        return True
    return True


def zombie_status(ref: ProcessRef) -> tuple[Optional[ExitStatus], Optional[str]]:
    """Field 52 of our zombie, or (None, reason)."""
    st = _procfs.try_stat(ref.pid)
    if st is None or st.state != "Z" or st.exit_code is None:
        return None, None
    if ref.identity.start_time is not None and st.start_time != ref.identity.start_time:
        return None, None  # not ours: ours was reaped and the number reused
    allowed = has_ptrace_read_access(ref.pid)
    if ref.is_reaped():
        return None, None  # reaped while we read: what we read may belong to a newcomer
    if not allowed:
        return None, ("zombie not yet reaped by its parent, and its exit code "
                      f"(/proc/{ref.pid}/stat field 52) is shown only to callers with "
                      "ptrace access; it becomes readable after the reap on Linux 6.15+")
    return ExitStatus.from_wait_status(ref.pid, st.exit_code, SOURCE_ZOMBIE), None


#: what we ask PIDFD_GET_INFO about a core dump; the kernel sets the bits it filled
_COREDUMP_MASK = (_sys.PIDFD_INFO_COREDUMP | _sys.PIDFD_INFO_COREDUMP_SIGNAL
                  | _sys.PIDFD_INFO_SUPPORTED_MASK)


def coredump_from_info(info: _sys.PidfdInfo) -> Optional[Coredump]:
    """The kernel's coredump record in a PIDFD_GET_INFO answer, or None if it recorded none.

    Only meaningful once the process is dead: for a live one ``coredump_mask`` is the
    dumpability a dump would have now.  A mask without COREDUMPED or SKIP is "nothing recorded".
    """
    cd = info.coredump_mask
    if not cd or not cd & (_sys.PIDFD_COREDUMPED | _sys.PIDFD_COREDUMP_SKIP):
        return None
    written_as = ("root" if cd & _sys.PIDFD_COREDUMP_ROOT
                  else "user" if cd & _sys.PIDFD_COREDUMP_USER else None)
    sig = info.coredump_signal or None
    return Coredump(bool(cd & _sys.PIDFD_COREDUMPED), bool(cd & _sys.PIDFD_COREDUMP_SKIP),
                    written_as, sig, SOURCE_PIDFD_INFO)


def _apply_coredump(st: ExitStatus, info: _sys.PidfdInfo) -> ExitStatus:
    cd = coredump_from_info(info)
    return st.with_coredump(cd) if cd is not None and st.signal is not None else st


def with_coredump(ref: ProcessRef, st: ExitStatus) -> ExitStatus:
    """``st`` with the kernel's coredump record where there is one (see the module doc).

    Asked only for a death by signal (an exit never dumps) and only through a pidfd; a kernel
    that has no PIDFD_INFO_COREDUMP, or a pidfd whose process is gone from pidfs, leaves ``st``
    as it is (the core bit of its wait status, if any).
    """
    if st.signal is None or ref.pidfd is None or (st.coredump is not None
                                                  and st.coredump.source == SOURCE_PIDFD_INFO):
        return st
    try:
        # with PIDFD_INFO_EXIT: after the reap a request without it fails with ESRCH
        info = _sys.pidfd_get_info(ref.pidfd, _COREDUMP_MASK | _sys.PIDFD_INFO_EXIT)
    except OSError:
        return st
    return _apply_coredump(st, info)


#: extra PIDFD_GET_INFO attempts (1 ms apart) after ESRCH; see pidfd_info_status
REAP_RETRIES = 5
#: how long resolve() waits for the exit record of a process caught in the middle of its reap
REAP_WAIT = 0.1


def pidfd_info_status(ref: ProcessRef) -> tuple[Optional[ExitStatus], Optional[str]]:
    """``PIDFD_INFO_EXIT`` (Linux 6.15), set only once the process is reaped; or (None, reason).

    ``(None, None)`` while it is a zombie (the exit info appears at the reap, see
    :mod:`exithand._kernel.syscalls`)."""
    fd = ref.pidfd
    if fd is None:
        return None, "no pidfd held (PIDFD_INFO_EXIT needs one)"
    # The reap is not one instant for us: the ioctl can stop finding the task (ESRCH) a
    # moment before its exit record is visible (seen under load on 6.18): ask again, 1 ms
    # apart, a few times.  A task still found without the record ("not yet") is answered at
    # once; resolve() waits for a process caught in the middle of its reap.
    for attempt in range(REAP_RETRIES + 1):
        try:
            info = _sys.pidfd_get_info(fd, _sys.PIDFD_INFO_EXIT | _COREDUMP_MASK)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                return None, (f"kernel {os.uname().release} has no PIDFD_GET_INFO exit info "
                              "(needs Linux 6.15)")
            if e.errno != errno.ESRCH:
                raise
            if attempt == REAP_RETRIES:
                return None, "reaped without exit info kept for this pidfd"
            time.sleep(0.001)
            continue
        if info.exit_status is not None:
            return _apply_coredump(ExitStatus.from_wait_status(ref.pid, info.exit_status,
                                                               SOURCE_PIDFD_INFO), info), None
        if info.mask & _sys.PIDFD_INFO_PID:  # still found: exit info appears at the reap
            return None, None
        return None, (f"kernel {os.uname().release} keeps no exit info for this pidfd "
                      "(PIDFD_INFO_EXIT needs Linux 6.15)")
    return None, None  # not reached: the last attempt returns


def resolve(ref: ProcessRef, popen: Any = None) -> ExitStatus:
    """Best available status for a dead process, with its coredump details; never invented.

    Once the process is reaped, ``PIDFD_INFO_EXIT`` (6.15) is the kernel's own record, exact
    for the whole thread group, in one ioctl: it is asked first, except for a Popen's process
    (its ``returncode`` is the source its owner knows).  A non-child is usually reaped by the
    time its death is noticed (its parent was woken by the same exit), and this spares the
    ``waitid`` that fails with ECHILD and the ``/proc`` read.  Before the reap the ioctl says
    "not yet", which no other source can contradict, and the others answer in their order.
    """
    st = _resolve_status(ref, popen)
    return with_coredump(ref, st) if st.known else st


def _resolve_status(ref: ProcessRef, popen: Any) -> ExitStatus:
    info_why: Optional[str] = None
    asked = popen is None
    if asked:
        st, info_why = pidfd_info_status(ref)
        if st is not None:
            return st
    st = child_status(ref) or popen_status(ref, popen)
    if st is not None:
        return st
    reasons: list[str] = []
    for provider in _hooks.providers:
        st = provider(ref)
        if st is not None:
            if st.known:
                return st
            if st.reason:
                reasons.append(st.reason)  # it cannot tell: the sources below may
    # PIDFD_INFO_EXIT before /proc: reaped, one ioctl answers where the zombie source would
    # first fail to open /proc/<pid>/stat.  While it is a zombie the ioctl says "not yet"
    # (None, None) and field 52 is read; if the zombie was reaped between the two looks
    # (zombie_status then declines), the ioctl is asked again and answers.
    if not asked:
        st, info_why = pidfd_info_status(ref)
        if st is not None:
            return st
    st, why = zombie_status(ref)
    if st is not None:
        return st
    if why:
        reasons.append(why)
    if info_why is None:
        st, info_why = pidfd_info_status(ref)
        if st is not None:
            return st
    if why is None and info_why is None and ref.pidfd is not None:
        # Dead, yet neither a zombie (state Z) to read nor a reaped process with an exit
        # record: caught in the middle of the reap (state X, or /proc gone while the pidfd
        # does not say reaped yet; seen under load on 6.18).  The record appears within
        # moments: ask again, 1 ms apart, bounded (REAP_WAIT).
        deadline = time.monotonic() + REAP_WAIT
        while st is None and info_why is None and time.monotonic() < deadline:
            time.sleep(0.001)
            st, info_why = pidfd_info_status(ref)
        if st is not None:
            return st
    if info_why:
        reasons.append(info_why)
    if not reasons:
        reasons.append("not our child and no source reported it")
    return ExitStatus.unknown(ref.pid, "; ".join(reasons))
