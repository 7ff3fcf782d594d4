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
  (asyncio, trio) owns it while it runs: :func:`signal_pipe` installs ours only where none is
  set and no loop runs in the thread, for one wait, and resets it after.

* Threads inherit the creator's signal mask.  :func:`start_thread` starts our helper threads
  with the asynchronous signals blocked, so process-directed signals go to the application's
  threads (normally the main thread, whose syscall they interrupt) and never to ours.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
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


#: The process's signal pipe ``(read end, write end)``, both non-blocking: made once, never
#: closed (a new one in a forked child).  Never closing it is what makes the wakeup fd safe
#: against a handler that raises at any point of the install/reset dance: the worst case is our
#: live pipe left installed (later signals then fill it, harmlessly), never a closed fd number
#: that a file could reuse and receive signal bytes.
_pipe: Optional[tuple[int, int]] = None
_pipe_lock = threading.Lock()


def _the_pipe() -> Optional[tuple[int, int]]:
    global _pipe
    if _pipe is None:
        with _pipe_lock:
            if _pipe is None:
                try:
                    _pipe = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                except OSError:  # EMFILE/ENFILE: waiting matters more than this protection
                    return None
    return _pipe


def _loop_running_here() -> bool:
    """Is an asyncio or trio loop running in this thread?  It owns the wakeup fd then (a blocking
    wait inside it blocks the loop anyway), so it is left alone, not even swapped for a moment:
    asyncio dispatches ``add_signal_handler`` callbacks from the bytes written to it."""
    aio = sys.modules.get("asyncio")
    if aio is not None:
        try:
            aio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return True
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except (RuntimeError, AttributeError):
            return False
        return True
    return False


def _put_back(ours: int) -> None:
    """Leave our pipe uninstalled (another wakeup fd found installed is kept)."""
    try:
        cur = signal.set_wakeup_fd(-1)
        if cur not in (-1, ours):
            signal.set_wakeup_fd(cur)
    except ValueError:  # not the main thread (any more): nothing of ours can be installed
        pass


@contextlib.contextmanager
def signal_pipe(blocking: bool = True) -> Iterator[Optional[int]]:
    """For one wait that may block: the read end of the signal pipe, installed as the wakeup fd,
    for the caller to poll along with what it waits for (and :func:`drain` when it wakes);
    ``None`` (nothing done) when not needed or possible: not blocking, not the main thread, an
    asyncio or trio loop running here, no fd left, or another wakeup fd installed (an event loop
    between runs: it is put back at once, with any signal byte our pipe caught meanwhile).
    Reset after the wait, only if still ours.
    """
    if not blocking or threading.current_thread() is not threading.main_thread() \
            or _loop_running_here():
        yield None
        return
    p = _the_pipe()
    if p is None:
        yield None
        return
    r, w = p
    drain(r)  # bytes of earlier signals: their handlers have run
    try:  # (the install inside: a handler raising right after it still gets it reset)
        try:
            prev = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except ValueError:  # not the main interpreter
            prev = None
        if prev is None or prev not in (-1, w):
            if prev is not None:
                with contextlib.suppress(ValueError):
                    signal.set_wakeup_fd(prev)
                _forward(r, prev)
            yield None
        else:
            # One GIL round trip before the caller sleeps: CPython 3.11 can lose the "signal
            # pending" mark of a signal that landed just before the install (no byte written)
            # when it recomputes it after a call; taking the GIL back recomputes it, so the
            # handler runs at the end of this call instead of never (review: 1 hang in 3 runs
            # of 3,000 SIGALRM-interrupted waits before, none after).
            select.select([], [], [], 0)
            yield r
    finally:
        _put_back(w)


def _forward(read_fd: int, to_fd: int) -> None:
    try:
        data = os.read(read_fd, 4096)
    except OSError:
        return
    if data:
        with contextlib.suppress(OSError):
            os.write(to_fd, data)


def drain(fd: int) -> None:
    """Empty a non-blocking pipe (the signal bytes are not needed: the interpreter keeps its own
    record of which signals arrived)."""
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _after_fork_in_child() -> None:
    # The child shares the parent's pipe (and, after a fork from another thread while the main
    # thread waited, has it installed as its wakeup fd): uninstall it, and make a new one when
    # needed.  The inherited ends are left open (closing them could recycle their numbers
    # under an inherited epoll registration); exec closes them (O_CLOEXEC).
    global _pipe
    if _pipe is not None:
        _put_back(_pipe[1])
        _pipe = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
