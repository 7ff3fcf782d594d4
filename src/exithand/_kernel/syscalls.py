"""The few raw syscalls and ioctls the standard library lacks.

Everything here is a thin wrapper that raises ``OSError`` exactly like ``os`` functions do; the
translation to exithand exceptions happens in :mod:`exithand._kernel.errors`.

Kernel facts (checked on Linux 6.18):

* ``PIDFD_GET_INFO`` is ``_IOWR(0xFF, 11, struct pidfd_info)`` (Linux 6.13).  The struct is
  extensible: the size is encoded in the ioctl number and the kernel accepts 64 bytes (6.13),
  72 (6.16) and larger, copying back only what both sides know.  We ask with the largest layout
  we know (88 bytes, ``PIDFD_INFO_SIZE_VER3``: mask, cgroupid, 11 ids, exit_code,
  coredump_mask, coredump_signal, coredump_code, pad, supported_mask) and trust only the fields
  whose bit the kernel sets in the returned ``mask``: fields are probed, never versions.
* ``PIDFD_INFO_COREDUMP`` (bit 4, 6.16) fills ``coredump_mask`` with ``PIDFD_COREDUMPED``
  (1), ``PIDFD_COREDUMP_SKIP`` (2), ``PIDFD_COREDUMP_USER`` (4), ``PIDFD_COREDUMP_ROOT`` (8).
  Measured on 6.18: for a *live* process it is the dumpability a dump would have now (USER, or
  SKIP after ``prctl(PR_SET_DUMPABLE, 0)``), not a fact about a death; after the death the
  kernel reports only what the dump itself recorded, and 6.16-6.18 record it only for a dump
  into a coredump socket (``core_pattern`` ``@/path``): ``COREDUMPED|USER`` (0x5), visible in the
  zombie phase and after the reap.  A dump to a file or pipe, a non-dumpable process, or no dump
  leave ``coredump_mask`` 0 with the bit set: "nothing recorded", not "no dump".
* ``PIDFD_INFO_SUPPORTED_MASK`` (bit 5, 6.19) fills ``supported_mask``;
  ``PIDFD_INFO_COREDUMP_SIGNAL`` (bit 6, 6.19) ``coredump_signal``; ``PIDFD_INFO_COREDUMP_CODE``
  (bit 7, 7.1) ``coredump_code``.  6.18 sets none of the three (probed: tests/test_coredump.py).
* ``PIDFD_INFO_EXIT`` (6.15) is set in the returned mask only once the process has been
  **reaped**, and only if some pidfd for it existed before the reap.  ``exit_code`` is then the raw
  wait status (``7 << 8`` for ``exit(7)``).  There is no ptrace check: any pidfd holder may read it.
* Before the reap, asking for ``PIDFD_INFO_EXIT`` on a live or zombie process succeeds without
  the bit.  After the reap, a request *without* ``PIDFD_INFO_EXIT`` fails with ESRCH.
* ``process_mrelease(pidfd, 0)`` is syscall 448 on every architecture with the unified table
  (Linux 5.15).  EINVAL when the target is not dying yet, ESRCH when its memory is already gone.
* A pidfd from pidfs (6.9+) has a 64-bit inode unique for the boot, usable as process identity
  (util-linux ``waitpid PID:INODE``).  Before 6.9 every pidfd shares the one anonymous inode, so
  the inode means nothing; :func:`pidfd_has_unique_inode` tells which (``fstatfs`` magic).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import struct

from . import procfs
from .errors import Error

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    import ctypes
    from dataclasses import dataclass
    from typing import Optional
else:
    from .frozen import dataclass

PIDFD_INFO_PID = 1 << 0
PIDFD_INFO_CREDS = 1 << 1
PIDFD_INFO_CGROUPID = 1 << 2
PIDFD_INFO_EXIT = 1 << 3
PIDFD_INFO_COREDUMP = 1 << 4
PIDFD_INFO_SUPPORTED_MASK = 1 << 5
PIDFD_INFO_COREDUMP_SIGNAL = 1 << 6
PIDFD_INFO_COREDUMP_CODE = 1 << 7

# coredump_mask bits (include/uapi/linux/pidfd.h)
PIDFD_COREDUMPED = 1 << 0
PIDFD_COREDUMP_SKIP = 1 << 1
PIDFD_COREDUMP_USER = 1 << 2
PIDFD_COREDUMP_ROOT = 1 << 3

# pidfd_open flag (6.9): a pidfd on one thread, readable when that thread exits; = O_EXCL
PIDFD_THREAD = os.O_EXCL
# pidfd_send_signal flag (6.9): signal only the thread the pidfd names
PIDFD_SIGNAL_THREAD = 1 << 0

_PIDFD_INFO_SIZE = 88  # PIDFD_INFO_SIZE_VER3; the kernel copies back what it knows
# _IOWR(0xFF, 11, size): dir (read|write = 3) << 30 | size << 16 | type << 8 | nr
PIDFD_GET_INFO = (3 << 30) | (_PIDFD_INFO_SIZE << 16) | (0xFF << 8) | 11
# mask, cgroupid, pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid, exit_code,
# coredump_mask, coredump_signal, coredump_code, pad, supported_mask
_PIDFD_INFO_FMT = "=QQ11IiIIIIQ"

PIDFS_MAGIC = 0x50494446
SYS_PROCESS_MRELEASE = 448


def feature_disabled(name: str) -> bool:
    """Is kernel feature ``name`` switched off by ``EXITHAND_DISABLE=name[,name...]``?

    Lets tests (and users on a broken kernel) force the code paths of older kernels:
    ``pidfd`` (no pidfd_open, < 5.3 or seccomp), ``pidfs`` (no unique pidfd inodes, < 6.9),
    ``pidfd_info`` (no PIDFD_GET_INFO exit info, < 6.15), ``mrelease`` (no process_mrelease),
    ``pidfd_coredump`` (no PIDFD_INFO_COREDUMP, < 6.16: the wait status' core bit is then the
    only coredump source), ``pidfd_thread`` (no PIDFD_THREAD, < 6.9).
    """
    return name in _disabled_set(os.environ.get("EXITHAND_DISABLE", ""))


@functools.lru_cache(maxsize=8)
def _disabled_set(spec: str) -> frozenset[str]:
    # parsed once per value of the variable: this is asked on every status read
    return frozenset(spec.replace(" ", "").split(","))


@dataclass(frozen=True)
class PidfdInfo:
    """What ``PIDFD_GET_INFO`` returned; fields absent from ``mask`` are ``None``."""

    mask: int
    pid: Optional[int]
    ppid: Optional[int]
    ruid: Optional[int]
    euid: Optional[int]
    exit_status: Optional[int]
    tgid: Optional[int] = None
    #: ``coredump_mask`` when PIDFD_INFO_COREDUMP is in ``mask`` (6.16), else None
    coredump_mask: Optional[int] = None
    #: the signal that caused the dump, when PIDFD_INFO_COREDUMP_SIGNAL is in ``mask`` (6.19)
    coredump_signal: Optional[int] = None
    #: what the kernel says it supports, when PIDFD_INFO_SUPPORTED_MASK is in ``mask`` (6.19)
    supported_mask: Optional[int] = None


def pidfd_get_info(pidfd: int, mask: int) -> PidfdInfo:
    """Run ``PIDFD_GET_INFO``; raises ``OSError`` (ENOTTY/EINVAL before 6.13, ESRCH if reaped)."""
    if feature_disabled("pidfd_info"):
        raise OSError(errno.ENOTTY, "PIDFD_GET_INFO disabled by EXITHAND_DISABLE")
    buf = bytearray(_PIDFD_INFO_SIZE)
    struct.pack_into("=Q", buf, 0, mask)
    fcntl.ioctl(pidfd, PIDFD_GET_INFO, buf)
    (got, _cg, pid, tgid, ppid, ruid, _rgid, euid, _egid, _suid, _sgid, _fsuid, _fsgid,
     exit_code, cd_mask, cd_signal, _cd_code, _pad, supported) = struct.unpack_from(
        _PIDFD_INFO_FMT, buf, 0)
    if feature_disabled("pidfd_coredump"):  # as a kernel before 6.16 answers
        got &= ~(PIDFD_INFO_COREDUMP | PIDFD_INFO_COREDUMP_SIGNAL | PIDFD_INFO_COREDUMP_CODE)
        supported &= ~(PIDFD_INFO_COREDUMP | PIDFD_INFO_COREDUMP_SIGNAL
                       | PIDFD_INFO_COREDUMP_CODE)
    has_pid = bool(got & PIDFD_INFO_PID)
    has_creds = bool(got & PIDFD_INFO_CREDS)
    return PidfdInfo(
        mask=got,
        pid=pid if has_pid else None,
        ppid=ppid if has_pid else None,
        ruid=ruid if has_creds else None,
        euid=euid if has_creds else None,
        exit_status=exit_code if got & PIDFD_INFO_EXIT else None,
        tgid=tgid if has_pid else None,
        coredump_mask=cd_mask if got & PIDFD_INFO_COREDUMP else None,
        coredump_signal=cd_signal if got & PIDFD_INFO_COREDUMP_SIGNAL else None,
        supported_mask=supported if got & PIDFD_INFO_SUPPORTED_MASK else None,
    )


def pidfd_open_thread(tid: int) -> int:
    """``pidfd_open(tid, PIDFD_THREAD)`` (Linux 6.9): a pidfd on one thread.

    Raises ``OSError``: ESRCH (no such thread, or it exited), EINVAL (a kernel before 6.9 knows
    no PIDFD_THREAD; also ``EXITHAND_DISABLE=pidfd_thread``).
    """
    if feature_disabled("pidfd_thread") or feature_disabled("pidfd"):
        raise OSError(errno.EINVAL, "PIDFD_THREAD disabled by EXITHAND_DISABLE")
    return os.pidfd_open(tid, PIDFD_THREAD)


def pidfd_send_signal_thread(pidfd: int, sig: int) -> None:
    """``pidfd_send_signal(pidfd, sig, NULL, PIDFD_SIGNAL_THREAD)`` (6.9): that thread only."""
    import signal

    signal.pidfd_send_signal(pidfd, sig, None, PIDFD_SIGNAL_THREAD)


@functools.cache
def _libc() -> Optional[ctypes.CDLL]:
    """The C library, found without starting a process.

    ``ctypes.util.find_library("c")`` runs ``/sbin/ldconfig -p`` (and maybe ``gcc``) in a
    child process: a fork and an exec in the kill path of a memory killer, the moment memory is
    shortest.  ``dlopen(NULL)`` (``CDLL(None)``) instead gives the symbols already loaded into
    this process, and the interpreter is always linked against libc (glibc or musl), so
    ``syscall`` and ``fstatfs`` are found there; the soname is only a fallback for an
    interpreter that exports no libc symbols (a static build).  No process is ever started.
    """
    import ctypes  # here, not at the top: a command that never needs libc starts faster

    for name in (None, "libc.so.6", "libc.so"):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        if hasattr(lib, "syscall") and hasattr(lib, "fstatfs"):
            return lib
    return None


def process_mrelease(pidfd: int) -> None:
    """``process_mrelease(pidfd, 0)``: reap a dying process's memory on this CPU (Linux 5.15).

    Raises ``OSError`` with the kernel's errno (ENOSYS where the syscall is absent).
    """
    libc = _libc()
    if libc is None or feature_disabled("mrelease"):
        raise OSError(errno.ENOSYS, "process_mrelease unavailable (libc missing or disabled)")
    import ctypes

    res = libc.syscall(ctypes.c_long(SYS_PROCESS_MRELEASE), ctypes.c_int(pidfd), ctypes.c_uint(0))
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@functools.cache
def pidfd_has_unique_inode() -> bool:
    """True when pidfds live on pidfs (Linux 6.9+), so ``st_ino`` identifies a process.

    Probed once by really opening a pidfd on ourselves and asking ``fstatfs`` for its magic.
    """
    libc = _libc()
    if libc is None or not hasattr(os, "pidfd_open") or feature_disabled("pidfs"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    import ctypes

    try:
        buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit
        if libc.fstatfs(ctypes.c_int(fd), buf) != 0:
            return False
        f_type = ctypes.c_long.from_buffer_copy(buf.raw[: ctypes.sizeof(ctypes.c_long)]).value
        return bool(f_type == PIDFS_MAGIC)
    finally:
        os.close(fd)


def fdinfo_pid(fd: int) -> Optional[int]:
    """The ``Pid:`` line of ``/proc/self/fdinfo/<fd>`` for a pidfd (-1 once reaped, 5.x+)."""
    try:
        value = procfs.fdinfo(fd).get("Pid")
        return None if value is None else int(value)
    except (Error, ValueError):
        return None
    return None
