"""``exithand.watch()``: a system-wide stream of process exits, like bcc's exitsnoop, no BPF.

Built on the netlink proc connector (:mod:`exithand._kernel.netlink`), with its own socket
(one per watcher) subscribed to *all* proc events, unfiltered, for two reasons:

* **Fields captured while alive.**  The exit event itself carries only pid, parent and wait
  status.  The command name, uid and age are tracked from the other events as processes live:
  a fork copies the parent's command name, uid and cgroup and starts the age clock at the fork
  event's timestamp; a ``COMM`` event (``prctl(PR_SET_NAME)``) carries the new name; a ``UID``
  event the new real uid; an ``EXEC`` event makes us read ``/proc/<pid>/comm`` at once.
  Processes already running when the watch starts are read from ``/proc`` once, after
  subscribing, so none falls between the two.
* **Exact loss counts.**  The kernel numbers events per CPU (``cn_msg.seq``, assigned under a
  per-CPU lock), so for an unfiltered listener a jump in one CPU's sequence is exactly the number
  of events the kernel dropped for us (receive-queue overflow, signalled by one ``ENOBUFS``).
  Each jump is reported as an :class:`ExitGap` with that count; an overflow whose size could not
  be counted yet when the watch ends is reported with ``lost=None``.  Never silently.

Which fields may be missing (``None``), and why:

* ``comm`` after an ``exec`` if the process exited (and was reaped) before we read
  ``/proc/<pid>/comm``: the exec event does not carry the new name.  Also for processes whose
  fork event was lost in an overflow and that were gone by the ``/proc`` rescan after it.
* ``uid`` and ``age`` for the same lost-fork processes.
* ``cgroup`` membership (for ``cgroup=``) is inherited at fork, re-read from ``/proc`` at each
  ``exec``, and read again at exit if the process is still a zombie then; a process moved
  between cgroups (no event tells) and reaped before its exit event is read is matched by the
  cgroup it had at its last fork or exec.

A process is reported when its whole thread group is dead (dead means dead), not when its
leader's exit event arrives: exitsnoop reports the leader's exit, but a leader that called
``pthread_exit`` sends its event while other threads run on, and the leader of a
multi-threaded process whose other thread calls ``execve`` sends one (status 0) while the
process goes on running the new program.  So a leader's exit event is taken only if
``/proc/<tgid>/stat`` then shows the group dead (gone, another process's start time, or a
zombie with no other thread left); otherwise the process is remembered and the exit event of
a later thread that finds the group dead is taken.  A lagging reader may find the group dead
already at the leader's event, so a dead group is reported only once the socket queue is
drained (at most :data:`DEAD_HOLD` later), with the *last* exit event queued for it (the last
thread's, sent after the group died; a fork event for the number ends it early).  Its wait
status is the group's for a group exit; for a group whose last thread ended with a bare
``exit`` it is that thread's.
``ppid`` is the parent at exit from the event; where the kernel leaves it 0 (seen on 6.18 when
the parent reaps the child before the event is sent) it is the parent recorded at fork.

On a busy machine the reader thread may lag behind the kernel (it shares the CPU): events are
then queued in the socket (``DEFAULT_RCVBUF``) and nothing is lost unless that fills, but a
``/proc`` read at ``exec`` may come too late, so ``comm`` after an exec is the field most often
missing.  A name set with ``prctl(PR_SET_NAME)`` travels in its event and is never missing.

Availability is that of the proc connector: root/CAP_NET_ADMIN; from Linux 6.6 *some* kernels also
let other users in the initial user and pid namespace subscribe (refused on 6.18.44 here: the
``bind()`` fails with EPERM), so it is tried, never assumed; otherwise
:class:`exithand.BackendUnavailable` is raised, naming the refused step.
"""

from __future__ import annotations

import collections
import errno
import os
import re
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Optional, Union

from ._aio import NeverClosed, current_library, wait_readable_for
from ._handle import check_timeout, poll_ms
from ._identity import check_pid
from ._kernel import cgroup as _cgroup
from ._kernel import netlink as _netlink
from ._kernel import procfs as _procfs
from ._kernel import sigwake as _sigwake
from ._kernel.cgroup import CgroupError
from ._kernel.errors import BackendUnavailable
from ._status import signal_name

#: longest time a dead group waits for the queue to drain before it is reported (seconds)
DEAD_HOLD = 0.1
_CLK_TCK = _procfs.CLK_TCK

#: receive buffer asked for (bytes).  Each queued event costs about 1 KiB of it, so this rides
#: out ~30,000 events of backlog on a busy machine; without CAP_NET_ADMIN the kernel caps it at
#: ``net.core.rmem_max``.
DEFAULT_RCVBUF = 32 << 20


@dataclass(frozen=True)
class ProcessExit:
    """One process exit seen by :func:`watch`.

    ``time`` is the wall-clock time of the exit (seconds since the epoch); ``age`` seconds since
    the process started; ``exit_code`` or ``signal`` (with ``core_dumped``) tell how it ended.
    ``comm``, ``uid``, ``age`` may be ``None`` (see :mod:`exithand._stream`).
    """

    time: float
    pid: int
    ppid: int
    comm: Optional[str]
    uid: Optional[int]
    age: Optional[float]
    exit_code: Optional[int]
    signal: Optional[int]
    core_dumped: bool

    @property
    def failed(self) -> bool:
        """Non-zero exit code or killed by a signal (``--nonzero``)."""
        return self.signal is not None or bool(self.exit_code)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (one ``exithand watch --json`` line)."""
        return {
            "event": "exit", "time": round(self.time, 6), "pid": self.pid, "ppid": self.ppid,
            "comm": self.comm, "uid": self.uid,
            "age": round(self.age, 6) if self.age is not None else None,
            "exit_code": self.exit_code, "signal": self.signal,
            "signal_name": signal_name(self.signal) if self.signal is not None else None,
            "core_dumped": self.core_dumped,
        }


@dataclass(frozen=True)
class ExitGap:
    """Events the kernel dropped (receive buffer overflow): ``lost`` proc events of any kind
    (forks, execs, exits...), or ``None`` when the count is not known."""

    time: float
    lost: Optional[int]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (one ``exithand watch --json`` gap line)."""
        return {"event": "gap", "time": round(self.time, 6), "lost": self.lost}


WatchEvent = Union[ProcessExit, ExitGap]


@dataclass
class _Info:
    comm: Optional[str]
    uid: Optional[int]
    start_ns: Optional[int]  # CLOCK_MONOTONIC ns
    cgroup: Optional[dict[frozenset[str], str]]
    ppid: int = 0


def _printable(comm: str) -> str:
    """A name as the stream shows it: undecodable bytes replaced (procfs keeps them as
    surrogates), so printing or JSON never fails on it."""
    return comm.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _read_uid(pid: int) -> Optional[int]:
    data = _procfs.try_read(pid, "status")
    if data is None:
        return None
    uid = _procfs.parse_status(data).get("Uid")
    return None if uid is None else _procfs.id_list(uid)[0]


_CgroupKey = frozenset[str]  # controllers of a hierarchy; empty for cgroup v2


def _read_cgroup(pid: int) -> Optional[dict[_CgroupKey, str]]:
    """``/proc/<pid>/cgroup`` as {controllers: path} (v2 is the empty set)."""
    data = _procfs.try_read(pid, "cgroup")
    if data is None:
        return None
    return {frozenset(c for c in ctrl.split(",") if c): cpath
            for _, ctrl, cpath in _procfs.parse_cgroup(data.decode("utf-8", "replace"))}


def _cgroup_target(path: str) -> tuple[_CgroupKey, str]:
    """Which hierarchy and which cgroup in it ``path`` names, as ``/proc/<pid>/cgroup`` shows it.

    A path under a mounted cgroup filesystem (v2, or a v1 controller hierarchy) is resolved
    through ``/proc/self/mountinfo`` (the mount's root, e.g. a container's bind-mounted subtree,
    is prefixed); anything else is taken as a cgroup v2 path as ``/proc/<pid>/cgroup`` prints
    it.  Either must name an existing cgroup where that can be checked, else
    :class:`CgroupError`: a typo would otherwise match nothing, silently, for ever.
    """
    p = os.path.normpath(path)
    best: Optional[tuple[str, str, _CgroupKey]] = None
    data = _procfs.try_read("self", "mountinfo")
    if data is None:
        raise CgroupError(f"{path}: cannot read /proc/self/mountinfo to find cgroup mounts", path)
    text = data.decode("utf-8", "replace")
    for m in _cgroup.parse_mountinfo(text):
        root, mnt = m.root, m.mount_point
        if p == mnt or p.startswith(mnt.rstrip("/") + "/"):
            key: _CgroupKey = frozenset(m.controllers if m.version == 1 else ())
            if best is None or len(mnt) > len(best[0]):
                best = (mnt, root, key)
    if best is None:
        rel = "/" + p.strip("/")
        v2 = next((m for m in _cgroup.parse_mountinfo(text) if m.version == 2), None)
        if v2 is None:
            raise CgroupError(f"{path}: not under a mounted cgroup hierarchy, and no cgroup v2 "
                              "is mounted to look it up in", path)
        root = "/" + v2.root.strip("/")
        if root == "/" or rel == root or rel.startswith(root + "/"):
            full = os.path.join(v2.mount_point, rel[len(root):].lstrip("/"))
            if not os.path.isdir(full):
                raise CgroupError(f"{path}: no such cgroup (not under a cgroup mount, and no "
                                  f"directory {full})", path)
            return frozenset(), rel
        # the mount shows a subtree (root): a path relative to the mount point is under it
        full = os.path.join(v2.mount_point, rel.lstrip("/"))
        if not os.path.isdir(full):
            raise CgroupError(f"{path}: no such cgroup (neither {root}{rel} nor {full})", path)
        return frozenset(), "/" + (root.strip("/") + rel).strip("/")
    if not os.path.isdir(p):
        raise CgroupError(f"{path}: no such cgroup directory", path)
    mnt, root, key = best
    rel = "/" + (root.strip("/") + "/" + p[len(mnt):].strip("/")).strip("/")
    return key, rel


def _boot_to_mono_ns() -> int:
    """CLOCK_BOOTTIME - CLOCK_MONOTONIC now (suspended time), to place /proc start times."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()


class ExitWatcher:
    """An open system-wide exit stream; iterate it (sync or async), close it when done.

    Create with :func:`exithand.watch`.
    """

    def __init__(self, *, pids: Optional[list[int]] = None, uid: Optional[int] = None,
                 comm: Union[str, re.Pattern[str], None] = None, cgroup: Optional[str] = None,
                 nonzero: bool = False, timeout: Optional[float] = None,
                 count: Optional[int] = None, rcvbuf: Optional[int] = DEFAULT_RCVBUF) -> None:
        timeout = check_timeout(timeout)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            raise ValueError(f"count must be an int >= 1 or None, not {count!r}")
        if isinstance(pids, (str, bytes, bytearray)):
            raise ValueError(f"pids must be a list of ints, not {pids!r}")
        pids = [check_pid(p) for p in pids] if pids is not None else None
        if uid is not None and (isinstance(uid, bool) or not isinstance(uid, int)
                                or not 0 <= uid <= 2**32 - 2):
            raise ValueError(f"uid must be an int from 0 to {2**32 - 2} or None, not {uid!r}")
        if comm is not None and not isinstance(comm, (str, re.Pattern)):
            raise ValueError(f"comm must be a str or re.Pattern or None, not {comm!r}")
        if cgroup is not None and (not isinstance(cgroup, str) or not cgroup.strip()):
            raise ValueError(f"cgroup must be a non-empty path or None, not {cgroup!r}")
        if rcvbuf is not None and (isinstance(rcvbuf, bool) or not isinstance(rcvbuf, int)
                                   or not 0 <= rcvbuf <= 2**31 - 1):
            raise ValueError(f"rcvbuf must be an int from 0 to {2**31 - 1} bytes or None, "
                             f"not {rcvbuf!r}")
        self._pids = set(pids) if pids else None
        self._uid = uid
        self._comm = re.compile(comm) if isinstance(comm, str) else comm
        self._cgroup = _cgroup_target(cgroup) if cgroup else None
        self._nonzero = nonzero
        self._timeout = timeout
        self._count = count
        sock, _filtered, why = _netlink.subscribe_checked(None, rcvbuf)
        if sock is None:
            raise BackendUnavailable(f"cannot watch process exits: {why}")
        self._sock: Optional[socket.socket] = sock
        self._table: dict[int, _Info] = {}
        self._leader_gone: set[int] = set()  # leaders exited, groups still alive
        self._dead: dict[int, _netlink.ProcEvent] = {}  # dead groups: their last exit event
        self._dead_since = 0.0
        self._last_seq: dict[int, int] = {}
        self._overflow_uncounted = False
        self.lost = 0
        self.overflows = 0
        self.matched = 0
        self._queue: collections.deque[WatchEvent] = collections.deque()
        self._cond = threading.Condition()
        self._ended = False
        self._error: Optional[OSError] = None
        self._scan()
        self._wake_r, self._wake_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        self._waiting = 0  # iterations sleeping on the ready pipe
        self._release_pending = False  # closed while some slept: the last one closes the pipe
        os.set_blocking(self._ready_r, False)
        os.set_blocking(self._ready_w, False)
        self._thread = threading.Thread(target=self._reader, name="exithand-watch", daemon=True)
        _sigwake.start_thread(self._thread)

    # ----- state -----------------------------------------------------------------------------

    def _scan(self) -> None:
        """(Re)build the table of live processes from /proc."""
        off = _boot_to_mono_ns()
        table: dict[int, _Info] = {}
        for pid in _procfs.pids():
            st = _procfs.try_stat(pid)
            if st is None:
                continue
            comm = _printable(st.comm)
            start_ns = st.start_time * 1_000_000_000 // _CLK_TCK - off
            ppid = st.ppid
            cg = _read_cgroup(pid) if self._cgroup is not None else None
            table[pid] = _Info(comm, _read_uid(pid), start_ns, cg, ppid)
        self._table = table
        self._leader_gone &= table.keys()

    def _account(self, ev: _netlink.ProcEvent) -> int:
        last = self._last_seq.get(ev.cpu)
        self._last_seq[ev.cpu] = ev.seq if last is None else max(last, ev.seq)
        if last is not None and ev.seq > last + 1:
            return ev.seq - last - 1
        return 0

    def _process(self, data: bytes) -> list[WatchEvent]:
        out: list[WatchEvent] = []
        lost = 0
        for ev in _netlink.parse(data):
            lost += self._account(ev)
            what = ev.what
            if what == _netlink.PROC_EVENT_FORK:
                if ev.pid != ev.tgid:
                    continue  # a new thread, not a process
                if ev.tgid in self._dead:  # the number is reused: the old group is done
                    out.extend(self._flush_dead(ev.tgid))
                parent = self._table.get(ev.ppid)
                if parent is not None:
                    self._table[ev.tgid] = _Info(parent.comm, parent.uid, ev.timestamp_ns,
                                                 parent.cgroup, ev.ppid)
                else:
                    self._table[ev.tgid] = _Info(_read_comm(ev.tgid), _read_uid(ev.tgid),
                                                 ev.timestamp_ns, None, ev.ppid)
            elif what == _netlink.PROC_EVENT_EXEC:
                info = self._table.setdefault(ev.tgid, _Info(None, None, None, None))
                info.comm = _read_comm(ev.tgid)
                if self._cgroup is not None:  # moves between cgroups send no event
                    info.cgroup = _read_cgroup(ev.tgid) or info.cgroup
            elif what == _netlink.PROC_EVENT_COMM:
                if ev.pid == ev.tgid:
                    self._table.setdefault(ev.tgid, _Info(None, None, None, None)).comm = ev.comm
            elif what == _netlink.PROC_EVENT_UID:
                self._table.setdefault(ev.tgid, _Info(None, None, None, None)).uid = ev.ruid
            elif what == _netlink.PROC_EVENT_EXIT and (ev.pid == ev.tgid
                                                       or ev.tgid in self._leader_gone
                                                       or ev.tgid in self._dead):
                if ev.tgid in self._dead:
                    self._dead[ev.tgid] = ev  # a later thread of a dead group: more final
                elif self._group_alive(ev.tgid):
                    self._leader_gone.add(ev.tgid)  # report when the group is dead
                else:
                    self._leader_gone.discard(ev.tgid)
                    if not self._dead:
                        self._dead_since = time.monotonic()
                    self._dead[ev.tgid] = ev  # reported once the queue is drained
        if lost:
            self.lost += lost
            self._overflow_uncounted = False
            out.insert(0, ExitGap(time.time(), lost))
        return out

    def _flush_dead(self, only: Optional[int] = None) -> list[WatchEvent]:
        """Report the dead groups kept by :meth:`_process` (each with its last exit event)."""
        wall_off = time.time() - time.monotonic_ns() / 1e9
        out: list[WatchEvent] = []
        for tgid in [only] if only is not None else list(self._dead):
            ev = self._dead.pop(tgid)
            rec = self._exit(ev, wall_off)
            if rec is not None:
                out.append(rec)
        return out

    def _group_alive(self, tgid: int) -> bool:
        """Does the thread group ``tgid`` still live (see the module doc)?

        Alive: ``/proc/<tgid>/stat`` shows our process (same start time, within two clock
        ticks of what we recorded) in a running state, or as a zombie leader with other
        threads left (``num_threads`` > 1).  Gone, or another process: dead.
        """
        st = _procfs.try_stat(tgid)
        if st is None:
            return False
        state, threads, start_ticks = st.state, st.num_threads, st.start_time
        info = self._table.get(tgid)
        if info is not None and info.start_ns is not None:
            start_ns = start_ticks * 1_000_000_000 // _CLK_TCK - _boot_to_mono_ns()
            if abs(start_ns - info.start_ns) > 2 * 1_000_000_000 // _CLK_TCK:
                return False  # the number names another process now: ours is dead
        if state in ("X", "x"):
            return False
        if state == "Z":
            return threads > 1
        return True

    def _exit(self, ev: _netlink.ProcEvent, wall_off: float) -> Optional[ProcessExit]:
        info = self._table.pop(ev.tgid, None) or _Info(None, None, None, None)
        status = ev.exit_code
        sig = status & 0x7F
        rec = ProcessExit(
            time=wall_off + ev.timestamp_ns / 1e9, pid=ev.tgid, ppid=ev.ppid or info.ppid,
            comm=info.comm, uid=info.uid,
            age=(ev.timestamp_ns - info.start_ns) / 1e9 if info.start_ns is not None else None,
            exit_code=None if sig else (status >> 8) & 0xFF,
            signal=sig or None, core_dumped=bool(sig and status & 0x80))
        if self._nonzero and not rec.failed:
            return None
        if self._pids is not None and rec.pid not in self._pids:
            return None
        if self._uid is not None and rec.uid != self._uid:
            return None
        if self._comm is not None and (rec.comm is None or not self._comm.search(rec.comm)):
            return None
        if self._cgroup is not None and not self._in_cgroup(ev.tgid, info):
            return None
        return rec

    def _in_cgroup(self, pid: int, info: _Info) -> bool:
        cg = info.cgroup
        st = _procfs.try_stat(pid)
        if st is not None and st.state == "Z":
            cg = _read_cgroup(pid) or cg  # still our zombie: its cgroup now
        if cg is None or self._cgroup is None:
            return False
        key, want = self._cgroup
        have = cg.get(key)
        if have is None:
            return False
        return want == "/" or have == want or have.startswith(want + "/")

    def _on_overflow(self) -> None:
        self.overflows += 1
        self._overflow_uncounted = True
        self._scan()  # forks were lost too: refresh what we know of the living

    # ----- the reader thread ----------------------------------------------------------------

    def _reader(self) -> None:
        """Drain the socket as fast as events come, so /proc is read while processes live."""
        sock = self._sock
        assert sock is not None
        sfd = sock.fileno()
        while True:
            try:
                # with dead groups kept, only look: once the queue is drained, report them
                r = select.select([sfd, self._wake_r], [], [], 0 if self._dead else None)[0]
            except (OSError, ValueError):
                break
            if self._wake_r in r:
                break
            if not r or (self._dead and time.monotonic() - self._dead_since > DEAD_HOLD):
                self._push(self._flush_dead())
                if not r:
                    continue
            try:
                data = sock.recv(65536)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self._on_overflow()
                    continue
                if e.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                self._push([], error=e)
                break
            evs = self._process(data)
            if evs:
                self._push(evs)
        self._push(self._flush_dead(), end=True)

    def _push(self, evs: list[WatchEvent], error: Optional[OSError] = None,
              end: bool = False) -> None:
        with self._cond:
            self._queue.extend(evs)
            if error is not None:
                self._error = error
            if end:
                self._ended = True
            self._cond.notify_all()
        try:
            os.write(self._ready_w, b"x")  # wakes an async consumer
        except BlockingIOError:
            pass  # already full of wakeups

    # ----- iteration ---------------------------------------------------------------------------

    def _next_batch(self) -> list[WatchEvent]:
        with self._cond:
            out = list(self._queue)
            self._queue.clear()
        return out

    def _take(self, events: list[WatchEvent]) -> Iterator[WatchEvent]:
        for e in events:
            if self._done():
                return
            if isinstance(e, ProcessExit):
                self.matched += 1
            yield e

    def _done(self) -> bool:
        return self._count is not None and self.matched >= self._count

    def _final(self) -> Iterator[WatchEvent]:
        if self._overflow_uncounted:
            self._overflow_uncounted = False
            yield ExitGap(time.time(), None)

    def _check_error(self) -> None:
        if self._error is not None:
            raise self._error

    def __iter__(self) -> Iterator[WatchEvent]:
        if self._sock is None:
            raise ValueError("watch() stream is closed")
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while not self._done():
            batch, ended = self._wait_batch(deadline)
            self._check_error()
            yield from self._take(batch)
            if ended or (deadline is not None and time.monotonic() >= deadline and not batch):
                break
        yield from self._final()

    def _wait_batch(self, deadline: Optional[float]) -> tuple[list[WatchEvent], bool]:
        """Wait until events are queued, the stream ended or ``deadline`` passed; take the queue.

        Sleeps in poll() on the ready pipe, which :meth:`_push` writes after queueing.  In the
        main thread a signal pipe is polled too (installed for this wait only, never across a
        ``yield``): a handler that raises (Ctrl-C) ends the wait even when the signal lands in
        another thread (see _sigwake).  The ready pipe stays open meanwhile even if another
        thread calls :meth:`close` (see :meth:`_enter_wait`).
        """
        if self._enter_wait():
            try:
                p = select.poll()
                p.register(self._ready_r, select.POLLIN)
                left = None if deadline is None else deadline - time.monotonic()
                with _sigwake.signal_pipe(blocking=left is None or left > 0) as sig_r:
                    if sig_r is not None:
                        p.register(sig_r, select.POLLIN)
                    while True:
                        # drain before looking: a push after the look leaves a byte
                        _sigwake.drain(self._ready_r)
                        with self._cond:
                            if self._queue or self._ended:
                                break
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            break
                        ready = p.poll(poll_ms(left))
                        if sig_r is not None and any(fd == sig_r for fd, _ in ready):
                            _sigwake.drain(sig_r)  # a handler ran and did not raise: wait on
            finally:
                self._leave_wait()
        with self._cond:
            batch = list(self._queue)
            self._queue.clear()
            return batch, self._ended

    def _enter_wait(self) -> bool:
        """Count a sleeper on the ready pipe; False (do not sleep) when events are queued, the
        stream has ended, or the pipe is closed."""
        with self._cond:
            if self._queue or self._ended or self._ready_r < 0:
                return False
            self._waiting += 1
            return True

    def _leave_wait(self) -> None:
        with self._cond:
            self._waiting -= 1
            release = self._waiting == 0 and self._release_pending
        if release:
            self._close_ready()

    async def _aiter(self) -> AsyncIterator[WatchEvent]:
        if self._sock is None:
            raise ValueError("watch() stream is closed")
        # the running loop's own fd machinery (asyncio/uvloop, trio, anyio): see _aio
        current_library()  # RuntimeError with a clear message outside an event loop
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while not self._done():
            batch = self._next_batch()
            if not batch:
                if self._ended:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                if not self._enter_wait():
                    continue
                try:
                    # the ready pipe is closed only once no waiter is left (_leave_wait)
                    if (not self._queue and not self._ended
                            and not await wait_readable_for(self._ready_r, _NEVER_CLOSED, left)):
                        break
                finally:
                    _sigwake.drain(self._ready_r)
                    self._leave_wait()
                continue
            self._check_error()
            for e in self._take(batch):
                yield e
        for e in self._final():
            yield e

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self._aiter()

    # ----- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the reader thread and close the socket.  Idempotent.

        An iteration in progress in another thread ends (the stream is ended before anything
        it uses is closed; its ready pipe is closed by the last waiter to leave).
        """
        sock, self._sock = self._sock, None
        if sock is None:
            return
        os.write(self._wake_w, b"x")
        self._thread.join()  # its last push ends the stream and wakes any waiter
        sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        with self._cond:
            self._ended = True
            release = self._waiting == 0
            self._release_pending = not release
        if release:
            self._close_ready()

    def _close_ready(self) -> None:
        with self._cond:
            r, w, self._ready_r, self._ready_w = self._ready_r, self._ready_w, -1, -1
        if r >= 0:
            os.close(r)
            os.close(w)

    def __enter__(self) -> ExitWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_sock", None) is not None and hasattr(self, "_thread"):
            self.close()


_NEVER_CLOSED = NeverClosed()


def _read_comm(pid: int) -> Optional[str]:
    data = _procfs.try_read(pid, "comm")
    return data.rstrip(b"\n").decode("utf-8", "replace") if data is not None else None


def watch(*, pids: Optional[list[int]] = None, uid: Optional[int] = None,
          comm: Union[str, re.Pattern[str], None] = None, cgroup: Optional[str] = None,
          nonzero: bool = False, timeout: Optional[float] = None, count: Optional[int] = None,
          rcvbuf: Optional[int] = DEFAULT_RCVBUF) -> ExitWatcher:
    """Watch every process exit on the system (proc connector; see :mod:`exithand._stream`).

    Returns an :class:`ExitWatcher`: iterate it (``for ev in w``) or async-iterate it
    (``async for ev in w``: asyncio/uvloop, trio, or anyio on either) to get
    :class:`ProcessExit` records and :class:`ExitGap` records for events lost to overflow.
    Filters: ``pids`` (exits of these pids only), ``uid`` (real uid), ``comm`` (regular
    expression searched in the command name), ``cgroup`` (a cgroup v2 path,
    ``/sys/fs/cgroup/...`` or relative to it, including sub-cgroups), ``nonzero`` (failed exits:
    code != 0 or killed).  Iteration stops after ``timeout`` seconds or ``count`` matching exits.
    The stream is subscribed when this returns: exits from then on are seen.  A reader thread
    drains the kernel socket meanwhile (so fields are captured while processes live); records
    not yet iterated are kept in memory, so iterate (or close) a watcher you no longer need.

    Raises :class:`exithand.BackendUnavailable` where the proc connector cannot be used,
    :class:`exithand.CgroupError` when ``cgroup`` names no existing cgroup (it must exist when
    the watch starts), and ``ValueError`` for a bad argument (``re.error`` for a bad ``comm``
    pattern).
    """
    return ExitWatcher(pids=pids, uid=uid, comm=comm, cgroup=cgroup, nonzero=nonzero,
                       timeout=timeout, count=count, rcvbuf=rcvbuf)
