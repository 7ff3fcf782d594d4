"""kill_and_wait: signal, escalate, release memory, and wait until really dead.

This is the low-memory-killer workflow (Android lmkd, procps ``pkill --mrelease``) as one call:

1. **Pin first.**  Every target is opened as an :class:`ExitHandle` (a pidfd, identity verified
   with ``PID:INODE`` when given) *before* the first signal, and every signal goes through
   ``pidfd_send_signal``: a process that died and whose number was reused is never hit.
2. **Check permission first.**  Signal 0 through each pidfd is the kernel's own kill(2)
   permission check; one refusal raises :class:`AccessDenied` before anything is signalled.
3. **Measure, then signal.**  RSS + swap (``VmRSS`` + ``VmSwap`` of ``/proc/<pid>/status``) is
   read just before the signal: what the death will release (shared pages may live on).
4. **Release memory on our CPU.**  With ``release_memory=True``, ``process_mrelease(pidfd, 0)``
   (Linux 5.15) right after each SIGKILL: the kernel's OOM reaper code unmaps the victim's
   private memory in *our* context instead of waiting for the victim to be scheduled and run its
   own ``exit_mmap`` (slow when the victim is short of CPU).  Its errnos (mm/oom_kill.c):
   ``EINVAL`` the target is not dying (yet: its mm is shared with a live process, or our SIGKILL
   has not taken effect) -> retried for a short while; ``EAGAIN`` the reap could not finish
   (mmap lock contention) -> retried; ``ESRCH`` no thread holds the mm any more -> its exit
   already released it.  Success with nothing left to do also returns 0.
5. **Wait for death**, not for a number to vanish: one epoll (:class:`WaitSet`) over the pidfds;
   escalate survivors to SIGKILL after ``grace``.

Process trees (``tree=True``) are frozen first: each known process is sent SIGSTOP, and its
children are read only once it *is* stopped (see :mod:`exithand._kernel.tree`: a stopped process
   is not
inside ``fork`` and cannot start one, and keeps its children), so the snapshot is complete and
stays complete.  Then every member gets the signal, and the stopped ones are continued so a
handler can run.  While a catchable signal is being handled, children of live members are
re-read on every death and every 50 ms and new ones are frozen and signalled too; escalation
re-freezes the whole remaining tree before SIGKILL.  Limit (documented, inherent in ancestry):
after SIGCONT, a handler that forks *and exits* within one re-scan interval orphans its child to
a subreaper/init, where ancestry can no longer find it; with ``signal=SIGKILL`` (no handler runs)
the tree kill is exact.  For an airtight kill of arbitrary trees use a cgroup:
:func:`exithand.kill_cgroup` (:mod:`exithand._kill_cgroup`) writes ``cgroup.kill``, which also
catches forks racing with the kill.
"""

from __future__ import annotations

import errno
import os
import signal as _signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional, Union, cast

from . import _identity
from ._handle import ExitHandle, check_timeout
from ._handle import open as _open
from ._kernel import procfs as _procfs
from ._kernel import tree as _tree
from ._kernel.errors import AccessDenied, Error, NoSuchProcess, NotProcessLeader
from ._status import ExitStatus, signal_name
from ._waitset import WaitSet

#: died by the signal we sent first
OUTCOME_KILLED = "killed"
#: died by our SIGKILL, sent after ``grace`` ran out
OUTCOME_ESCALATED = "escalated"
#: died, not by a signal we sent: an exit code (e.g. a TERM handler that exits), another signal
OUTCOME_EXITED = "exited"
#: died, but how cannot be told (``status.reason`` says why)
OUTCOME_DIED = "died"
#: dead or gone before we signalled it (a ``PID:INODE`` whose number was reused counts as gone)
OUTCOME_ALREADY_GONE = "already_gone"
#: still alive when ``timeout`` ran out (it is not signalled again)
OUTCOME_TIMED_OUT = "timed_out"

#: ``process_mrelease`` returned 0: the memory was released on our CPU
MRELEASE_RELEASED = "released"
#: ``ESRCH``: the victim's own exit had already released its memory
MRELEASE_ALREADY = "already_released"
#: another error (``mrelease_error`` says which), or ENOSYS (kernel < 5.15)
MRELEASE_FAILED = "failed"

RESCAN_INTERVAL = 0.05  # tree mode: re-read children of live members this often (seconds)
_RESCAN_MIN_GAP = 0.005  # ... and on a death, unless the last look is fresher than this

_NOT_KILLING = frozenset({_signal.SIGSTOP, _signal.SIGCONT, _signal.SIGTSTP, _signal.SIGTTIN,
                          _signal.SIGTTOU})

Target = Union[int, str, "tuple[int, Optional[int]]", ExitHandle]


@dataclass(frozen=True)
class KillResult:
    """What happened to one process.

    ``outcome`` is one of the ``OUTCOME_*`` strings.  ``signals`` are the signals we sent, in
    order (the SIGSTOP/SIGCONT of a tree freeze are not listed).  ``seconds`` runs from our first
    signal to the moment we saw it dead.  ``memory`` is RSS + swap in bytes read just before the
    first signal (``None`` if unreadable, e.g. already a zombie).  ``mrelease`` is ``None`` when
    ``process_mrelease`` was not called, else one of the ``MRELEASE_*`` strings, with the errno
    text in ``mrelease_error`` on failure.  ``parent`` is the parent pid for a process found
    through a tree or cgroup (``None`` for a target you named).
    """

    pid: int
    inode: Optional[int]
    outcome: str
    status: Optional[ExitStatus] = None
    signals: tuple[int, ...] = ()
    seconds: Optional[float] = None
    memory: Optional[int] = None
    mrelease: Optional[str] = None
    mrelease_error: Optional[str] = None
    parent: Optional[int] = None
    reason: Optional[str] = None

    @property
    def dead(self) -> bool:
        """Is the process known to be dead (or gone) now?"""
        return self.outcome != OUTCOME_TIMED_OUT

    def describe(self) -> str:
        """One line for people, built on :meth:`ExitStatus.describe` (FreeBSD pwait words)."""
        if self.outcome == OUTCOME_ALREADY_GONE:
            base = f"{self.pid}: already gone"
            if self.status is not None and self.status.known:
                base += f" ({self.status.describe()[len(str(self.pid)) + 2:].rstrip('.')})"
            return base + (f": {self.reason}." if self.reason else ".")
        if self.outcome == OUTCOME_TIMED_OUT:
            return f"{self.pid}: still running{': ' + self.reason if self.reason else ''}."
        assert self.status is not None
        line = self.status.describe().rstrip(".")
        extra = []
        if self.outcome == OUTCOME_ESCALATED:
            extra.append("escalated")
        if self.seconds is not None:
            extra.append(f"after {self.seconds:.3f} s")
        if self.memory is not None:
            extra.append(f"{self.memory / 1048576:.1f} MiB released")
        if self.mrelease is not None:
            extra.append(f"process_mrelease: {self.mrelease}"
                         + (f" ({self.mrelease_error})" if self.mrelease_error else ""))
        return line + (f" ({', '.join(extra)})" if extra else "") + "."

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``exithand kill --json``)."""
        d: dict[str, Any] = {"pid": self.pid, "inode": self.inode, "outcome": self.outcome,
                             "parent": self.parent}
        st = self.status.as_dict() if self.status is not None else {
            "exit_code": None, "signal": None, "signal_name": None, "core_dumped": False,
            "known": False, "source": None, "reason": None}
        st.pop("pid", None)
        d.update(st)
        d.update({
            "signals_sent": [signal_name(s) for s in self.signals],
            "seconds": None if self.seconds is None else round(self.seconds, 6),
            "memory_bytes": self.memory,
            "mrelease": self.mrelease,
            "mrelease_error": self.mrelease_error,
        })
        if self.reason is not None:
            d["reason"] = self.reason
        return d


@dataclass(eq=False)
class _Member:
    handle: ExitHandle
    owned: bool
    parent: Optional[int] = None
    memory: Optional[int] = None
    signals: list[int] = field(default_factory=list)
    t_first: Optional[float] = None
    t_dead: Optional[float] = None
    status: Optional[ExitStatus] = None
    escalated: bool = False
    stopped: bool = False
    denied: bool = False
    mrelease: Optional[str] = None
    mrelease_error: Optional[str] = None
    gone_reason: Optional[str] = None
    timeout_reason: Optional[str] = None

    @property
    def pid(self) -> int:
        return self.handle.pid

    def send(self, sig: int, record: bool = True) -> bool:
        """Signal through the pidfd; False if it was reaped meanwhile."""
        try:
            self.handle.send_signal(sig)
        except NoSuchProcess:
            return False
        if record:
            if self.t_first is None:
                self.t_first = time.monotonic()
            self.signals.append(int(sig))
        return True

    def read_memory(self) -> Optional[int]:
        """:func:`memory_bytes` of this member's process, or None.

        The read names a number: it was about our process only if that process was still
        alive when it finished (a dead one has no memory left to report, and once reaped the
        number may name a newcomer).
        """
        mem = memory_bytes(self.pid)
        if mem is not None and not self.handle.is_alive():
            return None
        return mem

    def wake_if_stopped(self) -> None:
        """Continue the process if it is stopped: a stopped process keeps a catchable signal
        pending until continued, so it would never die of it (bash's ``kill`` does the same
        for a stopped job, systemd after SIGTERM).  A ptrace stop (``t``) is its tracer's."""
        states = _tree._task_states(self.pid)
        if states and "T" in states:
            self.send(_signal.SIGCONT, record=False)

    def saw_dead(self) -> None:
        if self.t_dead is None:
            self.t_dead = time.monotonic()
        if self.status is None or not self.status.known:
            self.status = self.handle.status()

    def result(self, first_sig: int) -> KillResult:
        h = self.handle
        ident = h.identity
        if self.gone_reason is not None:
            return KillResult(ident.pid, ident.inode, OUTCOME_ALREADY_GONE, self.status,
                              (), None, None, None, None, self.parent, self.gone_reason)
        if self.t_dead is None:
            return KillResult(ident.pid, ident.inode, OUTCOME_TIMED_OUT, None,
                              tuple(self.signals), None, self.memory, self.mrelease,
                              self.mrelease_error, self.parent, self.timeout_reason)
        st = self.status if self.status is not None and self.status.known else h.status()
        if st is None or not st.known:
            outcome = OUTCOME_DIED
        elif st.signal == _signal.SIGKILL and self.escalated:
            outcome = OUTCOME_ESCALATED
        elif st.signal is not None and st.signal in self.signals:
            outcome = OUTCOME_KILLED
        else:
            outcome = OUTCOME_EXITED
        secs = None if self.t_first is None else max(0.0, self.t_dead - self.t_first)
        return KillResult(ident.pid, ident.inode, outcome, st, tuple(self.signals), secs,
                          self.memory, self.mrelease, self.mrelease_error, self.parent, None)


# ----- small helpers ---------------------------------------------------------------------------

def check_signal(sig: object) -> int:
    """A signal that can end a process: 1..SIGRTMAX, not a stop/continue signal."""
    if isinstance(sig, bool) or not isinstance(sig, int):
        raise ValueError(f"signal must be an int or signal.Signals, not {sig!r}")
    s = int(sig)
    if not 1 <= s <= _signal.SIGRTMAX:
        raise ValueError(f"invalid signal {s}: must be 1..{int(_signal.SIGRTMAX)}")
    if s in _NOT_KILLING:
        raise ValueError(f"{signal_name(s)} stops or continues a process, it cannot end one")
    return s


def memory_bytes(pid: int) -> Optional[int]:
    """``VmRSS`` + ``VmSwap`` of ``/proc/<pid>/status`` in bytes (``None``: no mm, or gone)."""
    data = _procfs.try_read(pid, "status")
    if data is None:
        return None
    fields = _procfs.parse_status(data)
    total, found = 0, False
    for name in ("VmRSS", "VmSwap"):
        if name in fields:
            total += int(fields[name].split()[0]) * 1024  # the kernel prints kB
            found = True
    return total if found else None


def _mrelease(m: _Member) -> None:
    """``process_mrelease`` after SIGKILL, on the caller's CPU, under the one retry rule
    (:meth:`ExitHandle.release_memory` with ``retry=ExitHandle.RELEASE_RETRY``)."""
    try:
        m.handle.release_memory(retry=ExitHandle.RELEASE_RETRY)
    except NoSuchProcess:
        m.mrelease = MRELEASE_ALREADY
        return
    except Error as e:
        if e.errno is None:  # no syscall made: the backend holds no pidfd
            m.mrelease, m.mrelease_error = MRELEASE_FAILED, "the backend holds no pidfd"
            return
        name = errno.errorcode.get(e.errno, str(e.errno))
        hint = " (process_mrelease needs Linux 5.15)" if e.errno == errno.ENOSYS else ""
        m.mrelease, m.mrelease_error = MRELEASE_FAILED, f"{name}: {os.strerror(e.errno)}{hint}"
        return
    m.mrelease = MRELEASE_RELEASED


def _open_target(t: Target) -> tuple[Optional[ExitHandle], bool, Optional[str], int]:
    """-> (handle or None if gone, owned, gone reason, pid)."""
    if isinstance(t, ExitHandle):
        return t, False, None, t.pid
    if isinstance(t, str):
        pid, inode = _identity.parse_target(t)
    elif isinstance(t, tuple) and len(t) == 2:
        pid, inode = t
    elif isinstance(t, int) and not isinstance(t, bool):
        pid, inode = t, None
    else:
        raise ValueError(f"invalid target {t!r}: a pid, 'PID:INODE', (pid, inode) or ExitHandle")
    try:
        return _open(pid, inode=inode), True, None, pid
    except NotProcessLeader:
        raise
    except NoSuchProcess as e:
        return None, False, str(e), pid


class _Gone:
    """A target that could not be opened: reported as already gone, never signalled."""

    def __init__(self, pid: int, inode: Optional[int], reason: str) -> None:
        self.result = KillResult(pid, inode, OUTCOME_ALREADY_GONE, reason=reason)


# ----- the tree ----------------------------------------------------------------------------------

class _Killer:
    def __init__(self, sig: int, tree: bool, release_memory: bool) -> None:
        self.sig = sig
        self.tree = tree
        self.release = release_memory
        self.members: list[_Member] = []
        self.by_handle: dict[int, _Member] = {}  # id(handle) -> member
        self.ws = WaitSet()
        self.last_rescan = 0.0
        self.me = os.getpid()
        self.timeout: Optional[float] = None

    def add(self, m: _Member) -> None:
        self.members.append(m)
        self.by_handle[id(m.handle)] = m

    def known(self) -> dict[int, _Member]:
        """pid -> member, for members whose number cannot have been reused (not reaped)."""
        out = {}
        for m in self.members:
            if m.t_dead is None or not m.handle._live_ref().is_reaped():
                out[m.pid] = m
        return out

    def live(self, ms: Iterable[_Member]) -> list[_Member]:
        return [m for m in ms if m.t_dead is None and m.gone_reason is None and not m.denied]

    def discover(self, roots: list[_Member], stop: bool, strict: bool) -> list[_Member]:
        """Find processes below ``roots`` not known yet.

        With ``stop``: SIGSTOP each process before reading its children, and recurse, so the
        result is the complete tree.  Without: only the roots' current children (they are then
        frozen by :meth:`freeze_and_hit`).  New members are permission-checked with signal 0:
        ``strict`` raises :class:`AccessDenied`, otherwise the member is reported, not watched.
        """
        known = self.known()
        new: list[_Member] = []
        queue: list[Union[_Member, int]] = list(roots)
        while queue:
            item = queue.pop(0)
            if isinstance(item, int):  # the caller itself: not a member, but its children are
                parent, m = item, None
            else:
                m, parent = item, item.pid
                if stop and not m.stopped and m.t_dead is None and m.send(_signal.SIGSTOP,
                                                                          False):
                    m.stopped = True
                    # a fork in progress completes despite the SIGSTOP: read the children only
                    # once every thread has stopped
                    _tree.wait_stopped(m.pid)
            for kid in _tree.children(parent):
                if kid in known:
                    continue
                if kid == self.me:  # never stop or signal the caller (pkill skips itself too)
                    if stop:
                        queue.append(kid)
                    continue
                try:
                    h = _open(kid)
                except NoSuchProcess:
                    continue
                # Verify after open: while ``m`` is alive its children cannot be reaped by anyone
                # but ``m``, so a pidfd whose process has ``m`` as parent is the child we listed.
                if _tree.parent_of(kid) != parent or (m is not None and not m.handle.is_alive()):
                    h.close()
                    continue
                km = _Member(h, owned=True, parent=parent)
                self.add(km)
                known[kid] = km
                new.append(km)
                if not h.is_alive():
                    km.saw_dead()
                    km.gone_reason = "died before it could be signalled"
                    continue
                try:
                    h.send_signal(0)  # kill(2) permission check, nothing is sent
                except NoSuchProcess:
                    continue
                except AccessDenied:
                    if strict:
                        raise
                    km.timeout_reason = "not permitted to signal it (found after the kill began)"
                    km.denied = True
                    continue
                if stop:
                    queue.append(km)
        return new

    def resume(self, ms: Iterable[_Member]) -> None:
        for m in ms:
            if m.stopped:
                m.send(_signal.SIGCONT, record=False)
                m.stopped = False

    def hit(self, ms: list[_Member], sig: int) -> None:
        """Measure, signal, (release memory), start watching."""
        live = self.live(ms)
        for m in live:
            if not m.signals:
                m.memory = m.read_memory()
        for m in live:
            try:
                sent = m.send(sig)
            except AccessDenied:  # its credentials changed after the permission check
                m.denied = True
                m.timeout_reason = f"permission denied when sending {signal_name(sig)}"
                continue
            if sent and sig == _signal.SIGKILL and m.signals[0] != sig:
                m.escalated = True
            if sent and sig != _signal.SIGKILL and not m.stopped:  # (ours are resumed later)
                m.wake_if_stopped()
        live = [m for m in live if not m.denied]
        if sig == _signal.SIGKILL and self.release:
            for m in live:
                _mrelease(m)
        for m in live:
            if m.handle not in self.ws:
                self.ws.add(m.handle)

    def freeze_and_hit(self, roots: list[_Member], sig: int, strict: bool) -> None:
        """Tree mode: stop roots and all their descendants, signal them all, continue them.

        Whatever happens (an error, Ctrl-C), nothing we stopped is left stopped unless SIGKILL
        was sent to it.
        """
        frozen = self.live(roots)
        try:
            frozen += self.discover(frozen, stop=True, strict=strict)
            self.hit(frozen, sig)
        except BaseException:
            self.resume(m for m in self.members if m.stopped)
            raise
        if sig != _signal.SIGKILL:
            self.resume(frozen)

    def rescan(self) -> None:
        """Catchable phase: catch children born since the last look, freeze and signal them
        (their parents already got the signal)."""
        self.last_rescan = time.monotonic()
        new = self.discover(self.live(self.members), stop=False, strict=False)
        if new:
            self.freeze_and_hit(new, self.sig, strict=False)

    def on_death(self, h: ExitHandle) -> None:
        m = self.by_handle.get(id(h))
        if m is not None:
            m.saw_dead()


def kill_and_wait(targets: Union[Target, Iterable[Target]], *,
                  signal: int = _signal.SIGTERM, grace: Optional[float] = None,
                  kill_after: Optional[float] = None, release_memory: bool = False,
                  timeout: Optional[float] = None, tree: bool = False) -> list[KillResult]:
    """Signal processes, escalate to SIGKILL after ``grace``, wait until they are dead.

    ``targets``: an iterable of pids, ``"PID:INODE"`` strings, ``(pid, inode)`` pairs or open
    :class:`ExitHandle` objects (not closed by this call); or a single pid, string or handle.
    Targets that are gone (or whose ``PID:INODE`` now names another process) are reported
    ``already_gone`` and never signalled; so is a zombie.

    ``signal`` is sent first; survivors get SIGKILL once ``grace`` seconds have passed
    (``kill_after`` is the same setting under timeout(1)'s name; ``None``: never escalate).
    ``release_memory`` calls ``process_mrelease`` on this thread right after each SIGKILL.
    ``timeout`` bounds the whole call; survivors are reported ``timed_out``.  ``tree`` includes
    every descendant (frozen with SIGSTOP first, see the module docstring).

    Returns one :class:`KillResult` per process: targets in the order given, then descendants in
    the order found.  Raises :class:`AccessDenied` (nothing signalled) if any process may not be
    signalled by the caller, :class:`NotProcessLeader` for a thread id and ``ValueError`` for bad
    arguments.
    """
    sig = check_signal(signal)
    if grace is not None and kill_after is not None and grace != kill_after:
        raise ValueError("grace and kill_after are the same setting; give one of them")
    grace = check_timeout(grace if grace is not None else kill_after)
    timeout = check_timeout(timeout)
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    # one target, or a sequence of them (a tuple is a sequence, not a (pid, inode) pair)
    if isinstance(targets, (bytes, bytearray, memoryview)):
        # iterating them would give byte values: kill_and_wait(b"12") signalled pids 49 and 50
        raise ValueError(f"invalid targets {targets!r}: bytes are not pids (decode them first)")
    items = cast("Iterable[Target]",
                 [targets] if isinstance(targets, (int, str, ExitHandle)) else targets)

    k = _Killer(sig, tree, release_memory)
    k.timeout = timeout
    order: list[Union[_Member, _Gone]] = []
    seen: set[tuple[int, Optional[int]]] = set()
    try:
        for t in items:
            h, owned, why, pid = _open_target(t)
            if h is None:
                inode = t[1] if isinstance(t, tuple) else (
                    _identity.parse_target(t)[1] if isinstance(t, str) else None)
                order.append(_Gone(pid, inode, why or "no such process"))
                continue
            if h.pid == k.me and h.is_alive():  # a live process with our number is us
                if owned:
                    h.close()
                raise ValueError(f"process {k.me} is the caller itself: it cannot wait for "
                                 "its own death")
            key = (h.pid, h.identity.inode)
            if key in seen:
                if owned:
                    h.close()
                continue
            seen.add(key)
            m = _Member(h, owned)
            k.add(m)
            order.append(m)
            if not h.is_alive():
                m.saw_dead()
                m.gone_reason = "dead before the call"
        roots = [m for m in k.members if m.gone_reason is None]
        for m in roots:
            try:
                m.handle.send_signal(0)  # permission check first: nothing is sent
            except NoSuchProcess:
                m.saw_dead()
                m.gone_reason = "reaped before it could be signalled"
        roots = [m for m in roots if m.gone_reason is None]
        if tree:
            k.freeze_and_hit(roots, sig, strict=True)
        else:
            k.hit(roots, sig)
        t_sig = time.monotonic()
        _wait_loop(k, sig, grace, t_sig, deadline)
        results: list[KillResult] = []
        for x in order:
            results.append(x.result if isinstance(x, _Gone) else x.result(sig))
        targets_set = {id(x) for x in order}
        for m in k.members:
            if id(m) not in targets_set:
                results.append(m.result(sig))
        return results
    finally:
        k.ws.close()
        for m in k.members:
            if m.owned:
                m.handle.close()


def _wait_loop(k: _Killer, sig: int, grace: Optional[float], t_sig: float,
               deadline: Optional[float]) -> None:
    escalate_at = None if grace is None or sig == _signal.SIGKILL else t_sig + grace
    catchable = sig != _signal.SIGKILL
    while len(k.ws):
        now = time.monotonic()
        stops = [x for x in (escalate_at, deadline) if x is not None]
        if k.tree and catchable:
            stops.append(now + RESCAN_INTERVAL)
        step = None if not stops else max(0.0, min(stops) - now)
        for h in k.ws.as_exited(step):
            k.on_death(h)
            if k.tree and catchable and time.monotonic() - k.last_rescan >= _RESCAN_MIN_GAP:
                k.rescan()
        now = time.monotonic()
        if not len(k.ws):
            break
        if deadline is not None and now >= deadline:
            for h in k.ws.handles():
                m = k.by_handle[id(h)]
                m.timeout_reason = f"alive at the timeout ({k.timeout:g} s)"
            break
        if escalate_at is not None and now >= escalate_at:
            escalate_at = None
            catchable = False
            alive = [k.by_handle[id(h)] for h in k.ws.handles()]
            if k.tree:
                k.freeze_and_hit(alive, _signal.SIGKILL, strict=False)
            else:
                k.hit(alive, _signal.SIGKILL)
        elif k.tree and catchable:
            k.rescan()
