"""Per-mount-namespace cache of what a reader's ``mountinfo`` says, re-read only on change.

``hidepid=`` of a reader's /proc (:mod:`.hidepid`) comes from its ``/proc/<pid>/mountinfo``:
with 10,000 mounts that is about 1 MB to read and parse, and re-reading it every second per
namespace made lookups and opens of every user wait behind it (issue 21: open p90 4.9 s with 6
such namespaces flooded).  Now each namespace's text is parsed once and kept until it changes.

Kernel facts (``fs/proc_namespace.c``, all Linux 2.6.15+): an open fd of ``/proc/<pid>/mountinfo``
holds a reference to that mount namespace (so the namespace, and its nsfs inode number, which
is reused once a namespace is freed, live as long as the cache entry: a cached key never names
another namespace), and ``poll()`` on it reports ``POLLPRI|POLLERR`` once the namespace's mount
table changed since the fd was last read (``mounts_poll``: ``ns->event``).  Invalidation rule:
an entry is answered from memory while its fd polls quiet; any mount or unmount in that
namespace makes the next request re-read it (from offset 0, on the same fd).  Per request: one
``stat`` of ``/proc/<pid>/ns/mnt`` and one zero-timeout ``poll``, whatever the mount table's
size.  Bounded: ``size`` namespaces, least recently used closed first.
"""

from __future__ import annotations

import os
import select
from collections import OrderedDict
from typing import Callable, Generic, Optional, TypeVar

T = TypeVar("T")


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks).decode("utf-8", "replace")


class MountinfoCache(Generic[T]):
    """``get(pid)``: ``parse(mountinfo text)`` of ``pid``'s mount namespace, cached as above.
    ``reads`` counts the texts actually read (for tests)."""

    def __init__(self, parse: Callable[[str], T], size: int = 256) -> None:
        self.parse = parse
        self.size = size
        self.reads = 0
        self._cache: OrderedDict[tuple[int, int], tuple[int, T]] = OrderedDict()

    def get(self, pid: int) -> Optional[T]:
        """None if ``pid``'s namespace cannot be read (gone, or refused); OSError EMFILE/ENFILE
        passes through (the caller fails closed)."""
        try:
            st = os.stat(f"/proc/{pid}/ns/mnt")
        except OSError:
            return None
        key = (st.st_dev, st.st_ino)
        hit = self._cache.get(key)
        if hit is not None:
            fd, value = hit
            self._cache.move_to_end(key)
            p = select.poll()
            p.register(fd, select.POLLPRI)
            if not p.poll(0):
                return value
            value = self.parse(_read_all(fd))  # changed: re-read on the same fd
            self.reads += 1
            self._cache[key] = (fd, value)
            return value
        try:
            fd = os.open(f"/proc/{pid}/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (24, 23):  # EMFILE, ENFILE
                raise
            return None
        try:
            value = self.parse(_read_all(fd))
            st2 = os.stat(f"/proc/{pid}/ns/mnt")
        except BaseException as e:
            os.close(fd)
            if isinstance(e, OSError):
                return None
            raise
        if (st2.st_dev, st2.st_ino) != key:  # it moved meanwhile: answer, but do not cache
            os.close(fd)
            return value
        self.reads += 1
        self._cache[key] = (fd, value)
        while len(self._cache) > self.size:
            _, (old, _) = self._cache.popitem(last=False)
            os.close(old)
        return value

    def close(self) -> None:
        for fd, _ in self._cache.values():
            os.close(fd)
        self._cache.clear()
