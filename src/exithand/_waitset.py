"""WaitSet: wait for many processes with one epoll, no per-process polling.

Each handle's fd is registered level-triggered for EPOLLIN; a pidfd becomes readable when its
process is dead, and stays readable, so a handle is unregistered once it has been reported
(each death is reported exactly once) and stays usable afterwards.

epoll forgets an fd by itself when the last reference to its file is closed, so a handle closed
while in the set would simply never fire: :meth:`WaitSet.wait` checks for closed handles and
raises instead of hanging.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Optional

from ._handle import ExitHandle, check_timeout


class WaitSet:
    """A set of :class:`ExitHandle` waited on together.

    ``add``/``remove`` may be called from other threads while one thread waits.  The set does not
    own the handles: closing them is the caller's job (or use the set as a context manager with
    ``close_handles=True``).
    """

    def __init__(self, handles: Iterable[ExitHandle] = (), *, close_handles: bool = False) -> None:
        self._ep = select.epoll()
        self._lock = threading.Lock()
        self._by_fd: dict[int, ExitHandle] = {}
        self._close_handles = close_handles
        for h in handles:
            self.add(h)

    def add(self, h: ExitHandle) -> None:
        """Watch ``h``.  Adding a handle already in the set is a no-op."""
        fd = h.fileno()
        with self._lock:
            old = self._by_fd.get(fd)
            if old is h:
                return
            if old is not None and not old.closed:
                raise ValueError(f"fd {fd} is already watched for another handle")
            self._by_fd[fd] = h
            try:
                self._ep.register(fd, select.EPOLLIN)
            except FileExistsError:  # a stale registration of a closed handle's fd
                self._ep.modify(fd, select.EPOLLIN)
            except BaseException:
                del self._by_fd[fd]
                raise

    def remove(self, h: ExitHandle) -> None:
        """Stop watching ``h`` (``KeyError`` if it is not in the set)."""
        with self._lock:
            fd = next((k for k, x in self._by_fd.items() if x is h), None)
            if fd is None:
                raise KeyError(h)
            del self._by_fd[fd]
            if not h.closed:
                try:
                    self._ep.unregister(fd)
                except OSError:
                    pass

    def __len__(self) -> int:
        return len(self._by_fd)

    def __contains__(self, h: object) -> bool:
        return any(x is h for x in self._by_fd.values())

    def handles(self) -> list[ExitHandle]:
        """The handles still waited on (not yet reported)."""
        with self._lock:
            return list(self._by_fd.values())

    def _check_open(self) -> None:
        closed = [fd for fd, h in self._by_fd.items() if h.closed]
        if closed:
            raise ValueError(f"{len(closed)} handle(s) in the WaitSet were closed; "
                             "remove them before waiting")

    def as_exited(self, timeout: Optional[float] = None) -> Iterator[ExitHandle]:
        """Yield each handle the moment its process is dead, until the set is empty or
        ``timeout`` seconds have passed (then the iterator just ends; check ``len()``).

        A yielded handle is removed from the set (it stays open and usable).
        """
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._by_fd:
                    return
                self._check_open()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            # epoll.poll takes seconds and rounds up to whole ms (never wakes early)
            events = self._ep.poll(-1 if remaining is None else remaining)
            for fd, _ev in events:
                with self._lock:
                    h = self._by_fd.pop(fd, None)
                    if h is None:
                        continue
                    if not h.closed:
                        try:
                            self._ep.unregister(fd)
                        except OSError:
                            pass
                yield h
            if not events and deadline is not None and time.monotonic() >= deadline:
                return

    def wait(self, timeout: Optional[float] = None,
             count: Optional[int] = None) -> list[ExitHandle]:
        """Wait until ``count`` processes (default: all) are dead or ``timeout`` passes.

        Returns the handles that died, in order of death (fewer than asked on timeout).
        """
        if count is not None and (isinstance(count, bool) or count < 1):
            raise ValueError(f"count must be a positive integer, not {count!r}")
        want = len(self) if count is None else count
        done: list[ExitHandle] = []
        if want == 0:
            return done
        for h in self.as_exited(timeout):
            done.append(h)
            if len(done) >= want:
                break
        return done

    def close(self) -> None:
        """Close the epoll (and the handles, if the set was made with ``close_handles=True``)."""
        with self._lock:
            hs = list(self._by_fd.values())
            self._by_fd.clear()
        self._ep.close()
        if self._close_handles:
            for h in hs:
                h.close()

    def __enter__(self) -> WaitSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
