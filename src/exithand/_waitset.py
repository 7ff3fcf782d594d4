"""WaitSet: wait for many processes with one epoll, no per-process polling.

Kernel facts relied on (epoll(7), pidfd_open(2)):

* Each handle's fd is registered level-triggered for EPOLLIN.  A pidfd becomes readable when its
  process is dead and *stays* readable, so a handle is unregistered as it is reported: each death
  is reported exactly once, and the handle stays open and usable afterwards.
* ``epoll_wait`` costs nothing per registered fd while nothing happens: an idle wait is one
  sleeping thread, zero wakeups, however many processes are watched.
* epoll forgets an fd by itself when the last reference to its *file* is closed, and a thread
  already inside ``epoll_wait`` is not woken by that.  A handle closed while in the set would
  therefore just never fire.  :meth:`ExitHandle.close` calls a hook first: the set unregisters the
  fd, remembers the handle, and writes to an internal eventfd that is registered in the same
  epoll, which wakes any waiter; the next wait raises ``ValueError`` naming the process.
* ``epoll_event.data`` holds the fd *number*, and numbers are reused as soon as they are closed.
  An event returned by one ``epoll_wait`` may be consumed after its handle was removed and a new
  handle got the same number; each registration therefore gets a sequence number, and an event is
  only credited to a handle registered before the ``epoll_wait`` that returned it (anything
  else stays registered and, being level-triggered, is reported again if really ready).

Open-file limits: each handle is one fd.  :meth:`WaitSet.add` raises the soft ``RLIMIT_NOFILE``
to the hard limit when the fds come near the soft limit, and :meth:`WaitSet.open` retries once
after raising it on EMFILE; past the hard limit it raises :class:`exithand.FdLimitError`, which
names the limit (see :mod:`exithand._kernel.fdlimit`).  No process is ever dropped silently.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from ._aio import iter_waitset
from ._handle import ExitHandle, check_timeout, poll_ms
from ._kernel import fdlimit as _fdlimit
from ._kernel import sigwake as _sigwake
from ._kernel.errors import FdLimitError, translate_oserror

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Optional

#: epoll_wait's maxevents when the caller wants "all": the batch size of one syscall.
_BATCH = 1024


def _make_wakeup() -> tuple[int, int]:
    """An (rfd, wfd) pair that becomes readable when written: eventfd (Linux 2.6.22), else pipe."""
    if hasattr(os, "eventfd"):
        fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        return fd, fd
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    return r, w


class _MemberHook:
    """The close hook a WaitSet puts on its members: one object per set, shared by all of them
    (no per-handle allocation), holding the set weakly so members do not keep it alive."""

    __slots__ = ("_ws",)

    def __init__(self, ws: WaitSet) -> None:
        self._ws = weakref.ref(ws)

    def __call__(self, h: ExitHandle, fd: int) -> None:
        ws = self._ws()
        if ws is not None:
            ws._handle_closing(h, fd)


class WaitSet:
    """A set of :class:`ExitHandle` waited on together, with one epoll.

    ``add``/``remove``/``open`` may be called from any thread, also while another thread waits
    or iterates: an added handle is reported by a wait already in progress, a removed one is
    not, and removing the last handle ends the wait.  The set does not own the handles: closing
    them is the caller's job (or make the set with ``close_handles=True``: then :meth:`close`
    closes every handle ever added, reported or not).  Closing a handle that is still in the set
    makes the next (or the current) wait raise ``ValueError``.

    ``raise_fd_limit`` (default True): raise the soft RLIMIT_NOFILE to the hard limit when the
    set grows near it, as systemd recommends for programs that need many fds.
    """

    def __init__(self, handles: Iterable[ExitHandle] = (), *, close_handles: bool = False,
                 raise_fd_limit: bool = True) -> None:
        try:
            self._ep = select.epoll()
        except OSError as e:
            raise translate_oserror(e, None, "create a WaitSet (epoll)") from None
        try:
            self._wake_r, self._wake_w = _make_wakeup()
        except OSError as e:
            self._ep.close()
            raise translate_oserror(e, None, "create a WaitSet (eventfd)") from None
        try:
            self._ep.register(self._wake_r, select.EPOLLIN)
        except OSError as e:
            self._ep.close()
            os.close(self._wake_r)
            if self._wake_w != self._wake_r:
                os.close(self._wake_w)
            raise translate_oserror(e, None, "create a WaitSet (epoll_ctl)") from None
        # the process's signal pipe, once registered (first blocking wait in the main thread)
        self._sig_r = -1
        self._lock = threading.Lock()
        # fd -> (handle, registration seq, pid)
        self._by_fd: dict[int, tuple[ExitHandle, int, int]] = {}
        self._fd_of: dict[ExitHandle, int] = {}
        self._seq = 0
        self._closed_in_set: list[str] = []  # handles closed while in the set, not yet reported
        self._closed = False
        self._released = False  # fds closed (deferred while a thread is inside epoll_wait)
        self._waiters = 0
        self._close_handles = close_handles
        self._owned: list[ExitHandle] = []  # with close_handles: every handle ever added
        self._raise_fd_limit = raise_fd_limit
        self._fd_check_at = _fdlimit.check_threshold()
        self._hook = _MemberHook(self)
        self._close_hooks: Optional[list[Callable[[WaitSet, int], None]]] = None
        for h in handles:
            self.add(h)

    # ----- membership ---------------------------------------------------------------------

    def add(self, h: ExitHandle) -> None:
        """Watch ``h``.  Adding a handle already in the set is a no-op.

        ``ValueError`` if ``h`` (or the set) is closed.  A handle whose process is already dead is
        reported by the next wait.
        """
        if not isinstance(h, ExitHandle):
            raise TypeError(f"WaitSet.add() takes an ExitHandle, not {type(h).__name__}")
        fd = h.fileno()
        with self._lock:
            self._check_not_closed()
            if self._fd_of.get(h) == fd:
                return
            if fd in self._by_fd:
                raise ValueError(f"fd {fd} is already watched for another handle")
            try:
                self._ep.register(fd, select.EPOLLIN)
            except OSError as e:
                raise translate_oserror(e, h.pid, "register with epoll") from None
            self._seq += 1
            self._by_fd[fd] = (h, self._seq, h.pid)
            self._fd_of[h] = fd
            if self._close_handles:
                self._owned.append(h)
        try:
            h._add_close_hook(self._hook)
        except ValueError:  # closed by another thread meanwhile: epoll already forgot it
            with self._lock:
                self._forget(h, fd)
            raise
        if self._raise_fd_limit and fd >= self._fd_check_at:
            # only fds this high need a getrlimit (a syscall) to see how near the limit we are
            if _fdlimit.near_soft_limit(fd):
                _fdlimit.raise_soft_to_hard()
            self._fd_check_at = _fdlimit.check_threshold()

    def open(self, pid: int, *, inode: Optional[int] = None, start_time: Optional[int] = None,
             create_time: Optional[float] = None, backend: Optional[str] = None) -> ExitHandle:
        """:func:`exithand.open` and :meth:`add` in one step; the handle is yours to close.

        On EMFILE the soft RLIMIT_NOFILE is raised to the hard limit and the open retried once;
        at the hard limit this raises :class:`exithand.FdLimitError` naming the limit.
        """
        try:
            h = ExitHandle.open(pid, inode=inode, start_time=start_time,
                                create_time=create_time, backend=backend)
        except FdLimitError:
            if not (self._raise_fd_limit and _fdlimit.raise_soft_to_hard()):
                raise
            h = ExitHandle.open(pid, inode=inode, start_time=start_time,
                                create_time=create_time, backend=backend)
        try:
            self.add(h)
        except BaseException:
            h.close()
            raise
        return h

    def remove(self, h: ExitHandle) -> None:
        """Stop watching ``h`` (``KeyError`` if it is not in the set).  Wakes waiters, so a wait
        on a set that just became empty returns."""
        with self._lock:
            fd = self._fd_of.get(h)
            if fd is None:
                raise KeyError(h)
            self._forget(h, fd)
            if not h.closed:
                try:
                    self._ep.unregister(fd)
                except OSError:
                    pass
        h._remove_close_hook(self._hook)
        self._wake()

    def discard(self, h: ExitHandle) -> None:
        """:meth:`remove` without the ``KeyError``."""
        try:
            self.remove(h)
        except KeyError:
            pass

    def _forget(self, h: ExitHandle, fd: int) -> None:
        # caller holds self._lock
        self._fd_of.pop(h, None)
        entry = self._by_fd.get(fd)
        if entry is not None and entry[0] is h:
            del self._by_fd[fd]

    def _handle_closing(self, h: ExitHandle, fd: int) -> None:
        """Close hook of a member handle: runs in the closing thread, before the fd is closed."""
        with self._lock:
            if self._fd_of.get(h) != fd:
                return
            pid = self._by_fd[fd][2]
            self._forget(h, fd)
            if not self._closed:
                try:
                    self._ep.unregister(fd)
                except OSError:
                    pass
                self._closed_in_set.append(str(pid))
        self._wake()

    def __len__(self) -> int:
        return len(self._fd_of)

    def __contains__(self, h: object) -> bool:
        return h in self._fd_of if isinstance(h, ExitHandle) else False

    def handles(self) -> list[ExitHandle]:
        """The handles still waited on (not yet reported), in the order they were added."""
        with self._lock:
            return list(self._fd_of)

    def __iter__(self) -> Iterator[ExitHandle]:
        """Iterate over the handles still waited on: those not yet reported by a wait.

        A snapshot (:meth:`handles`), so adding or removing while iterating is safe.  A member
        whose process died but that no wait has reported yet is still in it: "not yet
        reported", not "alive"; use ``[h for h in ws if h.is_alive()]`` for the latter.
        Never blocks.
        """
        return iter(self.handles())

    # ----- waking ---------------------------------------------------------------------------

    def _wake(self) -> None:
        with self._lock:
            if self._released:
                return
            try:
                os.write(self._wake_w, b"\x01\0\0\0\0\0\0\0")
            except OSError:
                pass  # already pending (pipe full / eventfd at max): fine

    def _drain(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except (BlockingIOError, OSError):
            pass

    def _check_not_closed(self) -> None:
        if self._closed:
            raise ValueError("operation on a closed WaitSet")

    def _raise_closed_members(self) -> None:
        # caller holds self._lock
        if self._closed_in_set:
            pids, self._closed_in_set = self._closed_in_set, []
            raise ValueError(
                f"{len(pids)} ExitHandle(s) were closed while in the WaitSet (process "
                f"{', '.join(pids)}); they are no longer watched: remove() a handle from the "
                "set before closing it")

    # ----- waiting --------------------------------------------------------------------------

    def _poll(self, timeout: Optional[float],
              maxevents: int) -> Optional[list[tuple[int, int]]]:
        """One ``epoll_wait``.  Returns ``[(fd, seq-at-poll)]`` for member fds (maybe empty),
        or ``None`` if the set is empty.  Raises ``ValueError`` for closed members or a set
        closed meanwhile."""
        with self._lock:
            self._check_not_closed()
            self._raise_closed_members()
            if not self._by_fd:
                return None
            seq = self._seq
            self._waiters += 1
        out = []
        try:
            # PEP 475: epoll.poll() retries on EINTR with the remaining timeout.  A blocking
            # wait in the main thread also watches a signal pipe, so a signal whose handler
            # raises (Ctrl-C) always ends it (the race this closes: see _sigwake).
            ms = poll_ms(timeout)
            with _sigwake.signal_pipe(blocking=ms != 0) as sig_r:
                if sig_r is not None:
                    self._watch_signal_pipe(sig_r)
                events = self._ep.poll(-1 if ms is None else ms / 1000, maxevents)
            for fd, _ev in events:
                if fd == self._wake_r:
                    self._drain()
                elif fd == self._sig_r:
                    pass  # a handler ran and did not raise (signal_pipe drains): wait on
                else:
                    out.append((fd, seq))
        finally:
            with self._lock:
                self._waiters -= 1
                release = self._closed and self._waiters == 0 and not self._released
        if release:
            self._release_fds()
        if self._closed:
            raise ValueError("the WaitSet was closed while waiting")
        return out

    def _watch_signal_pipe(self, sig_r: int) -> None:
        """Register the process's signal pipe (see _sigwake) in this set's epoll, once.

        Edge-triggered: a waiter in another thread (which does not drain it) is woken once per
        signal, never kept spinning; the main thread's waits drain it before they sleep.
        """
        with self._lock:
            if self._sig_r != sig_r and not self._released:
                with contextlib.suppress(OSError):
                    self._ep.register(sig_r, select.EPOLLIN | select.EPOLLET)
                    self._sig_r = sig_r

    def _claim(self, fd: int, seq: int) -> Optional[ExitHandle]:
        """Take the member reported ready on ``fd`` out of the set (None if it is not ours)."""
        with self._lock:
            entry = self._by_fd.get(fd)
            if entry is None or entry[1] > seq:
                return None  # removed meanwhile, or a newer registration that reused the number
            h = entry[0]
            self._forget(h, fd)
            try:
                self._ep.unregister(fd)
            except OSError:
                pass
        h._remove_close_hook(self._hook)
        return h

    def _iter(self, timeout: Optional[float], limit: Optional[int]) -> Iterator[ExitHandle]:
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        n = 0
        while limit is None or n < limit:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            maxevents = _BATCH if limit is None else min(_BATCH, limit - n) + 1  # +1: wakeup fd
            batch = self._poll(remaining, maxevents)
            if batch is None:
                return
            got = False
            for fd, seq in batch:
                # claim one at a time, just before yielding it: a consumer that stops early
                # leaves the rest registered (level-triggered), so nothing is ever lost
                h = self._claim(fd, seq)
                if h is not None:
                    got = True
                    n += 1
                    yield h
                    if limit is not None and n >= limit:
                        return
            if not got and deadline is not None and time.monotonic() >= deadline:
                return

    def as_exited(self, timeout: Optional[float] = None) -> Iterator[ExitHandle]:
        """Yield each handle the moment its process is dead, until the set is empty or
        ``timeout`` seconds have passed (then the iterator just ends; check ``len()``).

        A yielded handle is removed from the set (it stays open and usable).  Handles added
        while iterating are waited for too.  Raises ``ValueError`` if a member handle was closed.
        """
        return self._iter(timeout, None)

    def wait(self, timeout: Optional[float] = None,
             count: Optional[int] = None) -> list[ExitHandle]:
        """Wait until ``count`` processes (default: all in the set) are dead or ``timeout``
        passes.  Returns the handles that died, in order of death (fewer than asked on timeout);
        they are removed from the set.  Never raises on timeout: compare with ``len()``.
        """
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            raise ValueError(f"count must be a positive integer, not {count!r}")
        return list(self._iter(timeout, count))

    def as_exited_async(self) -> AsyncIterator[ExitHandle]:
        """``async for h in ws.as_exited_async()``: :meth:`as_exited` for asyncio (uvloop too),
        trio and anyio.

        The set's epoll fd is registered with the running loop only while waiting; cancelling
        the iteration unregisters it and leaves the set usable.  Use the loop's own timeouts
        (``asyncio.timeout``, ``trio.move_on_after``, ``anyio.move_on_after``).
        """
        return iter_waitset(self)

    # ----- lifetime -------------------------------------------------------------------------

    def _add_close_hook(self, fn: Callable[[WaitSet, int], None]) -> None:
        """Private: ``fn(waitset, epoll_fd)`` runs just before the epoll fd is closed."""
        with self._lock:
            self._check_not_closed()
            if self._close_hooks is None:
                self._close_hooks = []
            self._close_hooks.append(fn)

    def _remove_close_hook(self, fn: Callable[[WaitSet, int], None]) -> None:
        with self._lock:
            if self._close_hooks is not None and fn in self._close_hooks:
                self._close_hooks.remove(fn)

    def fileno(self) -> int:
        """The epoll fd: readable when some member died (or a member was closed/removed)."""
        self._check_not_closed()
        return self._ep.fileno()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close the epoll (and the handles, if the set was made with ``close_handles=True``).

        A thread waiting on the set wakes up with ``ValueError``.  Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            hs = list(self._fd_of)
            self._fd_of.clear()
            self._by_fd.clear()
            hooks, self._close_hooks = self._close_hooks, None
            release = self._waiters == 0
        for h in hs:
            h._remove_close_hook(self._hook)
        for fn in hooks or ():
            fn(self, self._ep.fileno())
        if release:
            self._release_fds()
        else:
            self._wake()  # the last waiter out closes the fds
        if self._close_handles:
            owned, self._owned = self._owned, []
            for h in owned:
                h.close()

    def _release_fds(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._ep.close()
        os.close(self._wake_r)
        if self._wake_w != self._wake_r:
            os.close(self._wake_w)


    def __del__(self) -> None:
        if getattr(self, "_closed", True) is False:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()

    def __enter__(self) -> WaitSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} handle(s)"
        return f"<WaitSet {state}>"
