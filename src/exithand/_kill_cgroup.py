"""kill_cgroup: kill a whole cgroup v2 with ``cgroup.kill`` and wait until it is empty.

Kernel facts (see :mod:`exithand._kernel.cgroup`): ``cgroup.kill`` (Linux 5.14) SIGKILLs every
process
in the cgroup and below, including processes forked while it runs; ``cgroup.events`` reports
``populated 0`` through ``poll`` (``POLLPRI``) once the last task has left, which happens in
``cgroup_exit()``, just *before* each task becomes a zombie, so per-process pidfds turn readable
a moment later.  Each process listed before the kill is pinned with a pidfd (and checked to be in
the cgroup after the open, so a reused number is not reported) and reported like
:func:`exithand.kill_and_wait` reports it; processes forked during the kill are killed by the
kernel but not listed.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal as _signal
import time
from dataclasses import dataclass
from typing import Any, Optional

from ._handle import MAX_POLL_SECONDS, check_timeout
from ._handle import open as _open
from ._kernel import cgroup as _cgroup
from ._kernel import procfs as _procfs
from ._kernel import sigwake as _sigwake
from ._kernel import tree as _tree
from ._kernel.errors import AccessDenied, Error, NoSuchProcess
from ._kill import KillResult, _Member, _mrelease, check_signal


@dataclass(frozen=True)
class CgroupKillResult:
    """What :func:`kill_cgroup` did.

    ``empty`` is True when ``cgroup.events`` said ``populated 0`` before the timeout; then
    ``seconds`` is the time from the first signal to that moment.  ``processes`` has one
    :class:`KillResult` per process found in the cgroup before the kill (processes forked during
    the kill are killed too, by the kernel, but not reported one by one).  ``remaining`` lists
    the pids still in the cgroup at the timeout.
    """

    path: str
    empty: bool
    seconds: Optional[float]
    processes: tuple[KillResult, ...]
    remaining: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``exithand kill --cgroup --json``)."""
        return {"cgroup": self.path, "empty": self.empty,
                "seconds": None if self.seconds is None else round(self.seconds, 6),
                "processes": len(self.processes), "remaining": list(self.remaining)}


def _in_cgroup(pid: int, rel: str) -> bool:
    """Is ``pid`` in the v2 cgroup ``rel`` (relative to the v2 mount) or below it?"""
    data = _procfs.try_read(pid, "cgroup")
    for hid, ctrl, path in _procfs.parse_cgroup(data.decode("utf-8", "surrogateescape")
                                                if data is not None else ""):
        if hid == 0 and not ctrl:
            path = path.strip()
            return path == rel or path.startswith(rel.rstrip("/") + "/")
    return False


def kill_cgroup(path: str, *, signal: int = _signal.SIGKILL, grace: Optional[float] = None,
                release_memory: bool = False,
                timeout: Optional[float] = None) -> CgroupKillResult:
    """Kill every process in a cgroup v2 (and its descendants) and wait until it is empty.

    With ``signal=SIGKILL`` (default) this writes ``cgroup.kill`` (Linux 5.14), which also kills
    processes forked during the kill.  With another signal, that signal goes to each listed
    process through its pidfd, and ``cgroup.kill`` follows after ``grace`` seconds (``None``:
    no escalation, just wait).  Emptiness is read from
    ``cgroup.events`` (``populated 0``) with ``poll``, no sleep loop.

    ``path`` may be a directory on the v2 mount or a path relative to it (as
    ``/proc/<pid>/cgroup`` prints it).  Raises :class:`CgroupError` for a missing path, a
    non-cgroup path, a v1 cgroup, the root cgroup or a cgroup holding the caller itself, and
    :class:`AccessDenied` (before anything is signalled) if the caller may not write
    ``cgroup.kill``.
    """
    sig = check_signal(signal)
    grace = check_timeout(grace)
    timeout = check_timeout(timeout)
    real = _cgroup.resolve_cgroup2(path)
    mount = _cgroup._mount_of(real, _cgroup.cgroup_mounts())
    assert mount is not None
    rel = "/" + os.path.relpath(real, mount.mount_point)
    _cgroup.check_killable(real)
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout

    pids = _cgroup.cgroup_procs(real)
    if os.getpid() in pids:
        raise _cgroup.CgroupError(f"{path}: this process ({os.getpid()}) is in the cgroup "
                                  "itself; cgroup.kill would kill it too", path)
    members: list[_Member] = []
    epoll = select.epoll()
    events_fd = -1
    # in the main thread a signal whose handler raises (Ctrl-C) must end the waits below
    sig_pipe = contextlib.ExitStack()
    try:
        sig_r = sig_pipe.enter_context(_sigwake.signal_pipe(blocking=timeout != 0))
        if sig_r is not None:
            epoll.register(sig_r, select.EPOLLIN)
        for pid in pids:
            try:
                h = _open(pid)
            except NoSuchProcess:
                continue
            except Error:
                continue  # e.g. a thread id listed during a race; cgroup.kill still gets it
            parent = _tree.parent_of(pid)  # read by number: checked by the poll() below
            if not _in_cgroup(pid, rel) or not h.is_alive():
                h.close()  # died, or the number was reused outside the cgroup
                continue
            members.append(_Member(h, owned=True, parent=parent))
        for m in members:
            m.memory = m.read_memory()
        try:
            events_fd = os.open(os.path.join(real, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise _cgroup._path_error(e, real, "open cgroup.events") from None
        epoll.register(events_fd, select.EPOLLPRI | select.EPOLLERR)
        by_fd = {}
        for m in members:
            by_fd[m.handle.fileno()] = m
            epoll.register(m.handle.fileno(), select.EPOLLIN)

        t0 = time.monotonic()
        killed = False
        if sig == _signal.SIGKILL:
            _cgroup_kill_all(real, members, release_memory, escalated=False)
            killed = True
        else:
            for m in members:
                try:
                    if m.send(sig):
                        m.wake_if_stopped()
                except AccessDenied:
                    pass  # cgroup.kill will still reach it after the grace
        # every process gets at least ``grace`` after its own signal
        escalate_at = None if killed or grace is None else time.monotonic() + grace
        empty = False
        t_empty: Optional[float] = None
        while True:
            try:
                data = os.pread(events_fd, 4096, 0)
            except OSError:
                data = b"populated 0\n"  # the cgroup was removed, so it was empty
            if not _cgroup._populated(data):
                empty = True
                t_empty = time.monotonic()
                break
            now = time.monotonic()
            stops = [x for x in (escalate_at, deadline) if x is not None]
            if stops and now >= min(stops):
                if escalate_at is not None and now >= escalate_at:
                    escalate_at = None
                    _cgroup_kill_all(real, members, release_memory, escalated=True)
                    continue
                break
            # at most MAX_POLL_SECONDS at once (epoll_wait's int of ms): the loop re-checks
            wait_s = -1.0 if not stops else min(max(0.0, min(stops) - now), MAX_POLL_SECONDS)
            for fd, _ev in epoll.poll(wait_s):
                if fd == sig_r:
                    _sigwake.drain(fd)  # a handler ran and did not raise: wait on
                    continue
                m2 = by_fd.get(fd)
                if m2 is not None:
                    m2.saw_dead()
                    epoll.unregister(fd)
                    del by_fd[fd]
        # The cgroup empties in cgroup_exit(), just before each process turns zombie: give the
        # last pidfds a moment (bounded) to become readable, then report.
        if empty:
            settle = time.monotonic() + 1.0
            if deadline is not None:
                settle = min(settle, max(deadline, time.monotonic()))
            while by_fd:
                left = settle - time.monotonic()
                if left <= 0:
                    break
                got = epoll.poll(left)
                if not got:
                    break
                for fd, _ev in got:
                    if fd == sig_r:
                        _sigwake.drain(fd)
                        continue
                    m2 = by_fd.pop(fd, None)
                    if m2 is not None:
                        m2.saw_dead()
                        epoll.unregister(fd)
            for m in by_fd.values():
                if m.t_dead is None:
                    m.timeout_reason = "left the cgroup before the kill"
        remaining = () if empty else tuple(_safe_procs(real))
        for m in members:
            if m.t_dead is None and m.timeout_reason is None:
                m.timeout_reason = "alive in the cgroup at the timeout"
        results = tuple(m.result(sig) for m in members)
        secs = None if t_empty is None else t_empty - t0
        return CgroupKillResult(real, empty, secs, results, remaining)
    finally:
        epoll.close()
        sig_pipe.close()
        if events_fd >= 0:
            os.close(events_fd)
        for m in members:
            m.handle.close()


def _safe_procs(path: str) -> list[int]:
    try:
        return _cgroup.cgroup_procs(path)
    except Error:
        return []


def _cgroup_kill_all(real: str, members: list[_Member], release_memory: bool,
                     escalated: bool) -> None:
    hit = [m for m in members if m.t_dead is None and m.handle.is_alive()]
    now = time.monotonic()
    _cgroup.cgroup_kill(real)
    for m in hit:
        if m.t_first is None:
            m.t_first = now
        m.signals.append(int(_signal.SIGKILL))
        m.escalated = escalated
    if release_memory:
        for m in members:
            if m.t_dead is None:
                _mrelease(m)
