"""``exithand.wait_reaped``: wait until processes are *reaped*, not only dead.

Dead is not reaped: a zombie is dead (its handle is readable, ``exithand wait`` returns) until
its parent collects it with ``wait(2)``.  Some callers need the reap (FreeBSD ``pwait -r``, a
supervisor that must know the number is free, a status that only ``PIDFD_INFO_EXIT`` can give
after the reap).  What we rely on, best first:

* **pidfs (Linux 6.9+), a pidfd:** ``poll`` reports POLLHUP on the pidfd once the process is
  reaped (POLLIN alone while it is a zombie).  POLLHUP is reported whatever the event mask, so
  each pidfd is registered with an empty mask: a zombie does not wake the poll, its reap does.
  No polling of anything.
* **anything else** (kernels before 6.9, whose pidfds give no POLLHUP and show the reap only as
  ``Pid: -1`` in fdinfo; the procpoll and connector backends, which pin by start time):
  :meth:`ExitHandle.is_reaped` is asked every :data:`POLL_MIN` s, backing off to
  :data:`POLL_MAX` s.  Honest, and bounded in latency, but it is polling.

A thread handle (``thread=True``) is "reaped" when its task is released: at once for a
non-leader thread, at the process's reap for the leader.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterable

from ._handle import ExitHandle, check_timeout, poll_ms
from ._kernel import syscalls as _sys

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Optional

#: polling bounds (seconds) where the reap cannot be waited for by POLLHUP
POLL_MIN = 0.002
POLL_MAX = 0.05


def _hup_capable(h: ExitHandle) -> bool:
    return h.backend == "pidfd" and _sys.pidfd_has_unique_inode()


def wait_reaped(handles: Iterable[ExitHandle], timeout: Optional[float] = None,
                count: Optional[int] = None) -> list[ExitHandle]:
    """Wait until ``count`` of ``handles`` (default: all) are reaped, or ``timeout`` passes.

    Returns the reaped handles in the order their reap was seen (fewer than asked on
    timeout; never raises for it).  The handles stay open and yours.  Nothing is reaped here:
    the processes' parents do that.
    """
    timeout = check_timeout(timeout)
    todo = list(dict.fromkeys(handles))
    want = len(todo) if count is None else count
    if isinstance(want, bool) or not isinstance(want, int) or want < 0:
        raise ValueError(f"count must be a non-negative integer, not {count!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    done: list[ExitHandle] = []
    interval = POLL_MIN
    while len(done) < want and todo:
        for h in [h for h in todo if h.is_reaped()]:
            todo.remove(h)
            done.append(h)
        if len(done) >= want or not todo:
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        hup = [h for h in todo if _hup_capable(h)]
        if len(hup) == len(todo):  # every one will say POLLHUP at its reap: sleep in poll
            p = select.poll()
            for h in hup:
                p.register(h.fileno(), 0)
            p.poll(poll_ms(left))
            continue
        nap = interval if left is None else min(interval, left)
        if hup:  # some by POLLHUP, the others by asking: sleep in poll for the nap
            p = select.poll()
            for h in hup:
                p.register(h.fileno(), 0)
            p.poll(poll_ms(nap))
        else:
            time.sleep(nap)
        interval = min(POLL_MAX, interval * 1.5)
    return done
