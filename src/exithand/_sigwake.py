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


@contextlib.contextmanager
def wake_on_signal(write_fd: int) -> Iterator[bool]:
    """While active, a signal with a Python handler writes a byte to ``write_fd`` (non-blocking).

    Yields True when installed; False (and does nothing) outside the main thread or when an
    event loop already owns the process's wakeup fd.  The caller polls the read end along with
    what it waits for and drains it when it wakes (see :func:`drain`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    try:
        prev = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main interpreter, or a bad fd
        yield False
        return
    if prev != -1:  # an event loop's: leave it in place
        signal.set_wakeup_fd(prev)
        yield False
        return
    try:
        yield True
    finally:
        signal.set_wakeup_fd(-1)


@contextlib.contextmanager
def signal_pipe() -> Iterator[Optional[int]]:
    """A fresh pipe installed with :func:`wake_on_signal` for one wait: yields its read end to
    poll, or None where no wakeup fd can be installed (then no fd is made)."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        with wake_on_signal(w) as on:
            yield r if on else None
    finally:
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
