"""The one ``process_mrelease`` retry rule, behind :meth:`exithand.ExitHandle.release_memory`.

Kernel facts (Linux 5.15+, ``mm/oom_kill.c``): ``process_mrelease(pidfd, 0)`` frees the address
space of a process that is *dying* (SIGKILL pending or being handled) on the caller's CPU.  It
answers EINVAL while the victim is not dying yet (the SIGKILL just sent has not been seen: that
changes within microseconds to milliseconds), EAGAIN when it could not take the victim's
``mmap_lock`` (contention, transient), ESRCH once no thread holds the ``mm`` any more (the exit
has released it: nothing left to do), ENOSYS on older kernels (or
``EXITHAND_DISABLE=mrelease``).

The rule, decided here only (used by :func:`exithand.kill_and_wait` and ``exithand lowmem``'s
reaper with ``ExitHandle.RELEASE_RETRY`` seconds, as Android's lmkd does "retry shortly"): with
``retry`` > 0, EINVAL is asked again until ``retry`` seconds have passed, waiting up to 1 ms on
the pidfd between tries (the wait ends early if the process dies, after which the next call
answers ESRCH); EAGAIN is asked again at once, at most :data:`EAGAIN_TRIES` times, within the
same window.  Everything else, and the last EINVAL, is raised through the one errno translation
(ESRCH -> NoSuchProcess, EPERM -> AccessDenied, otherwise :class:`exithand.Error` with
``.errno``).  ``retry=0`` calls once.
"""

from __future__ import annotations

import errno
import select
import time

from ._kernel import syscalls as _sys
from ._kernel.errors import translate_oserror

#: how often an EAGAIN (mmap_lock contention) is asked again within the retry window
EAGAIN_TRIES = 20


def release(pidfd: int, pid: int, retry: float) -> None:
    """``process_mrelease(pidfd)`` for process ``pid`` under the rule above."""
    if not retry >= 0:  # (NaN too)
        raise ValueError(f"retry must be a number of seconds >= 0, not {retry!r}")
    deadline = time.monotonic() + retry
    tries = 0
    while True:
        try:
            _sys.process_mrelease(pidfd)
            return
        except OSError as e:
            more = retry > 0 and time.monotonic() < deadline
            if e.errno == errno.EAGAIN and more and tries < EAGAIN_TRIES:
                tries += 1
                continue
            if e.errno == errno.EINVAL and more:
                p = select.poll()
                p.register(pidfd, select.POLLIN)
                p.poll(1)
                continue
            raise translate_oserror(e, pid, "process_mrelease") from None
