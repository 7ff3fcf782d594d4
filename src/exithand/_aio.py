"""Async adapters: asyncio (and uvloop), trio, and anyio on either of its backends.

Everything here waits for one fd to become readable -- a handle's pidfd, or a WaitSet's epoll
fd (an epoll fd is itself readable while it has ready events) -- with the running event loop's
own machinery, registered at wait time and unregistered when the wait ends, however it ends.

* **asyncio / uvloop**: ``loop.add_reader(fd)``.  A loop keeps *one* reader callback per fd, so a
  second ``add_reader`` would silently replace the first task's.  Waiters on the same fd in the
  same loop therefore share one registration (:class:`_AsyncioFdWatch`); the reader is removed
  when the fd is ready, or when the last waiter is cancelled.
* **trio**: ``trio.lowlevel.wait_readable(fd)``, which raises ``BusyResourceError`` for a second
  waiter on the same fd: the first task waits on the fd, others wait on a ``trio.Event`` and take
  over if it is cancelled.  trio requires ``notify_closing(fd)`` before a watched fd is closed
  (else its epoll just forgets the fd and the task sleeps forever); the handle's close hook does
  that, from the trio thread directly or via the run's token from another thread.
* **anyio** needs nothing of its own: on its asyncio backend the asyncio path runs (anyio's
  cancel scopes cancel with ``Task.cancel``), on its trio backend the trio path.

trio is imported only if it is already imported and a trio run is active: it stays optional;
asyncio is imported only when an async wait runs (a running asyncio loop has loaded it anyway),
so ``import exithand`` does not pay for it.

Layering: this module sits just above the status and below handles and sets at run time: it
knows them only as types (``TYPE_CHECKING``) and through the small methods it calls (duck
typing), so :mod:`._handle` and :mod:`._waitset` import it at module level, downward.

Closing a handle (or WaitSet) while tasks wait on it wakes them with ``ValueError``.  Limit: if
the close happens in another thread, the loop learns it a moment later (``call_soon_threadsafe``
/ ``run_sync_soon``); in between the loop still holds the closed fd's number.
"""

from __future__ import annotations

import sys
import threading
import weakref

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Callable
    from typing import Any, Optional, Protocol

    from ._handle import ExitHandle
    from ._status import ExitStatus
    from ._waitset import WaitSet

    class _Closable(Protocol):
        """An ExitHandle or WaitSet: something whose fd closing we must hear about."""

        def _add_close_hook(self, fn: Callable[[Any, int], None]) -> None: ...
        def _remove_close_hook(self, fn: Callable[[Any, int], None]) -> None: ...


def _closed_error() -> ValueError:
    return ValueError("the ExitHandle (or WaitSet) was closed while a task was waiting on it")


def current_library() -> str:
    """``"trio"`` or ``"asyncio"``: which event loop is running in this thread."""
    import asyncio  # already loaded whenever an asyncio loop runs: a dict lookup

    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("exithand async waits need a running asyncio (or uvloop), "
                           "trio or anyio event loop") from None
    return "asyncio"


async def wait_readable(fd: int, owner: _Closable) -> bool:
    """Wait until ``fd`` (owned by ``owner``) is readable, or raise ``ValueError`` if it is closed.

    True when the loop saw the fd readable; False when it returned early (another waiter's
    registration ended): then callers re-check.
    """
    if current_library() == "trio":
        return await _trio_wait_readable(fd, owner)
    return await _asyncio_wait_readable(fd, owner)


async def wait_readable_for(fd: int, owner: _Closable, timeout: Optional[float]) -> bool:
    """:func:`wait_readable` bounded by ``timeout`` seconds (``None``: no bound), in whichever
    loop runs (asyncio/uvloop, trio, anyio on either).  False when the time ran out."""
    if timeout is None:
        await wait_readable(fd, owner)
        return True
    if current_library() == "trio":
        import trio

        with trio.move_on_after(timeout):
            await _trio_wait_readable(fd, owner)
            return True
        return False
    import asyncio

    try:
        await asyncio.wait_for(_asyncio_wait_readable(fd, owner), timeout)
    except asyncio.TimeoutError:
        return False
    return True


class NeverClosed:
    """An owner for an fd that is never closed while waited on (its closer waits for the
    waiters to leave first): close hooks are not needed."""

    def _add_close_hook(self, fn: Callable[[Any, int], None]) -> None:
        pass

    def _remove_close_hook(self, fn: Callable[[Any, int], None]) -> None:
        pass


# ----- asyncio ---------------------------------------------------------------------------------


class _AsyncioFdWatch:
    """One ``add_reader`` registration shared by every task waiting on ``fd`` in ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, owner: _Closable,
                 table: dict[int, _AsyncioFdWatch]) -> None:
        self.loop = loop
        self.fd = fd
        self.owner = owner
        self.table = table
        self.futures: set[asyncio.Future[None]] = set()
        self.active = True
        loop.add_reader(fd, self._ready)
        try:
            owner._add_close_hook(self._closing)
        except BaseException:
            loop.remove_reader(fd)
            raise
        table[fd] = self

    def _stop(self) -> None:
        # in the loop thread
        if not self.active:
            return
        self.active = False
        if self.table.get(self.fd) is self:
            del self.table[self.fd]
        self.loop.remove_reader(self.fd)
        self.owner._remove_close_hook(self._closing)

    def _ready(self) -> None:
        self._stop()
        for f in self.futures:
            if not f.done():
                f.set_result(None)
        self.futures.clear()

    def _closed(self) -> None:
        if not self.active:
            return
        self._stop()
        for f in self.futures:
            if not f.done():
                f.set_exception(_closed_error())
        self.futures.clear()

    def _closing(self, _owner: Any, _fd: int) -> None:
        """Close hook: runs in the closing thread just before the fd is closed."""
        import asyncio

        try:
            in_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            self._closed()
        elif not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._closed)
            except RuntimeError:  # loop closed meanwhile
                pass

    def discard(self, fut: asyncio.Future[None]) -> None:
        self.futures.discard(fut)
        if not self.futures:
            self._stop()


# loop -> {fd: watch}; weak, so a finished loop's table goes away with it
_asyncio_tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                           dict[int, _AsyncioFdWatch]] = (
    weakref.WeakKeyDictionary())


async def _asyncio_wait_readable(fd: int, owner: _Closable) -> bool:
    import asyncio

    loop = asyncio.get_running_loop()
    table = _asyncio_tables.get(loop)
    if table is None:
        table = _asyncio_tables[loop] = {}
    watch = table.get(fd)
    if watch is None or watch.owner is not owner:
        if watch is not None:  # a stale entry for a closed owner whose fd number was reused
            watch._closed()
        watch = _AsyncioFdWatch(loop, fd, owner, table)
    fut: asyncio.Future[None] = loop.create_future()
    watch.futures.add(fut)
    try:
        await fut  # a result is set only by the reader callback: the fd was readable
    finally:
        if not fut.done() or fut.cancelled():
            watch.discard(fut)
    return True


# ----- trio ------------------------------------------------------------------------------------


class _TrioFdWatch:
    def __init__(self, token: Any, event: Any) -> None:
        self.token = token
        self.event = event


_trio_lock = threading.Lock()
_trio_watches: dict[tuple[int, int], _TrioFdWatch] = {}  # (id(trio token), fd) -> leader


def _trio_closing(watch: _TrioFdWatch, _owner: Any, fd: int) -> None:
    """Close hook: ``notify_closing`` must run before the fd is closed, in the trio thread."""
    import trio

    try:
        same = trio.lowlevel.current_trio_token() is watch.token
    except RuntimeError:
        same = False
    if same:
        trio.lowlevel.notify_closing(fd)
    else:
        try:
            watch.token.run_sync_soon(trio.lowlevel.notify_closing, fd)
        except trio.RunFinishedError:
            pass


async def _trio_wait_readable(fd: int, owner: _Closable) -> bool:
    import trio

    token = trio.lowlevel.current_trio_token()
    key = (id(token), fd)
    with _trio_lock:
        leader = _trio_watches.get(key)
        if leader is None:
            watch = _TrioFdWatch(token, trio.Event())
            _trio_watches[key] = watch
    if leader is not None:
        # someone already waits on this fd: wait for their wait to end, then re-check
        await leader.event.wait()
        return False
    hook = _make_trio_hook(watch)
    try:
        owner._add_close_hook(hook)
        try:
            await trio.lowlevel.wait_readable(fd)
        except trio.ClosedResourceError:
            raise _closed_error() from None
        finally:
            owner._remove_close_hook(hook)
    finally:
        with _trio_lock:
            if _trio_watches.get(key) is watch:
                del _trio_watches[key]
        watch.event.set()
    return True


def _make_trio_hook(watch: _TrioFdWatch) -> Callable[[Any, int], None]:
    def hook(owner: Any, fd: int) -> None:
        _trio_closing(watch, owner, fd)

    return hook


# ----- the public entry points -----------------------------------------------------------------


async def wait_handle(h: ExitHandle) -> ExitStatus:
    """Body of :meth:`ExitHandle.wait_async`.

    A handle's fd is readable exactly when its process is dead, so once the loop has seen it
    readable the status is read at once, without polling the fd again (that second look, and
    ``status()``'s third, were a tenth of the wake-up path).
    """
    if not h.is_alive():  # ValueError once closed
        return h._dead_status()
    while not await wait_readable(h.fileno(), h):
        if not h.is_alive():
            break
    return h._dead_status()  # ValueError if closed meanwhile


async def iter_waitset(ws: WaitSet) -> AsyncIterator[ExitHandle]:
    """Body of :meth:`WaitSet.as_exited_async`."""
    while True:
        batch = ws._poll(0, 1024)  # never blocks
        if batch is None:
            return
        got = False
        for fd, seq in batch:
            h = ws._claim(fd, seq)
            if h is not None:
                got = True
                yield h
        if not got:
            await wait_readable(ws.fileno(), ws)

