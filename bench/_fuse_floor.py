"""The pyfuse3 floor: the least a pyfuse3 + trio daemon can do to answer blocked reads at a death.

``python _fuse_floor.py MNT`` mounts a filesystem with the same shape as exithand's
(``MNT/<pid>/exithand``, size 0, ``direct_io``) and nothing else: no policy, no status, no
scanner, no bookkeeping.  ``open`` takes a pidfd (one per pid, shared), one trio task waits for
it to turn readable and sets a ``trio.Event``; each ``read`` blocks on that event and returns
``b""`` (``poll`` answers readable after it, and notifies the kernel's poll handles at
it).  What is left is pyfuse3's and trio's own cost: one worker task per blocked read (the
reply is sent from the task that received the request, after the handler returns), one task
switch per reader to resume it, one ``fuse_reply_buf`` each.

It speaks the protocol ``fs_latency.py`` expects of a daemon: ``READY=1`` on
``$NOTIFY_SOCKET`` once mounted, a ``read-blocked`` line on stderr per blocked read (written
before the death, so not in the measured path), a clean unmount on SIGTERM.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import stat
import sys
from typing import Any

import pyfuse3
import trio

FILE = b"exithand"


class FloorFS(pyfuse3.Operations):
    def __init__(self) -> None:
        super().__init__()
        self.nursery: Any = None
        self.events: dict[int, trio.Event] = {}  # pid -> dead
        self.fh_pid: dict[int, int] = {}
        self.pollers: dict[int, list[Any]] = {}  # pid -> PollHandles to notify at death
        self.next_fh = 1

    def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        is_dir = ino == pyfuse3.ROOT_INODE or ino & 1 == 0
        a.st_mode = (stat.S_IFDIR | 0o555) if is_dir else (stat.S_IFREG | 0o444)
        a.st_size = 0
        a.entry_timeout = 0
        a.attr_timeout = 0
        return a

    # inodes: 2*pid for the directory, 2*pid+1 for its file
    async def lookup(self, parent: int, name: bytes, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if parent == pyfuse3.ROOT_INODE and name.isdigit():
            return self._attr(2 * int(name))
        if parent != pyfuse3.ROOT_INODE and parent & 1 == 0 and name == FILE:
            return self._attr(parent + 1)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        return self._attr(inode)

    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        pid = inode // 2
        if pid not in self.events:
            try:
                fd = os.pidfd_open(pid)
            except OSError as e:
                raise pyfuse3.FUSEError(e.errno or errno.EIO) from None
            self.events[pid] = trio.Event()
            self.nursery.start_soon(self._watch, pid, fd)
        fh = self.next_fh
        self.next_fh += 1
        self.fh_pid[fh] = pid
        return pyfuse3.FileInfo(fh=fh, direct_io=True)

    async def _watch(self, pid: int, fd: int) -> None:
        try:
            await trio.lowlevel.wait_readable(fd)
            self.events[pid].set()
            for ph in self.pollers.pop(pid, []):
                ph.notify()
        finally:
            trio.lowlevel.notify_closing(fd)
            os.close(fd)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        ev = self.events[self.fh_pid[fh]]
        if not ev.is_set():
            sys.stderr.write(f"read-blocked fh={fh}\n")
            sys.stderr.flush()
            await ev.wait()
        return b""

    async def poll(self, inode: int, fh: int, poll_handle: Any, ctx: Any) -> int:
        pid = self.fh_pid[fh]
        if self.events[pid].is_set():
            return select.POLLIN | select.POLLRDNORM
        if poll_handle is not None:
            self.pollers.setdefault(pid, []).append(poll_handle)
        return 0

    async def release(self, fh: int) -> None:
        self.fh_pid.pop(fh, None)


async def _serve(fs: FloorFS) -> None:
    async with trio.open_nursery() as nursery:
        fs.nursery = nursery

        async def on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                async for _ in sigs:
                    pyfuse3.terminate()
                    return

        nursery.start_soon(on_signal)
        path = os.environ.get("NOTIFY_SOCKET")
        if path:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(b"READY=1", path)
        await pyfuse3.main(min_tasks=4, max_tasks=20_000)
        nursery.cancel_scope.cancel()


def main() -> None:
    fs = FloorFS()
    pyfuse3.init(fs, sys.argv[1], {"fsname=floor", "allow_other", "ro"})
    try:
        trio.run(_serve, fs)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
