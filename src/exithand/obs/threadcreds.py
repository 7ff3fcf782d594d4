"""Become another user on *this thread only*, for the length of a ``with`` block.

Linux keeps credentials per thread (``struct cred`` hangs off each task); it is glibc's
``setresuid``/``setresgid``/``setgroups`` (and so Python's ``os.setresuid``) that broadcast a
change to every thread of the process (NPTL's "setxid" signal, for POSIX semantics).  The raw
system calls change only the caller.  A root daemon can therefore connect to a user's D-Bus
session bus from its notification thread as that user, which the bus requires (dbus-daemon
checks the peer's ``SO_PEERCRED`` uid, taken at ``connect()``, against the bus owner's), while
its main thread stays root and keeps deciding and killing.

The saved uid stays 0 while switched (``setresuid(uid, uid, -1)``), so the way back is allowed;
the effective capabilities drop with the effective uid and come back from the permitted set when
it returns to 0 (``capabilities(7)``, "Effect of user ID changes on capabilities").  If the way
back ever failed the thread could not be trusted: :class:`CredentialsError` is raised and the
caller stops using the thread.  Only x86_64 and aarch64 system call numbers are known here;
elsewhere :func:`supported` is False.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from collections.abc import Iterator

# (setgroups, setresuid, setresgid): arch/x86/entry/syscalls/syscall_64.tbl and
# include/uapi/asm-generic/unistd.h (aarch64)
_NR = {"x86_64": (116, 117, 119), "aarch64": (159, 147, 149)}.get(platform.machine())


class CredentialsError(OSError):
    """A per-thread credential change failed (the thread's identity is uncertain on the way
    back)."""


def supported() -> bool:
    return _NR is not None and os.geteuid() == 0


def _call(nr: int, *args: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    if fn(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args)) != 0:
        e = ctypes.get_errno()
        raise CredentialsError(e, os.strerror(e))


def _setgroups(groups: list[int]) -> None:
    assert _NR is not None
    arr = (ctypes.c_uint * max(1, len(groups)))(*groups)
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    if fn(ctypes.c_long(_NR[0]), ctypes.c_long(len(groups)), arr) != 0:
        e = ctypes.get_errno()
        raise CredentialsError(e, os.strerror(e))


@contextlib.contextmanager
def as_user(uid: int, gid: int) -> Iterator[None]:
    """This thread runs as ``uid``/``gid`` (no supplementary groups) inside the block."""
    assert _NR is not None and os.geteuid() == 0
    _nr_groups, nr_uid, nr_gid = _NR
    groups = os.getgroups()
    rgid, egid, _sgid = os.getresgid()
    _setgroups([])
    try:
        _call(nr_gid, gid, gid, -1)
        try:
            _call(nr_uid, uid, uid, -1)
            try:
                yield
            finally:
                _call(nr_uid, 0, 0, -1)
        finally:
            _call(nr_gid, rgid, egid, -1)
    finally:
        _setgroups(groups)
        if os.geteuid() != 0 or os.getegid() != egid:
            raise CredentialsError(0, "could not return to our own credentials")
