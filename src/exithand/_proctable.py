"""``exithand.ProcessTable``: the set of live processes, kept current from the proc connector.

A consumer that needs "every process" again and again (a low-memory killer choosing a victim)
can list ``/proc`` each time, or keep this table: it is read from ``/proc`` once, after
subscribing, and then follows the kernel's fork and exit events (netlink proc connector,
:mod:`exithand._kernel.netlink`), so a lookup lists nothing.

What it holds, and the facts behind it:

* **A superset of the live thread-group leaders** (process ids, as ``/proc`` lists them),
  never fewer: a pid is added at its ``FORK`` event (only when ``child_pid == child_tgid``: a new
  thread is not a new process) and dropped at its leader's ``EXIT`` event only if
  ``/proc/<pid>`` is then gone.  Events of different CPUs may arrive out of order, and the
  parent may reap the child before its exit event is sent (seen on 6.18: ``ppid`` 0 in it), so
  a *new* process may already hold the number when the old one's exit event is read; the
  ``/proc`` check keeps it.  An entry that outlived its process that way (a zombie, a reused
  number now naming a thread) is the caller's to notice when it reads the process's files,
  and to :meth:`ProcessTable.discard`.
* **Subscribe, then scan.**  The first ``/proc`` listing is made after the subscription, so a
  process forked meanwhile is in the listing or has its fork event queued (or both: adding is
  idempotent); a process gone meanwhile has its exit event queued.
* **Overflow.**  The kernel drops events when the receive queue is full and the next ``recv``
  fails once with ``ENOBUFS`` (netlink's overrun report).  A table that lost events may lack a
  process, so it is then *stale*: :attr:`ProcessTable.stale` says so, and the next
  :meth:`ProcessTable.pids` lists ``/proc`` again (after draining, so the new listing is not
  older than the events already read).  Never silently: :attr:`ProcessTable.gaps` counts the
  overflows, :attr:`ProcessTable.rescans` the listings.
* Only ``FORK`` and ``EXIT`` are asked for (the 6.6+ event filter; an older kernel sends
  everything and the rest is skipped).  Global pids: the subscription works only in the initial
  pid namespace (see :func:`exithand._kernel.netlink.subscribe_checked`).

Availability is the proc connector's (root/CAP_NET_ADMIN; some 6.6+ kernels also other users;
never assumed: probed with a self-test), else :class:`exithand.BackendUnavailable`.
Not thread-safe: use it from one thread.  Nothing runs in the background: events wait in the
socket (``rcvbuf`` bytes, about 1 KiB each) until :meth:`ProcessTable.update` or
:meth:`ProcessTable.pids` reads them; register :meth:`ProcessTable.fileno` in a poll loop to keep
up on a busy machine.
"""

from __future__ import annotations

import errno
import socket
from typing import Optional

from ._kernel import netlink as _netlink
from ._kernel import procfs as _procfs
from ._kernel.errors import BackendUnavailable

#: receive buffer asked for (bytes): ~30,000 queued events (capped at ``net.core.rmem_max``
#: without CAP_NET_ADMIN)
DEFAULT_RCVBUF = 32 << 20


def _list_proc() -> set[int]:
    return set(_procfs.pids())


class ProcessTable:
    """Live process ids, from one ``/proc`` listing plus fork/exit events (module doc).

    Raises :class:`exithand.BackendUnavailable` (with the reason) where the proc connector
    cannot be used, ``ValueError`` for a bad ``rcvbuf``.
    """

    def __init__(self, *, rcvbuf: Optional[int] = DEFAULT_RCVBUF) -> None:
        if rcvbuf is not None and (isinstance(rcvbuf, bool) or not isinstance(rcvbuf, int)
                                   or not 0 <= rcvbuf <= 2**31 - 1):
            raise ValueError(f"rcvbuf must be an int from 0 to {2**31 - 1} bytes or None, "
                             f"not {rcvbuf!r}")
        sock, _filtered, why = _netlink.subscribe_checked(
            _netlink.PROC_EVENT_FORK | _netlink.PROC_EVENT_EXIT, rcvbuf)
        if sock is None:
            raise BackendUnavailable(f"cannot keep a process table: {why}")
        sock.setblocking(False)
        self._sock: Optional[socket.socket] = sock
        #: overflows seen (each may have lost any number of events)
        self.gaps = 0
        #: full ``/proc`` listings made (the first one included)
        self.rescans = 0
        #: forks and exits applied
        self.events = 0
        self._stale = False
        self._pids: set[int] = set()
        try:
            self._rescan()
        except BaseException:
            self.close()
            raise

    def _rescan(self) -> None:
        self._stale = False
        self._pids = _list_proc()
        self.rescans += 1

    @property
    def stale(self) -> bool:
        """Events were lost (overflow) since the last listing: the next :meth:`pids` rescans."""
        return self._stale

    def fileno(self) -> int:
        """The netlink socket: readable when events are queued (for poll/epoll)."""
        if self._sock is None:
            raise ValueError("ProcessTable is closed")
        return self._sock.fileno()

    def update(self) -> int:
        """Apply every queued event without blocking; returns how many forks/exits were applied.

        An overflow marks the table :attr:`stale` (no rescan here: :meth:`pids` does it).
        """
        if self._sock is None:
            raise ValueError("ProcessTable is closed")
        n = 0
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return n
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.gaps += 1
                self._stale = True
                continue
            for ev in _netlink.parse(data):
                if ev.what == _netlink.PROC_EVENT_FORK and ev.pid == ev.tgid:
                    self._pids.add(ev.tgid)
                elif ev.what == _netlink.PROC_EVENT_EXIT and ev.pid == ev.tgid:
                    # the number may name a new process already (see the module doc)
                    if not _procfs.exists(ev.tgid):
                        self._pids.discard(ev.tgid)
                else:
                    continue
                n += 1
                self.events += 1

    def pids(self) -> list[int]:
        """The live processes, sorted: queued events applied first, ``/proc`` listed again if
        :attr:`stale`."""
        self.update()
        if self._stale:
            self._rescan()
        return sorted(self._pids)

    def __contains__(self, pid: object) -> bool:
        return pid in self._pids

    def __len__(self) -> int:
        return len(self._pids)

    def discard(self, pid: int) -> None:
        """Forget ``pid`` (the caller found it gone); a later fork event brings it back."""
        self._pids.discard(pid)

    def close(self) -> None:
        """Close the socket.  Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> ProcessTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
