"""Dead processes kept answerable for a while after their last file closed (bounded).

A file of ``MNT/PID:INODE/`` opened while the process lived keeps its watch (one pidfd) and
answers after the reap.  Once the last such file closes, the watch of a *dead* process is not
closed at once but kept here until a deadline (``seconds`` after it was *first* left unused:
reopening it does not extend it), so that a *new* open of the pinned name shortly after the
reap (``cat MNT/P:I/exithand; cat MNT/P:I/exitstatus`` with the shell reaping in between) still
finds it.  Why this is sound:

* Only the pinned ``PID:INODE`` name finds a kept watch: the pidfs inode names one process for
  the life of the system (64-bit inode numbers), while a bare number may name a reuser by then.
* The pidfd was taken while the process lived, so it is that process's: the kernel itself
  answers its exit status to any pidfd holder after the reap (``PIDFD_INFO_EXIT``, 6.15+); what
  the daemon read at death (zombie, proc connector) is kept on the watch too.
* Who may read is still decided per reader by :meth:`.Watch.judge`; a reader the policy cannot
  judge after the reap (a same-user reader with no verdict taken at death) stays refused.

Bounded: at most ``total`` watches (one pidfd each; the daemon's fd limit counts them), at most
``per_user`` charged to one uid other than 0 (the uid whose close first left the watch unused;
uid 0 has only the global cap, as in :mod:`.quota`); keeping one more evicts that uid's entry
nearest its deadline first, else the one nearest its deadline of all.  Bookkeeping only, no
I/O; every operation is O(``total``) at worst (1,024 by default).
"""

from __future__ import annotations

from typing import Generic, Optional, TypeVar

W = TypeVar("W")
Key = tuple[int, int]  # (pid, pidfs inode)


class Lingering(Generic[W]):
    """The kept watches, by (pid, pidfs inode)."""

    def __init__(self, seconds: float, total: int, per_user: int) -> None:
        self.seconds = seconds
        self.total = total
        self.per_user = per_user
        self._kept: dict[Key, tuple[W, int, float]] = {}  # key -> (watch, uid, deadline)
        self._by_uid: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def enabled(self) -> bool:
        return self.seconds > 0 and self.total > 0 and self.per_user > 0

    def get(self, key: Key) -> Optional[W]:
        """The watch kept for ``key``, if any (it stays kept)."""
        entry = self._kept.get(key)
        return entry[0] if entry is not None else None

    def take(self, key: Key) -> Optional[W]:
        """Remove and return the watch kept for ``key`` (in use again)."""
        entry = self._kept.pop(key, None)
        if entry is None:
            return None
        self._uncharge(entry[1])
        return entry[0]

    def keep(self, key: Key, w: W, uid: int, deadline: float) -> list[W]:
        """Keep ``w`` until ``deadline``, charged to ``uid``; the watches evicted to make room
        (the caller closes them).  Disabled (``seconds`` or a cap 0): ``[w]`` itself."""
        if not self.enabled:
            return [w]
        evicted = []
        old = self.take(key)
        if old is not None and old is not w:
            evicted.append(old)
        if uid != 0 and self._by_uid.get(uid, 0) >= self.per_user:
            evicted.append(self._pop(self._soonest(uid)))
        if len(self._kept) >= self.total:
            evicted.append(self._pop(self._soonest(None)))
        self._kept[key] = (w, uid, deadline)
        self._by_uid[uid] = self._by_uid.get(uid, 0) + 1
        return evicted

    def expire(self, now: float) -> list[W]:
        """Remove and return the watches whose deadline has come."""
        return [self._pop(k) for k in [k for k, e in self._kept.items() if e[2] <= now]]

    def next_deadline(self) -> Optional[float]:
        """The earliest deadline; None if nothing is kept."""
        return min((e[2] for e in self._kept.values()), default=None)

    def clear(self) -> list[W]:
        """Remove and return every kept watch."""
        gone = [e[0] for e in self._kept.values()]
        self._kept.clear()
        self._by_uid.clear()
        return gone

    def _soonest(self, uid: Optional[int]) -> Key:
        return min((k for k, e in self._kept.items() if uid is None or e[1] == uid),
                   key=lambda k: self._kept[k][2])

    def _pop(self, key: Key) -> W:
        w, uid, _ = self._kept.pop(key)
        self._uncharge(uid)
        return w

    def _uncharge(self, uid: int) -> None:
        n = self._by_uid.get(uid, 0) - 1
        if n > 0:
            self._by_uid[uid] = n
        else:
            self._by_uid.pop(uid, None)
