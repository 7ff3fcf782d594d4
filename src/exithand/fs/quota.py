"""What one user may hold in the daemon: quotas per uid under a global cap.

The daemon is shared by every user of the machine, so no single user may use up what it has:

* **open files** of ``<pid>/*`` -- each may pin one more process, i.e. one more pidfd (readers
  of one process share its pidfd, :mod:`.watch`), so they bound the daemon's fds;
* **blocked reads** -- each holds a pyfuse3 worker task until the death it waits for;
* **directory handles** -- each holds a snapshot of the process list until closed;
* **lingering watches** -- the pidfd of a dead process kept for ``linger_seconds`` after its
  last file closed, so that a new open of ``PID:INODE`` after the reap answers
  (:mod:`.linger`); keeping one more evicts the oldest (the uid's own first), never refuses.

Every kind has a global cap and a per-uid quota (none for uid 0); a request beyond either fails
with EAGAIN for the user who made it, and nobody else is affected while they are within
theirs.  (A few users together can still fill a global cap: the caps are sized so that even
then the daemon keeps working and within its fd limit.)  Counts are charged to the opener's
*person* (:mod:`.persons`: its fsuid, or for a caller inside a user namespace the owner of the
outermost one, so one user's subordinate uids share that user's quota), since ``read()``
carries no caller in pyfuse3; a lingering watch to the person owning the dead process.  The
``uid`` arguments below are persons.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Global caps and per-uid quotas (see ``exithand mount --help``)."""

    files: int
    readers: int
    dirs: int
    files_per_user: int
    readers_per_user: int
    dirs_per_user: int
    lingering: int = 0
    lingering_per_user: int = 0
    linger_seconds: float = 0.0

    @classmethod
    def default(cls, max_readers: int, per_user: int = 0, max_dirs: int = 1024,
                max_lingering: int = 1024, linger_seconds: float = 30.0) -> Limits:
        """Blocked reads: ``max_readers``, ``per_user`` each (0: a quarter, at least 1).
        Open files: ``max_readers`` + 1024 (a file need not be read), twice ``per_user``
        each.  Directory handles: ``max_dirs``, an eighth each (at least 8).  Lingering
        watches: ``max_lingering`` for ``linger_seconds``, an eighth each (at least 8)."""
        pu = min(per_user or max(1, max_readers // 4), max_readers)
        files = max_readers + 1024
        return cls(files=files, readers=max_readers, dirs=max_dirs,
                   files_per_user=min(files, 2 * pu), readers_per_user=pu,
                   dirs_per_user=max(1, min(max_dirs, max(8, max_dirs // 8))),
                   lingering=max_lingering,
                   lingering_per_user=min(max_lingering, max(8, max_lingering // 8)),
                   linger_seconds=linger_seconds)


class Counter:
    """One kind of resource: how many each uid holds, and in total."""

    def __init__(self, kind: str, total: int, per_user: int) -> None:
        self.kind = kind
        self.total = total
        self.per_user = per_user
        self.used = 0
        self.by_uid: dict[int, int] = {}

    def take(self, uid: int) -> str:
        """Charge one to ``uid``; ``""`` if granted, else why not (nothing charged).
        uid 0 (the administrator) has no per-user quota, only the global cap."""
        mine = self.by_uid.get(uid, 0)
        if mine >= self.per_user and uid != 0:
            return f"uid {uid} holds {mine} {self.kind} (quota {self.per_user} per user)"
        if self.used >= self.total:
            return f"{self.used} {self.kind} in use (cap {self.total})"
        self.by_uid[uid] = mine + 1
        self.used += 1
        return ""

    def give(self, uid: int) -> None:
        n = self.by_uid.get(uid, 0) - 1
        if n > 0:
            self.by_uid[uid] = n
        else:
            self.by_uid.pop(uid, None)
        self.used = max(0, self.used - 1)
