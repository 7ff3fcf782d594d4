"""ExitHandle: a waitable, pollable handle on the death of one process (any process).

The handle pins a *process*, not a number (see :mod:`exithand._identity`): it is opened from a
pid and then verified against what the caller said it meant (``inode=`` or ``start_time=``).
After that, PID reuse cannot make it report on, or signal, another process.

``fileno()`` is readable exactly when the process is dead (zombie or reaped), so a handle works
with ``select``/``poll``/``epoll``/``selectors`` and every event loop.  Exit statuses come from
:mod:`exithand._status_sources`, best source first, never invented.
"""

from __future__ import annotations

import errno
import math
import select
import signal as _signal
import threading
import time
import warnings
from collections.abc import Callable

from . import _creds, _identity, _mrelease
from . import _status_sources as _sources
from ._aio import wait_handle
from ._backends import (
    ProcessRef,
    open_thread,
    usable_backend,
)
from ._creds import ProcessCredentials
from ._identity import ProcessIdentity
from ._kernel import procfs as _procfs
from ._kernel import sigwake as _sigwake
from ._kernel.errors import (
    BackendUnavailable,
    Error,
    NoSuchProcess,
    NotProcessLeader,
    TimeoutExpired,
    translate_oserror,
)
from ._status import ExitStatus

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any, Optional


def _open_error(exc: OSError, pid: int) -> Exception:
    """Translate a failed open.  ENOENT (6.15+) / EINVAL (older) for a pid > 0 means a thread id."""
    if exc.errno in (errno.ENOENT, errno.EINVAL):
        tgid = _procfs.tgid(pid)
        if tgid is not None and tgid != pid:
            return NotProcessLeader(
                f"{pid} is a thread of process {tgid}, not a process; wait on {tgid} instead",
                pid, tgid)
        return NoSuchProcess(f"process {pid}: no such process", pid)
    return translate_oserror(exc, pid, "open")


def _open_thread_ref(tid: int, tgid: Optional[int], backend: Optional[str]) -> ProcessRef:
    """``exithand.open(tid, thread=True)``: a PIDFD_THREAD pidfd (Linux 6.9), whatever the
    default backend (threads have no other mechanism here)."""
    if backend not in (None, "pidfd"):
        raise BackendUnavailable(f"thread=True needs pidfd_open(PIDFD_THREAD); the {backend!r} "
                                 "backend has no thread handles")
    if tgid is not None:
        tgid = _identity.check_pid(tgid)
    try:
        ref = open_thread(tid)
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise BackendUnavailable(
                f"thread {tid}: this kernel has no PIDFD_THREAD for pidfd_open (needs Linux "
                f"6.9): {e.strerror}") from None
        if e.errno == errno.ESRCH:
            raise NoSuchProcess(f"thread {tid}: no such thread (it has exited, or no process "
                                "has a thread with this id)", tid) from None
        raise translate_oserror(e, tid, "open thread") from None
    owner = getattr(ref, "tgid", None)
    if tgid is not None and owner != tgid:
        ref.close()
        # not "gone": the thread lives, in another process (an error even with wait -e)
        raise Error(f"{tid} is not a thread of process {tgid} (it is a thread of process "
                    f"{owner})", tid)
    return ref


def check_timeout(timeout: Optional[float]) -> Optional[float]:
    """``None`` (forever) or a finite number >= 0; anything else is a ``ValueError``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
    return float(timeout)


#: poll(2) and epoll_wait(2) take an ``int`` of milliseconds, so one call waits at most INT_MAX
#: ms (about 24.8 days; Python raises ``OverflowError`` beyond it).  Longer finite timeouts are
#: waited for in slices of this size by every caller, which loops until its own deadline.
MAX_POLL_MS = 2**31 - 1
MAX_POLL_SECONDS = MAX_POLL_MS / 1000


def poll_ms(seconds: Optional[float]) -> Optional[int]:
    """Seconds -> ``poll``/``epoll`` milliseconds, rounded up so we never wake early, and at
    most :data:`MAX_POLL_MS` (the caller loops until its deadline); ``None``: forever."""
    if seconds is None or math.isinf(seconds):
        return None
    return min(MAX_POLL_MS, max(0, math.ceil(seconds * 1000)))


class ExitHandle:
    """A handle on one process's death.  Create with :func:`exithand.open` or the classmethods.

    ``fileno()`` is readable exactly when the process is dead (zombie or reaped); ``poll()``
    is ``None`` while it lives and its :class:`ExitStatus` after (``subprocess.Popen.poll()``'s
    contract; ``is_alive()`` is the bool); ``wait(timeout)`` blocks; ``await wait_async()``
    for asyncio/trio/anyio; ``send_signal()`` never hits a reused number.  Nothing is reaped.

    Thread-safe for concurrent ``wait()``/``poll()``/``status()``; ``close()`` while another
    thread waits makes that wait fail with ``ValueError`` (use a WaitSet to wait on many).
    """

    __slots__ = ("__weakref__", "_close_hooks", "_creds", "_lock", "_popen", "_ref", "_status")

    #: seconds :meth:`release_memory` retries in :func:`kill_and_wait` and ``exithand lowmem``
    #: (Android lmkd's "retry shortly" after SIGKILL)
    RELEASE_RETRY = 0.1

    def __init__(self, ref: ProcessRef, popen: Any = None) -> None:
        """Private: wrap a backend ref.  Use :func:`exithand.open` and friends."""
        self._ref: Optional[ProcessRef] = ref
        self._popen = popen
        self._status: Optional[ExitStatus] = None
        self._creds: Optional[ProcessCredentials] = None
        self._lock = threading.Lock()
        # Called with (handle, fd) just before the fd is closed, in the closing thread, so that
        # whoever watches the fd (a WaitSet's epoll, an event loop, trio) can let go of it and
        # wake its waiter: epoll silently forgets a closed file, so a waiter would hang forever.
        self._close_hooks: Optional[list[Callable[[ExitHandle, int], None]]] = None
        _sources.notify_open(ref)

    # ----- construction -------------------------------------------------------------------

    @classmethod
    def open(cls, pid: int, *, inode: Optional[int] = None, start_time: Optional[int] = None,
             create_time: Optional[float] = None, backend: Optional[str] = None,
             thread: bool = False, tgid: Optional[int] = None) -> ExitHandle:
        """Pin the process ``pid`` names now, checked against what you know of it.

        Arguments (all but ``pid`` optional and keyword-only):

        * ``pid``: a process id, ``1 <= pid <= pid_max`` (a thread id is refused).
        * ``inode``: its pidfs inode (``h.identity.inode``, util-linux's ``PID:INODE``;
          Linux 6.9+), unique per boot: the exact identity.
        * ``start_time``: its start in clock ticks since boot (``/proc/PID/stat`` field 22),
          exact on every kernel.
        * ``create_time``: its start in seconds since the epoch, as
          ``psutil.Process.create_time()`` returns it; matched to within one clock tick
          (``btime + start_time / CLK_TCK``, read now: a wall-clock step since the value was
          taken makes it miss, as it makes psutil's own check miss).
        * ``backend``: ``"pidfd"`` (Linux 5.3+), ``"connector"`` or ``"procpoll"``; default:
          the best available one (``EXITHAND_BACKEND`` overrides).
        * ``thread``: ``pid`` is a thread id, and the handle is on that one thread
          (``pidfd_open(tid, PIDFD_THREAD)``, Linux 6.9; else :class:`BackendUnavailable`):
          readable when that thread exits (the leader thread too, while others run on), signals
          go to that thread (``PIDFD_SIGNAL_THREAD``), and its status is "unknown" (a thread
          has no exit status of its own).  ``tgid``: the process the thread must belong to
          (else :class:`Error`).

        The race is only between the number and the pin: the process is pinned first (a
        pidfd), then compared with what you gave, so a mismatch can only mean the process you
        meant is gone.  Raises ``ValueError`` for a malformed argument (also a ``start_time``
        beyond the current uptime, e.g. epoch seconds given as ticks),
        :class:`NotProcessLeader` for a thread id, :class:`NoSuchProcess` (a
        ``ProcessLookupError``) if the process is gone or the number now names another,
        :class:`BackendUnavailable` for a forced backend this kernel lacks, and
        :class:`FdLimitError` when out of file descriptors.  The handle holds one fd: close it
        (``with`` does).
        """
        pid = _identity.check_pid(pid)
        if tgid is not None and not thread:
            raise ValueError("tgid= is only for thread=True")
        if thread:
            if inode is not None or start_time is not None or create_time is not None:
                raise ValueError("thread=True takes no inode/start_time/create_time")
            return cls(_open_thread_ref(pid, tgid, backend))
        for name, value, least in (("inode", inode, 1), ("start_time", start_time, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < least):
                raise ValueError(f"invalid {name} {value!r}: must be an int >= {least} or None")
        if start_time is not None and start_time > _identity.uptime_ticks() + 1:
            raise ValueError(f"invalid start_time {start_time}: it is in clock ticks since boot "
                             f"(/proc/PID/stat field 22) and the system has been up only "
                             f"{_identity.uptime_ticks()} ticks; for seconds since the epoch "
                             "(psutil's create_time()) pass create_time=")
        if create_time is not None and (isinstance(create_time, bool)
                                        or not isinstance(create_time, (int, float))
                                        or not math.isfinite(create_time) or create_time < 0):
            raise ValueError(f"invalid create_time {create_time!r}: must be seconds since the "
                             "epoch (a float, as psutil.Process.create_time() gives) or None")
        pinned = inode is not None or start_time is not None or create_time is not None
        b = usable_backend(backend)
        try:
            ref = b.open(pid)
        except OSError as e:
            raise _open_error(e, pid) from None
        if pinned:  # else the pidfd alone pins the process: nothing to read now
            try:
                cls._verify(ref, inode, start_time)
                if create_time is not None:
                    cls._verify_create_time(ref, float(create_time))
            except BaseException:
                ref.close()
                raise
        return cls(ref)

    @staticmethod
    def _verify(ref: ProcessRef, inode: Optional[int], start_time: Optional[int]) -> None:
        if inode is not None:
            got = ref.pidfs_inode()  # one fstat: no /proc read when the inode decides
            if got is None:
                raise Error(f"process {ref.pid}: cannot check inode {inode}: this kernel's "
                            "pidfds have no unique inode (needs Linux 6.9 pidfs); "
                            "use start_time instead", ref.pid)
            if got != inode:
                raise NoSuchProcess(f"process {ref.pid}:{inode} is gone: pid {ref.pid} now "
                                    f"names another process (inode {got})", ref.pid)
        if start_time is not None:
            ident = ref.identity
            if ident.start_time is None:
                raise NoSuchProcess(f"process {ref.pid} exited before its start time could be "
                                    f"checked against {start_time}", ref.pid)
            if ident.start_time != start_time:
                raise NoSuchProcess(f"process {ref.pid} with start time {start_time} is gone: "
                                    f"the pid now names another process (start time "
                                    f"{ident.start_time})", ref.pid)

    @staticmethod
    def _verify_create_time(ref: ProcessRef, create_time: float) -> None:
        ident = ref.identity
        if ident.start_time is None:
            raise NoSuchProcess(f"process {ref.pid} exited before its start time could be "
                                f"checked against create_time {create_time}", ref.pid)
        ours = _identity.create_time_of(ident.start_time)
        if abs(ours - create_time) > 1.0 / _identity.CLK_TCK + 1e-6:
            raise NoSuchProcess(f"process {ref.pid} created at {create_time:.2f} is gone: the "
                                f"pid now names another process (created at {ours:.2f})",
                                ref.pid)

    @classmethod
    def from_pidfd(cls, pidfd: int, *, backend: Optional[str] = None) -> ExitHandle:
        """Adopt a pidfd (from ``CLONE_PIDFD``, ``SCM_RIGHTS``, ...).  The handle owns it now."""
        b = usable_backend(backend or "pidfd")
        try:
            ref = b.adopt_pidfd(pidfd)
        except OSError as e:
            raise translate_oserror(e, None, f"adopt pidfd {pidfd}") from None
        return cls(ref)

    @classmethod
    def from_popen(cls, popen: Any, *, backend: Optional[str] = None) -> ExitHandle:
        """A handle on a :class:`subprocess.Popen`'s process.

        Race-free while the child is unreaped (its number cannot be reused before we reap it).
        If ``Popen.wait()`` reaps it later, ``status()`` uses the Popen's ``returncode``.
        ``returncode is None`` alone does not prove "unreaped" (another thread's ``poll()`` may
        reap it meanwhile; an ``os.waitpid(-1)`` elsewhere never sets it), so the pinned
        process must also be a child of ours: else the number names a newcomer, and this
        raises :class:`NoSuchProcess` rather than hand out a handle on it.
        """
        if not (hasattr(popen, "pid") and hasattr(popen, "returncode")):
            raise TypeError(f"from_popen() takes a subprocess.Popen, not {type(popen).__name__}")
        if popen.returncode is not None:
            raise NoSuchProcess(f"process {popen.pid} was already reaped by Popen "
                                f"(returncode {popen.returncode})", popen.pid)
        pid = _identity.check_pid(popen.pid)
        b = usable_backend(backend)
        try:
            ref = b.open(pid)
        except OSError as e:
            raise _open_error(e, pid) from None
        try:
            ours = _sources.is_own_child(ref)
        except BaseException:
            ref.close()
            raise
        if not ours or popen.returncode is not None:
            ref.close()
            raise NoSuchProcess(f"process {pid} was already reaped (the number now "
                                "names a process that is not our child)", pid)
        return cls(ref, popen)

    # ----- identity -------------------------------------------------------------------------

    def _live_ref(self) -> ProcessRef:
        ref = self._ref
        if ref is None:
            raise ValueError("operation on a closed ExitHandle")
        return ref

    @property
    def pid(self) -> int:
        """The process id (as seen when opened; the process may be gone now)."""
        return self._live_ref().pid

    @property
    def identity(self) -> ProcessIdentity:
        """pid, pidfs inode, start time, boot id; ``str()`` gives ``PID:INODE``."""
        return self._live_ref().identity

    @property
    def backend(self) -> str:
        """Name of the backend watching this process."""
        return self._live_ref().backend

    @property
    def thread(self) -> bool:
        """True for a handle on one thread (``exithand.open(tid, thread=True)``)."""
        return self._live_ref().thread

    @property
    def tgid(self) -> int:
        """The process the handle's thread belongs to (its own pid for a process handle)."""
        ref = self._live_ref()
        return int(getattr(ref, "tgid", ref.pid))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._ref is None

    def fileno(self) -> int:
        """An fd that is readable exactly when the process is dead."""
        return self._live_ref().fileno()

    # ----- waiting --------------------------------------------------------------------------

    def poll(self) -> Optional[ExitStatus]:
        """``None`` while the process is alive, else its :class:`ExitStatus`.  Never blocks.

        The same contract as :meth:`subprocess.Popen.poll`: ``h.poll() is None`` means "still
        running".  Unlike ``Popen.poll()`` it never reaps: a child of yours stays a zombie until
        you wait for it.  The status may be ``known=False`` (with ``reason``) when the system
        cannot tell it; a known one is cached.  For the plain bool use :meth:`is_alive`.
        Raises ``ValueError`` on a closed handle.
        """
        return self.status()

    def is_alive(self) -> bool:
        """Is the process still alive (not yet a zombie, not reaped)?  Never blocks.

        A process whose thread-group leader exited while other threads run is alive: the
        pidfd becomes readable only when the whole thread group is dead (Linux 5.3+).
        """
        return not self._live_ref().is_dead()

    def is_reaped(self) -> bool:
        """Has the process been reaped (no zombie left)?  Never blocks.

        Until the reap the pid cannot be reused, so anything read about ``/proc/<pid>``
        between two checks that both say False was about this process (pidfd: POLLHUP,
        Linux 6.9+, or the pidfd's fdinfo ``Pid: -1``; procpoll: the start time).
        """
        return self._live_ref().is_reaped()

    def wait(self, timeout: Optional[float] = None) -> ExitStatus:
        """Block until the process is dead; return its :class:`ExitStatus`.

        ``timeout`` in seconds (fractions allowed); raises :class:`TimeoutExpired` when it runs
        out.  Does not reap anything.
        """
        timeout = check_timeout(timeout)
        ref = self._live_ref()
        if not ref.is_dead():
            self._block(ref, timeout)
        return self._dead_status()

    @staticmethod
    def _block(ref: ProcessRef, timeout: Optional[float]) -> None:
        """Sleep in poll() until ``ref``'s fd is readable; TimeoutExpired after ``timeout``.

        PEP 475: poll() retries on EINTR with the remaining timeout.  A timeout longer than one
        poll() may take (MAX_POLL_MS) is waited for in slices.  In the main thread a signal
        pipe is polled too, so a signal handler that raises (Ctrl-C) always ends the wait
        (see :mod:`._sigwake` for the race this closes).
        """
        fd = ref.fileno()
        p = select.poll()
        p.register(fd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        with _sigwake.signal_pipe(blocking=timeout != 0) as sig_r:
            if sig_r is not None:
                p.register(sig_r, select.POLLIN)
            while True:
                ready = p.poll(poll_ms(None if deadline is None
                                       else deadline - time.monotonic()))
                if any(rfd == fd for rfd, _ev in ready):
                    return
                if sig_r is not None and ready:
                    _sigwake.drain(sig_r)  # the handler ran and did not raise: go on
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutExpired(
                        f"process {ref.pid} still running after {timeout} seconds",
                        ref.pid, timeout)

    def status(self) -> Optional[ExitStatus]:
        """The exit status if dead (maybe ``known=False`` with a reason), ``None`` if alive.

        A known status is cached.  An unknown one is asked again next time (e.g. it becomes
        known once the parent reaps the zombie, through PIDFD_INFO_EXIT).
        """
        if self._status is not None:
            return self._status
        if not self._live_ref().is_dead():
            return None
        return self._dead_status()

    def _dead_status(self) -> ExitStatus:
        """:meth:`status` of a process already seen dead (no second poll of the fd)."""
        with self._lock:
            if self._status is not None:
                return self._status
            ref = self._live_ref()  # under the lock: close() cannot pull the fd from under us
            if ref.thread:
                self._status = ExitStatus.unknown(
                    ref.pid, f"thread {ref.pid} of process {getattr(ref, 'tgid', '?')} exited; "
                    "a thread has no exit status of its own")
                return self._status
            try:
                st = _sources.resolve(ref, self._popen)
            except OSError as e:
                raise translate_oserror(e, ref.pid, "read exit status") from None
            if st.known:
                self._status = st
            return st

    def credentials(self) -> ProcessCredentials:
        """Real/effective uid and parent pid of the process, as last seen.

        Read now while the process is not yet reaped (alive, or a zombie: then
        ``final`` is True and these are the credentials it died with).  Once it has been
        reaped nothing more can be read, and the last credentials this handle read are
        returned (``final`` False: it may have changed them after that read).  Raises
        :class:`NoSuchProcess` if it was reaped before this handle ever read them.
        Race-free: read through the pidfd (``PIDFD_GET_INFO``, Linux 6.13) or from ``/proc``
        followed by a was-it-reaped check, so a process reusing the number is never described.
        """
        ref = self._live_ref()
        if self._creds is not None and self._creds.final:
            return self._creds
        try:
            creds = _creds.read_credentials(ref)
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise translate_oserror(e, ref.pid, "read credentials") from None
            if self._creds is None:
                raise NoSuchProcess(f"process {ref.pid} was reaped before its credentials "
                                    "could be read", ref.pid) from None
            return self._creds
        self._creds = creds
        return creds

    # ----- signals and memory -----------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Signal exactly this process (``pidfd_send_signal``: a reused number is never hit).

        Raises :class:`NoSuchProcess` once it has been reaped, :class:`AccessDenied` without
        kill(2) permission, ``ValueError`` for anything but an int from 0 (permission check
        only, as kill(2)) to SIGRTMAX.  Signalling a zombie succeeds and does nothing.
        """
        # int(sig) took True as SIGHUP and 9.0 as SIGKILL; a bool or float is a caller's bug
        if isinstance(sig, bool) or not isinstance(sig, int) or not 0 <= sig <= _signal.SIGRTMAX:
            raise ValueError(f"invalid signal {sig!r}: must be an int or signal.Signals from 0 "
                             f"to {int(_signal.SIGRTMAX)}")
        ref = self._live_ref()
        try:
            ref.send_signal(int(sig))
        except OSError as e:
            raise translate_oserror(e, ref.pid, f"send signal {int(sig)}") from None

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(_signal.SIGKILL)

    def release_memory(self, retry: float = 0.0) -> None:
        """``process_mrelease``: free a dying (SIGKILLed) process's memory on this CPU.

        Linux 5.15+.  ``retry`` is how many seconds an EINVAL ("not dying yet": right after a
        SIGKILL) is asked again, 1 ms apart on the pidfd, and within which an EAGAIN (mmap lock
        contention) is asked again at once, up to 20 times; ``0`` calls once.
        :func:`kill_and_wait` and ``exithand lowmem`` use :attr:`RELEASE_RETRY` (0.1 s).
        Raises :class:`Error` with ``errno`` EINVAL if the process is still not dying, ENOSYS
        on kernels without the syscall; :class:`NoSuchProcess` if its memory is already gone
        (it exited); :class:`AccessDenied` without permission (CAP_SYS_NICE is not needed, but
        kill permission is).  The rule lives in :mod:`exithand._mrelease`.
        """
        ref = self._live_ref()
        fd = ref.pidfd
        if fd is None:
            raise Error(f"process {ref.pid}: the {ref.backend} backend holds no pidfd, "
                        "process_mrelease needs one", ref.pid)
        _mrelease.release(fd, ref.pid, retry)

    # ----- async ------------------------------------------------------------------------------

    async def wait_async(self) -> ExitStatus:
        """``await h.wait_async()``: :meth:`wait` for asyncio (uvloop too), trio and anyio.

        The fd is registered with the running loop only while awaiting (asyncio ``add_reader``,
        ``trio.lowlevel.wait_readable``).  Cancelling (a timeout, a cancel scope) unregisters it
        and leaves the handle usable; many tasks may wait on one handle at once.  Closing the
        handle wakes its waiters with ``ValueError``.  See :mod:`exithand._aio`.
        """
        return await wait_handle(self)

    # ----- lifetime ---------------------------------------------------------------------------

    def _add_close_hook(self, fn: Callable[[ExitHandle, int], None]) -> None:
        """Private: call ``fn(handle, fd)`` just before the fd is closed (for watchers)."""
        with self._lock:
            self._live_ref()
            if self._close_hooks is None:
                self._close_hooks = [fn]
            else:
                self._close_hooks.append(fn)

    def _remove_close_hook(self, fn: Callable[[ExitHandle, int], None]) -> None:
        with self._lock:
            hooks = self._close_hooks
            if hooks is not None:
                try:
                    hooks.remove(fn)
                except ValueError:
                    pass
                if not hooks:
                    self._close_hooks = None

    def close(self) -> None:
        """Release the pidfd.  Idempotent.  Does not affect the process.

        A WaitSet holding the handle, and any task awaiting :meth:`wait_async`, are told first:
        their waits fail with ``ValueError`` instead of hanging.
        """
        with self._lock:
            ref, self._ref = self._ref, None
            hooks, self._close_hooks = self._close_hooks, None
        if ref is None:
            return
        try:
            if hooks:
                fd = ref.fileno()
                for fn in hooks:
                    fn(self, fd)
        finally:
            ref.close()

    def __enter__(self) -> ExitHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        ref = getattr(self, "_ref", None)
        if ref is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            ref.close()

    def __repr__(self) -> str:
        ref = self._ref
        if ref is None:
            return "<ExitHandle closed>"
        return f"<ExitHandle {ref.identity} backend={ref.backend}>"


def open(pid: int, *, inode: Optional[int] = None, start_time: Optional[int] = None,
         create_time: Optional[float] = None, backend: Optional[str] = None,
         thread: bool = False, tgid: Optional[int] = None) -> ExitHandle:
    """Open a handle on the death of process ``pid`` (any process, not only a child).

    ``with exithand.open(1234) as h: status = h.wait(timeout=5)``

    The process is pinned (a pidfd, Linux 5.3+; fallbacks without pidfds), so a later reuse of
    the number never makes the handle report on, or signal, another process.  To be sure the
    number still names the process you mean, pass what you know of it (keyword-only):
    ``inode=`` (pidfs inode, Linux 6.9+, exact), ``start_time=`` (clock ticks since boot,
    ``/proc/PID/stat`` field 22, exact) or ``create_time=`` (epoch seconds, as
    ``psutil.Process.create_time()``; within one clock tick).  ``backend=`` forces
    ``"pidfd"``, ``"connector"`` or ``"procpoll"``.

    Raises ``ValueError`` (bad pid or argument), :class:`NotProcessLeader` (a thread id),
    :class:`NoSuchProcess` (gone, or the number names another process now; also a
    ``ProcessLookupError``), :class:`BackendUnavailable`, :class:`FdLimitError`.  Returns an
    :class:`ExitHandle` holding one fd: close it (``with`` does).
    """
    return ExitHandle.open(pid, inode=inode, start_time=start_time, create_time=create_time,
                           backend=backend, thread=thread, tgid=tgid)

