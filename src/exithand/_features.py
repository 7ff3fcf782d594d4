"""Kernel features this caller can use, each probed for real, never inferred from a version.

Why probe instead of comparing ``uname -r``: permissions and features differ between kernels of
the same version (distribution and stable builds, seccomp filters, LSMs, sysctls).  Measured
example: Linux 6.6 relaxed the proc connector's check for unprivileged listeners, yet on 6.18.44
here ``bind()`` to the proc connector group fails with EPERM for uid 65534.  So each probe runs
the smallest real operation, as the calling user, in the calling namespaces:

* ``pidfd``: ``pidfd_open(getpid())`` (5.3; seccomp may refuse it).
* ``pidfs``: a pidfd's filesystem is pidfs, so ``st_ino`` names one process per boot (6.9).
* ``pidfd_info_exit``: a child that exits 7 is reaped, then ``PIDFD_GET_INFO`` with
  ``PIDFD_INFO_EXIT`` on a pidfd opened before the reap must report 7 (6.15).
* ``process_mrelease``: on our own, living process the syscall must answer EINVAL ("not
  dying"): the syscall exists and is not filtered (5.15).  ENOSYS/EPERM mean it cannot be used.
* ``proc_connector``: the connector backend's own check (open, bind, subscribe, self-test exit).

``EXITHAND_DISABLE`` switches features off here too, so ``exithand info`` shows what a forced
fallback run gets.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sys
from dataclasses import dataclass

from ._backends import availability
from ._kernel import syscalls as _sys


@dataclass(frozen=True)
class FeatureInfo:
    """One kernel feature: ``available`` for this caller (really tried), else ``reason``."""

    name: str
    available: bool
    reason: str


def _pidfd() -> tuple[bool, str]:
    if _sys.feature_disabled("pidfd") or not hasattr(os, "pidfd_open"):
        return False, "disabled by EXITHAND_DISABLE=pidfd" if hasattr(os, "pidfd_open") else \
            "this Python has no os.pidfd_open"
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as e:
        return False, f"pidfd_open: {os.strerror(e.errno or 0)}"
    return True, ""


def _pidfs() -> tuple[bool, str]:
    if not _pidfd()[0]:
        return False, "needs pidfd_open"
    if _sys.pidfd_has_unique_inode():
        return True, ""
    if _sys.feature_disabled("pidfs"):
        return False, "disabled by EXITHAND_DISABLE=pidfs"
    return False, "pidfds are not on pidfs (Linux < 6.9): their inode does not name a process"


def _spawn_exit7() -> int:
    sh = shutil.which("sh") or "/bin/sh"
    if os.path.exists(sh):
        return os.posix_spawn(sh, [sh, "-c", "exit 7"], {})
    return os.posix_spawn(sys.executable, [sys.executable, "-S", "-c", "raise SystemExit(7)"],
                          {})


def _pidfd_info_exit() -> tuple[bool, str]:
    if not hasattr(os, "pidfd_open") or _sys.feature_disabled("pidfd"):
        return False, "needs pidfd_open"
    try:
        child = _spawn_exit7()
    except OSError as e:
        return False, f"cannot start a probe child: {os.strerror(e.errno or 0)}"
    try:
        fd = os.pidfd_open(child)
    except OSError as e:
        os.waitpid(child, 0)
        return False, f"pidfd_open: {os.strerror(e.errno or 0)}"
    try:
        os.waitpid(child, 0)
        try:
            info = _sys.pidfd_get_info(fd, _sys.PIDFD_INFO_EXIT)
        except OSError as e:
            return False, f"PIDFD_GET_INFO: {os.strerror(e.errno or 0)} (Linux < 6.13?)"
        if info.exit_status is None:
            return False, "PIDFD_GET_INFO has no PIDFD_INFO_EXIT (Linux < 6.15)"
        if os.WIFEXITED(info.exit_status) and os.WEXITSTATUS(info.exit_status) == 7:
            return True, ""
        return False, f"PIDFD_INFO_EXIT gave wait status {info.exit_status:#x} for an exit 7"
    finally:
        os.close(fd)


def _mrelease() -> tuple[bool, str]:
    if not hasattr(os, "pidfd_open") or _sys.feature_disabled("pidfd"):
        return False, "needs pidfd_open"
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as e:
        return False, f"pidfd_open: {os.strerror(e.errno or 0)}"
    try:
        _sys.process_mrelease(fd)
    except OSError as e:
        if e.errno == errno.EINVAL:  # we are alive, not dying: the syscall is there
            return True, ""
        return False, f"process_mrelease: {os.strerror(e.errno or 0)}"
    finally:
        os.close(fd)
    return False, "process_mrelease released a living process (unexpected)"


def _connector() -> tuple[bool, str]:
    for name, ok, why in availability():
        if name == "connector":
            return ok, why
    return False, "no connector backend"


_PROBES = {
    "pidfd": _pidfd,
    "pidfs": _pidfs,
    "pidfd_info_exit": _pidfd_info_exit,
    "process_mrelease": _mrelease,
    "proc_connector": _connector,
}


@functools.cache
def _probe(name: str) -> tuple[bool, str]:
    return _PROBES[name]()


def features() -> list[FeatureInfo]:
    """Every kernel feature exithand uses, probed once per process as the calling user.

    See the module docstring for what each probe does; probing ``pidfd_info_exit`` starts and
    reaps one short-lived child, and ``proc_connector`` may start the shared listener (as the
    connector backend would).
    """
    return [FeatureInfo(name, *_probe(name)) for name in _PROBES]
