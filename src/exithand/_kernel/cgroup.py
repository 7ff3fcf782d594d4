"""Cgroup mounts and the cgroup v2 files a whole-group kill needs.

Mounts are found in ``/proc/self/mountinfo``, never from hard-coded paths.  Two layouts matter:

* **pure v2** (systemd default since ~2021): one ``cgroup2`` mount, usually ``/sys/fs/cgroup``,
  carrying every controller (``memory.max``, ...) next to ``cgroup.kill``/``cgroup.events``.
* **hybrid**: v1 hierarchies per controller (``/sys/fs/cgroup/memory`` with
  ``memory.limit_in_bytes``) plus a ``cgroup2`` mount (``/sys/fs/cgroup/unified``) that may carry
  no controllers at all.  ``cgroup.kill``/``cgroup.events`` exist there all the same: they belong
  to the v2 core, not to a controller.

Kernel facts relied upon:

* ``cgroup.kill`` (Linux 5.14): writing ``1`` SIGKILLs every process in the cgroup and its
  descendants, including processes forked while the kill runs (the kernel marks the cgroup
  ``CGRP_KILL`` so a racing ``fork`` fails).  The root cgroup has no ``cgroup.kill``.
* ``cgroup.events`` has a line ``populated 0|1``.  Every change makes ``poll()`` on an open fd of
  that file return ``POLLPRI|POLLERR`` (kernfs notify) until the file is read again, so "read,
  then poll, then re-read" cannot miss a change: a change between the read and the poll makes the
  poll return at once.  No sleep loop needed.
* A cgroup turns ``populated 0`` in ``cgroup_exit()``, which runs *before* ``exit_notify()``:
  the last process may be a moment away from being a zombie, so per-process pidfds become
  readable just after.  Zombies do not keep a cgroup populated.
* ``cgroup.procs`` lists the processes of this cgroup only, not of its descendants; it exists
  in v1 hierarchies too.
"""

from __future__ import annotations

import errno
import os
import select
import time
from dataclasses import dataclass
from typing import Optional

from . import procfs
from . import sigwake as _sigwake
from .errors import AccessDenied, Error


class CgroupError(Error):
    """A cgroup path is missing, not a cgroup, not usable for this operation.

    ``path`` is the path as given.  Permission problems raise :class:`AccessDenied` instead.
    """

    def __init__(self, msg: str, path: Optional[str] = None) -> None:
        super().__init__(msg, None)
        self.path = path


@dataclass(frozen=True)
class CgroupMount:
    """One cgroup filesystem mount from ``/proc/self/mountinfo``.

    ``version`` is 1 or 2; ``controllers`` are the v1 hierarchy's controllers (from the super
    options, e.g. ``("memory",)`` or ``("name=systemd",)``) or, for v2, the contents of the
    mount root's ``cgroup.controllers``.  ``root`` is the cgroup the mount shows (``/`` normally).
    """

    mount_point: str
    root: str
    version: int
    controllers: tuple[str, ...]


_unescape = procfs.unescape  # mountinfo's octal escapes (kept for older callers)

#: The options of a cgroup v1 mount that are not controllers (``cgroup1_parse_param()`` in
#: kernel/cgroup/cgroup-v1.c: ``none``, ``all``, ``noprefix``, ``clone_children``,
#: ``cpuset_v2_mode``, ``xattr``, ``favordynmods``; ``name=`` and ``release_agent=`` carry a
#: value), plus the generic per-mount flags and the v2-only ones (``nsdelegate``,
#: ``memory_*``...) in case a mountinfo line lists them.  The one list: :func:`v1_controllers`
#: uses it for :func:`parse_mountinfo` and for ``exithand.watch(cgroup=...)``.
V1_OPTIONS = frozenset({
    "rw", "ro", "relatime", "noatime", "nodiratime", "strictatime", "nosuid", "nodev", "noexec",
    "sync", "dirsync", "lazytime", "none", "all", "noprefix", "clone_children",
    "cpuset_v2_mode", "xattr", "favordynmods", "nsdelegate", "memory_recursiveprot",
    "memory_localevents", "memory_hugetlb_accounting", "pids_localevents",
})
_V1_FLAGS = V1_OPTIONS


def v1_controllers(super_options: str) -> tuple[str, ...]:
    """The hierarchy of a cgroup v1 mount as ``/proc/<pid>/cgroup`` names it: its controllers
    (and ``name=X`` for a named hierarchy) from the mount's super options, in their order."""
    return tuple(o for o in super_options.split(",") if o and o not in V1_OPTIONS
                 and ("=" not in o or o.startswith("name=")))


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup mounts in a ``mountinfo`` text (v2 controllers are left empty here)."""
    mounts = []
    for m in procfs.parse_mountinfo(text):
        if m.fstype == "cgroup":
            mounts.append(CgroupMount(m.mount_point, m.root, 1, v1_controllers(m.super_options)))
        elif m.fstype == "cgroup2":
            mounts.append(CgroupMount(m.mount_point, m.root, 2, ()))
    return mounts


def cgroup_mounts() -> list[CgroupMount]:
    """Every cgroup mount visible to this process (v2 with its root's controllers)."""
    try:
        text = procfs.read("self", "mountinfo").decode("utf-8", "surrogateescape")
    except Error as e:
        raise Error(f"cannot read /proc/self/mountinfo: {e}") from None
    out = []
    for m in parse_mountinfo(text):
        if m.version == 2:
            try:
                with open(os.path.join(m.mount_point, "cgroup.controllers")) as f:
                    ctrls = tuple(f.read().split())
            except OSError:
                ctrls = ()
            m = CgroupMount(m.mount_point, m.root, 2, ctrls)
        out.append(m)
    return out


def cgroup2_mount() -> Optional[CgroupMount]:
    """The (first) cgroup v2 mount, or ``None`` when v2 is not mounted."""
    return next((m for m in cgroup_mounts() if m.version == 2), None)


def _mount_of(path: str, mounts: list[CgroupMount]) -> Optional[CgroupMount]:
    """The cgroup mount that contains ``path`` (longest mount-point prefix), if any."""
    best: Optional[CgroupMount] = None
    for m in mounts:
        mp = m.mount_point.rstrip("/") or "/"
        inside = path == mp or path.startswith(mp + "/")
        if inside and (best is None or len(mp) > len(best.mount_point)):
            best = m
    return best


def resolve_cgroup2(path: str) -> str:
    """Turn ``path`` into the absolute directory of a non-root cgroup v2, or raise.

    ``path`` is a filesystem path (``/sys/fs/cgroup/unified/job``) or, if no such file exists, a
    path relative to the v2 mount as ``/proc/<pid>/cgroup`` prints it (``/job``).  Raises
    :class:`CgroupError` for a missing path, a path outside any cgroup filesystem, a v1 cgroup,
    the root cgroup, or a kernel without ``cgroup.kill`` (Linux < 5.14).
    """
    if not isinstance(path, str) or not path:
        raise CgroupError(f"invalid cgroup path {path!r}", None)
    mounts = cgroup_mounts()
    v2 = next((m for m in mounts if m.version == 2), None)
    real = os.path.realpath(path)
    if not os.path.lexists(path):
        alt = os.path.join(v2.mount_point, path.lstrip("/")) if v2 and path.startswith("/") \
            else None
        if alt is None or not os.path.isdir(alt):
            if alt is not None and v2 is not None:
                where = f" (nor under the cgroup v2 mount {v2.mount_point})"
            elif v2 and os.path.isdir(os.path.join(v2.mount_point, path)):
                # only a path starting with "/" is looked up under the mount (as
                # /proc/PID/cgroup prints it); say so rather than claim it is not there
                where = (f" in the current directory; for the cgroup under the v2 mount "
                         f"{v2.mount_point} write /{path}")
            else:
                where = ""
            raise CgroupError(f"no such cgroup: {path}{where}", path)
        real = os.path.realpath(alt)
    m = _mount_of(real, mounts)
    if m is None:
        raise CgroupError(f"{path} is not a cgroup: it is not on a cgroup filesystem"
                          + (f" (cgroup v2 is mounted at {v2.mount_point})" if v2 else
                             " (no cgroup v2 filesystem is mounted)"), path)
    if m.version == 1:
        hint = (f"; cgroup v2 is mounted at {v2.mount_point}" if v2 else
                "; no cgroup v2 filesystem is mounted")
        raise CgroupError(f"{path} is a cgroup v1 directory ({','.join(m.controllers)} "
                          f"hierarchy): killing a whole cgroup needs cgroup v2 "
                          f"(cgroup.kill){hint}", path)
    if not os.path.isdir(real):
        raise CgroupError(f"{path} is not a cgroup directory (it is a file in a cgroup "
                          "filesystem)", path)
    if real.rstrip("/") == m.mount_point.rstrip("/"):
        raise CgroupError(f"{path} is the root cgroup, which cannot be killed as a whole "
                          "(it holds every process)", path)
    if not os.path.exists(os.path.join(real, "cgroup.kill")):
        raise CgroupError(f"{path}: this kernel has no cgroup.kill (needs Linux 5.14)", path)
    return real


def cgroup_procs(path: str, recursive: bool = True) -> list[int]:
    """Pids in the cgroup directory ``path`` (v1 or v2), with its descendants if ``recursive``.

    A cgroup removed while walking is skipped.  Raises :class:`AccessDenied` / :class:`Error`
    when the top cgroup itself cannot be read.
    """
    pids: list[int] = []
    seen: set[int] = set()
    top = True
    for dirpath, _dirs, _files in os.walk(path, onerror=None) if recursive else [(path, [], [])]:
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                data = f.read()
        except OSError as e:
            if top:
                raise _path_error(e, path, "read cgroup.procs") from None
            continue
        finally:
            top = False
        for tok in data.split():
            pid = int(tok)
            if pid not in seen:
                seen.add(pid)
                pids.append(pid)
    return pids


def _path_error(e: OSError, path: str, what: str) -> Exception:
    if e.errno in (errno.EACCES, errno.EPERM):
        return AccessDenied(f"cgroup {path}: permission denied ({what})")
    if e.errno == errno.ENOENT:
        return CgroupError(f"cgroup {path}: gone ({what})", path)
    return CgroupError(f"cgroup {path}: {what} failed: {e.strerror}", path)


def check_killable(path: str) -> None:
    """Raise :class:`AccessDenied` now if writing ``cgroup.kill`` would be refused.

    Opening the file for writing is the kernel's own permission check (file mode plus cgroup
    delegation rules); nothing is written.
    """
    try:
        fd = os.open(os.path.join(path, "cgroup.kill"), os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _path_error(e, path, "open cgroup.kill for writing") from None
    os.close(fd)


def cgroup_kill(path: str) -> None:
    """Write ``1`` to ``cgroup.kill``: SIGKILL everything in the cgroup and below (5.14)."""
    try:
        fd = os.open(os.path.join(path, "cgroup.kill"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)
    except OSError as e:
        raise _path_error(e, path, "write cgroup.kill") from None


def _populated(data: bytes) -> bool:
    for line in data.decode().splitlines():
        k, _, v = line.partition(" ")
        if k == "populated":
            return v.strip() != "0"
    return False


def is_populated(path: str) -> bool:
    """``populated`` from ``cgroup.events`` (v2): does the cgroup or a descendant hold a task?"""
    try:
        with open(os.path.join(path, "cgroup.events"), "rb") as f:
            return _populated(f.read())
    except OSError as e:
        raise _path_error(e, path, "read cgroup.events") from None


def wait_unpopulated(path: str, timeout: Optional[float] = None) -> bool:
    """Block until ``cgroup.events`` says ``populated 0``; ``False`` if ``timeout`` ran out.

    Event-driven: read the file, ``poll()`` it for ``POLLPRI``, re-read on every wake (kernfs
    signals each change with ``POLLPRI|POLLERR`` until the file is read again).  A cgroup removed
    while we wait counts as empty (it can only be removed once empty).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        fd = os.open(os.path.join(path, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _path_error(e, path, "open cgroup.events") from None
    try:
        p = select.poll()
        p.register(fd, select.POLLPRI | select.POLLERR)
        # a signal handler that raises (Ctrl-C) ends the wait
        with _sigwake.signal_pipe(blocking=timeout is None or timeout > 0) as sig_r:
            if sig_r is not None:
                p.register(sig_r, select.POLLIN)
            return _wait_unpopulated(fd, p, sig_r, path, deadline)
    finally:
        os.close(fd)


def _wait_unpopulated(fd: int, p: select.poll, sig_r: Optional[int], path: str,
                      deadline: Optional[float]) -> bool:
    while True:
        try:
            data = os.pread(fd, 4096, 0)
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return True  # the cgroup was removed: it was empty
            raise _path_error(e, path, "read cgroup.events") from None
        if not _populated(data):
            return True
        if deadline is None:
            ms = -1
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # poll(2) takes an int of ms: wait in slices of at most INT_MAX, the loop
            # re-checks the deadline
            ms = min(2**31 - 1, max(1, int(left * 1000 + 0.999)))
        if p.poll(ms) and sig_r is not None:
            _sigwake.drain(sig_r)  # a handler ran and did not raise: re-read, wait on
