"""Ask the kernel itself whether a reader may read a process's exit code, as that reader.

The kernel prints a zombie's exit code (``/proc/<pid>/stat`` field 52) only to callers that
pass ``ptrace_may_access(task, PTRACE_MODE_READ_FSCREDS)``: the caller's fsuid equals the
target's real, effective *and* saved uid and its fsgid the target's three gids, and the target
is dumpable (not setuid/setgid-exec'd or credential-changed, not ``PR_SET_DUMPABLE 0``); or the
caller has CAP_SYS_PTRACE in the target's user namespace; and no LSM objects.  Linux 6.18 keeps
the dumpable flag for zombies (measured: a same-user zombie that called ``PR_SET_DUMPABLE 0``
shows field 52 as 0 to its own user).  Rebuilding that rule from ``/proc/<pid>/status`` would
miss the dumpable flag of a zombie (its ``/proc`` files are owned by its euid again once its
memory is gone) and every LSM, so we ask the kernel:

* ``readlink /proc/<pid>/exe`` runs exactly that check first (``proc_fd_access_allowed``,
  ``PTRACE_MODE_READ_FSCREDS``) and fails with EACCES when it refuses; when it allows, a live
  process gives its path and a zombie (no memory map left) ENOENT.  The lookup of ``exe``
  inside ``/proc/<pid>`` also applies ``hidepid=`` of that /proc mount (EACCES too).
* It is asked with the reader's credentials by a fresh OS thread that changes only its own
  credentials: Linux credentials are per thread, and the raw ``setgroups``/``setresgid``/
  ``setresuid``/``capset`` syscalls (unlike glibc's wrappers, which broadcast to every thread
  of the process) touch only the calling one.  The thread becomes fsuid/fsgid = the reader's,
  no supplementary groups, no capabilities at all; it can never become root again, so it runs
  this one check and ends (threads are never reused for it).
* The directory fd of ``/proc/<pid>`` is opened by the daemon before the thread starts.  The
  answer is about the intended process only if it was not reaped before the answer: callers
  check :meth:`exithand.ExitHandle.is_reaped` after (until the reap, the number cannot be
  reused).

Cost: one thread start and five syscalls, about 100 us; done once per distinct reader
(fsuid, fsgid) and watched process at death, and at ``open()``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import threading
from typing import Optional

import exithand
from exithand import procfs

#: Raw syscall numbers (per architecture) of setgroups, setresuid, setresgid, capset.
_SYSCALLS = {
    "x86_64": (116, 117, 119, 126),
    "aarch64": (159, 147, 149, 91),
}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

ALLOWED, REFUSED = True, False


def _libc() -> Optional[ctypes.CDLL]:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def available() -> Optional[str]:
    """``None`` if the kernel can be asked here, else why not."""
    if platform.machine() not in _SYSCALLS:
        return f"no raw syscall numbers for {platform.machine()}"
    if _LIBC is None:
        return "libc cannot be loaded"
    if os.geteuid() != 0:
        return "the daemon is not root, so it cannot take a reader's credentials"
    return None


def _become(uid: int, gid: int, groups: Optional[list[int]] = None) -> None:
    """Give the calling thread (only) the credentials uid/gid, ``groups`` (default none), no
    capabilities."""
    assert _LIBC is not None
    nr_setgroups, nr_setresuid, nr_setresgid, nr_capset = _SYSCALLS[platform.machine()]
    calls: list[tuple[str, int, tuple[object, ...]]] = [
        ("setgroups", nr_setgroups, (ctypes.c_long(len(groups or [])),
                                     (ctypes.c_uint * max(1, len(groups or [])))(*(groups or [])))),
        ("setresgid", nr_setresgid, (ctypes.c_long(gid),) * 3),
        ("setresuid", nr_setresuid, (ctypes.c_long(uid),) * 3),
    ]
    for name, nr, args in calls:
        if _LIBC.syscall(ctypes.c_long(nr), *args) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"{name}: {os.strerror(e)}")
    # setresuid to a non-zero uid already cleared every capability; uid 0 keeps them: drop all
    header = ctypes.create_string_buffer(struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(bytes(24))
    if _LIBC.syscall(ctypes.c_long(nr_capset), header, data) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"capset: {os.strerror(e)}")


def _ask(dirfd: int, uid: int, gid: int, out: list[object]) -> None:
    try:
        _become(uid, gid)
        try:
            os.readlink("exe", dir_fd=dirfd)
            out.append(ALLOWED)
        except OSError as e:
            if e.errno == errno.ENOENT:  # allowed, and no memory map: a zombie
                out.append(ALLOWED)
            elif e.errno in (errno.EACCES, errno.EPERM):
                out.append(REFUSED)
            else:
                out.append(e)
    except BaseException as e:  # reported to the caller, never raised in the thread
        out.append(e)


def _visible(pids: list[int], uid: int, gid: int, groups: list[int], out: list[object]) -> None:
    try:
        _become(uid, gid, groups)
        seen = []
        me = os.getpid()  # ptrace access to our own thread group is always granted: skip it
        for pid in pids:
            if pid == me:
                continue
            try:
                procfs.exe(pid)
                seen.append(pid)
            except exithand.NoSuchProcess:
                # ENOENT: allowed and a zombie -- unless /proc/<pid> itself is gone
                if procfs.exists(pid):
                    seen.append(pid)
            except exithand.Error:
                pass  # EACCES/EPERM: refused, so hidden from this reader
        out.append(seen)
    except BaseException as e:
        out.append(e)


def visible(pids: list[int], uid: int, gid: int, groups: list[int]) -> Optional[set[int]]:
    """Which of ``pids`` would a ``hidepid=`` /proc show to this reader (ptrace read access as
    the reader, in one thread)?  None if the kernel could not be asked (show nothing)."""
    if available() is not None:
        return None
    out: list[object] = []
    t = threading.Thread(target=_visible, args=(pids, uid, gid, groups, out),
                         name=f"askkernel-{uid}", daemon=True)
    t.start()
    t.join()
    return set(out[0]) if out and isinstance(out[0], list) else None


def may_read_exit_code(pid: int, uid: int, gid: int) -> tuple[Optional[bool], str]:
    """Would the kernel show ``pid``'s exit code (field 52) to fsuid ``uid``/fsgid ``gid``
    without capabilities, now?  ``(True|False, "")``, or ``(None, reason)`` if it could not be
    asked.  The caller must check afterwards that the process was not reaped meanwhile."""
    why = available()
    if why is not None:
        return None, why
    try:
        dirfd = procfs.open_fd(pid, "", os.O_PATH | os.O_DIRECTORY)
    except exithand.Error as e:
        return None, f"{procfs.path(pid)}: {e}"
    try:
        out: list[object] = []
        t = threading.Thread(target=_ask, args=(dirfd, uid, gid, out),
                             name=f"askkernel-{uid}", daemon=True)
        t.start()
        t.join()
    finally:
        os.close(dirfd)
    if not out:
        return None, "the checking thread gave no answer"
    ans = out[0]
    if isinstance(ans, bool):
        return ans, ""
    return None, f"the kernel could not be asked: {ans}"
