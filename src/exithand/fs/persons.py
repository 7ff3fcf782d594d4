"""Who is the person behind a request: the unit every quota of the daemon is charged to.

Any user may make a user namespace and map into it the subordinate uids ``/etc/subuid`` gives
them (the setuid ``newuidmap``; Debian gives every user 65,536).  Counted by uid number, one
person would then hold 65,537 shares of every quota.  So the daemon charges a request to a
*person*:

* a caller in the daemon's own user namespace (the initial one, normally) is its fsuid;
* a caller inside a user namespace is the **owner of its outermost user namespace below
  ours**: the uid (in our namespace) that created it.  Every namespace nested inside it, and
  every uid mapped there, is that same person's.
* a namespace whose outermost owner is uid 0 was made by the administrator (a container
  manager): its users are charged by the uid they map to in ours (the administrator delegated
  distinct uids to distinct people); a namespace made by root on behalf of a user
  (``unshare --user`` run by root) therefore does not merge its users.

Kernel facts relied on (nsfs ioctls on an fd of ``/proc/<tid>/ns/user``, Linux 4.9+;
``include/uapi/linux/nsfs.h``): ``NS_GET_PARENT`` = ``_IO(0xb7, 0x2)`` returns an fd of the
parent user namespace, or EPERM when the parent is outside the caller's (the daemon's) scope,
i.e. when the namespace is ours or above; ``NS_GET_OWNER_UID`` = ``_IO(0xb7, 0x4)`` writes the
creator's euid *as mapped into the calling process's user namespace* (a ``uid_t``).  A user
namespace's owner and parent are fixed at creation: the answer for one namespace never
changes.  Opening ``/proc/<tid>/ns/user`` needs ptrace read access to the caller thread: root
(the daemon) has it; a daemon that cannot open it charges the fsuid (said once in the log).
The thread is inside a syscall on our mount while its request is served, so its tid names it.

Cache (:class:`Persons`): namespace inode -> person, holding an fd of each cached namespace,
so the namespace (and with it its inode number, which nsfs reuses once a namespace is freed)
lives as long as the entry: a cached inode number can never name another namespace.  Bounded
(``size`` entries, least recently used evicted, its fd closed).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from collections import OrderedDict
from typing import Optional

log = logging.getLogger("exithand.fs")

NS_GET_PARENT = 0xB702  # _IO(0xb7, 0x2)
NS_GET_OWNER_UID = 0xB704  # _IO(0xb7, 0x4)


def user_ns_stat(tid: int) -> Optional[os.stat_result]:
    """``stat`` of thread ``tid``'s user namespace (nsfs inode); None if unreadable.  The one
    per-request /proc read of this module."""
    try:
        return os.stat(f"/proc/{tid}/ns/user")
    except OSError:
        return None


def _open_ns(tid: int) -> Optional[int]:
    try:
        return os.open(f"/proc/{tid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _owner_uid(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, NS_GET_OWNER_UID, buf)
    uid: int = struct.unpack("I", buf)[0]
    return uid


def outermost_owner(fd: int, ours: tuple[int, int]) -> int:
    """Owner uid (in our namespace) of the outermost namespace below ``ours`` on the way up
    from the user namespace ``fd`` (not ours).  Raises OSError if the kernel refuses."""
    cur = os.dup(fd)
    try:
        while True:
            try:
                parent = fcntl.ioctl(cur, NS_GET_PARENT)
            except OSError as e:
                if e.errno == 1:  # EPERM: the parent is outside our scope -> cur is outermost
                    return _owner_uid(cur)
                raise
            st = os.fstat(parent)
            if (st.st_dev, st.st_ino) == ours:
                os.close(parent)
                return _owner_uid(cur)
            os.close(cur)
            cur = parent
    finally:
        os.close(cur)


class Persons:
    """``person(uid, tid)``: the quota unit of a request (see the module docstring)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        st = os.stat("/proc/self/ns/user")
        self.ours = (st.st_dev, st.st_ino)
        self._cache: OrderedDict[tuple[int, int], tuple[int, int]] = OrderedDict()
        self._warned = False

    def __len__(self) -> int:
        return len(self._cache)

    def person(self, uid: int, tid: int) -> int:
        """The person to charge a request of fsuid ``uid`` from thread ``tid`` to."""
        if tid <= 0:
            return uid
        st = user_ns_stat(tid)
        if st is None:
            return uid
        key = (st.st_dev, st.st_ino)
        if key == self.ours:
            return uid
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return uid if hit[0] == 0 else hit[0]
        fd = _open_ns(tid)
        if fd is None:
            return self._cannot(uid, tid, "cannot open its user namespace")
        try:
            st2 = os.fstat(fd)
            if (st2.st_dev, st2.st_ino) != key:  # the thread moved or its tid was reused
                os.close(fd)
                return uid
            owner = outermost_owner(fd, self.ours)
        except OSError as e:
            os.close(fd)
            return self._cannot(uid, tid, str(e))
        self._cache[key] = (owner, fd)
        while len(self._cache) > self.size:
            _, (_, old) = self._cache.popitem(last=False)
            os.close(old)
        return uid if owner == 0 else owner

    def _cannot(self, uid: int, tid: int, why: str) -> int:
        if not self._warned:
            self._warned = True
            log.warning("cannot tell the person behind thread %d (%s): charging by uid; "
                        "subordinate uids then count as other people", tid, why)
        return uid

    def close(self) -> None:
        for _, fd in self._cache.values():
            os.close(fd)
        self._cache.clear()
