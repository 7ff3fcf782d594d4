"""Signals must end a blocking wait: wakeup fds for the main thread, masks for our threads.

CPython and kernel facts this relies on:

* CPython runs Python-level signal handlers only in the main thread, between bytecodes.  The
  C-level handler only records the signal.  A blocking ``poll``/``epoll_wait``/``select`` in
  the main thread is interrupted (``EINTR``, after which PEP 475 runs the handler, which may
  raise ``KeyboardInterrupt`` or a command's own exception) only if the signal is delivered to
  the main thread *while* it sleeps in that syscall.  Two cases are lost with no timeout, for
  ever:

  - the signal arrives after the interpreter's last check for pending signals but before the
    syscall starts (measured: ``exithand kill`` ignored a SIGTERM about once in 600 tries);
  - the kernel delivers the signal to another thread of the process (any thread that does not
    block it may take a process-directed signal): that thread's C handler records it, and the
    main thread sleeps on.

* ``signal.set_wakeup_fd(fd)`` makes the C-level handler also write one byte to ``fd``,
  whichever thread it runs in.  With the read end in the poll set, the wait returns whenever the
  signal came: a byte written before the syscall is already there, one written during it wakes
  it.  The interpreter then runs the Python handler at its next check, right after the poll call
  returns.  Only the main thread may set it, there is one per process, and an event loop
  (asyncio, trio) owns it while it runs: :func:`wake_on_signal` installs ours only where none is
  set, for one wait, and puts ``-1`` back after.  (Where a loop's fd was set, the loop's fd is
  put back with ``warn_on_full_buffer`` at its default: a blocking wait inside a running event
  loop blocks that loop anyway.)

* Threads inherit the creator's signal mask.  :func:`start_thread` starts our helper threads
  with the asynchronous signals blocked, so process-directed signals go to the application's
  threads (normally the main thread, whose syscall they interrupt) and never to ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Optional

#: Signals raised by a fault of the thread itself: left unblocked (blocking them does not
#: stop the kernel from delivering them, and it would hide them from faulthandler).
_SYNCHRONOUS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP,
                signal.SIGSYS, signal.SIGABRT}


def async_signals() -> set[int]:
    """Every signal a helper thread blocks: all but the synchronous fault signals."""
    return {int(s) for s in signal.valid_signals()} - {int(s) for s in _SYNCHRONOUS}


def start_thread(t: threading.Thread) -> None:
    """``t.start()`` with the asynchronous signals blocked in the new thread (inherited mask).

    The creator's own mask is blocked only around ``pthread_create`` and restored after; a
    signal arriving meanwhile stays pending and is delivered at the restore.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, async_signals())
    try:
        t.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: write ends of our pipes currently installed as the wakeup fd (main thread; normally 0 or 1)
_installed: set[int] = set()


def _loop_running_here() -> bool:
    """Is an asyncio or trio loop running in this thread?  It owns the wakeup fd then (a blocking
    wait inside it blocks the loop anyway), so it is left alone, not even swapped for a moment:
    asyncio dispatches ``add_signal_handler`` callbacks from the bytes written to it."""
    if _asyncio_running_loop() is not None:
        return True
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except (RuntimeError, AttributeError):
            return False
        return True
    return False


def _asyncio_running_loop() -> object:
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    try:
        return aio.get_running_loop()
    except RuntimeError:
        return None


def _put_back(ours: int) -> None:
    """Leave no wakeup fd of ours installed (another one found installed is kept)."""
    try:
        cur = signal.set_wakeup_fd(-1)
        if cur != -1 and cur != ours:
            signal.set_wakeup_fd(cur)
    except ValueError:  # not the main thread (any more): nothing of ours can be installed
        pass
    _installed.discard(ours)


@contextlib.contextmanager
def wake_on_signal(write_fd: int, read_fd: Optional[int] = None) -> Iterator[bool]:
    """While active, a signal with a Python handler writes a byte to ``write_fd`` (non-blocking).

    Yields True when installed; False (and does nothing) outside the main thread, while an
    asyncio or trio loop runs in this thread, or when another wakeup fd is installed (an event
    loop between runs): that one is put back at once, and any signal byte that reached our pipe
    in between is forwarded to it when ``read_fd`` (our pipe's read end, holding only signal
    bytes) is given.  On exit the wakeup fd is reset only if it is still ours, so even a handler
    that raised right after the install leaves nothing dangling.  Only for waits that may
    block: a zero timeout needs none of this.
    """
    if threading.current_thread() is not threading.main_thread() or _loop_running_here():
        yield False
        return
    _installed.add(write_fd)  # first: a handler raising right after the install is covered
    try:
        try:
            prev = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except ValueError:  # not the main interpreter, or a bad fd
            _installed.discard(write_fd)
            yield False
            return
        if prev != -1:  # someone else's: give it back, with what it may have missed
            signal.set_wakeup_fd(prev)
            _installed.discard(write_fd)
            if read_fd is not None:
                _forward(read_fd, prev)
            yield False
            return
        yield True
    finally:
        if write_fd in _installed:
            _put_back(write_fd)


def _forward(read_fd: int, to_fd: int) -> None:
    try:
        data = os.read(read_fd, 4096)
    except OSError:
        return
    if data:
        with contextlib.suppress(OSError):
            os.write(to_fd, data)


@contextlib.contextmanager
def signal_pipe(blocking: bool = True) -> Iterator[Optional[int]]:
    """A fresh pipe installed with :func:`wake_on_signal` for one wait: yields its read end to
    poll, or None where none is needed or possible (not blocking, not the main thread, an event
    loop's fd, no fd left: then the wait is as before, without this protection)."""
    if not blocking or threading.current_thread() is not threading.main_thread():
        yield None
        return
    try:
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:  # EMFILE/ENFILE: waiting matters more than this protection
        yield None
        return
    try:
        with wake_on_signal(w, r) as on:
            yield r if on else None
    finally:
        if w in _installed:  # (a raise between install and the with) never leave it dangling
            _put_back(w)
        os.close(r)
        os.close(w)


def drain(fd: int) -> None:
    """Empty a non-blocking pipe (the signal bytes are not needed: the interpreter keeps its own
    record of which signals arrived)."""
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _after_fork_in_child() -> None:
    # A fork from another thread while the main thread waited: the child inherits our pipe as
    # its wakeup fd (the interpreter's setting), shared with the parent.  Reset it there.
    if _installed:
        _put_back(next(iter(_installed)))
        _installed.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
