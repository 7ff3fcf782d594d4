"""One watcher per watched process, shared by every open file on it.

A :class:`Watch` owns one :class:`exithand.ExitHandle` (one pidfd) and one trio task that waits
for it to become readable (``trio.lowlevel.wait_readable(h.fileno())``: readable exactly when
the process is dead).  At death it reads the process's last credentials and exit status while
they can still be read (a zombie keeps both; after the reap only ``PIDFD_INFO_EXIT`` survives,
on 6.15+), sets an event that wakes the blocked readers, and notifies the stored FUSE poll
handles so that ``poll``/``epoll`` users re-poll and see POLLIN.

Opens of the same process share a watch (keyed by its identity: pidfs inode, or start time),
so a thousand readers of one process cost one pidfd and one task.  The last ``release``
closes it, calling ``trio.lowlevel.notify_closing`` first as trio requires for a watched fd.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import trio

import exithand

log = logging.getLogger("exithand.fs")

Key = tuple[int, Optional[int], Optional[int]]


def key_of(h: exithand.ExitHandle) -> Optional[Key]:
    """Identity of the handle's process, or None when nothing identifies it (no sharing)."""
    ident = h.identity
    if ident.inode is None and ident.start_time is None:
        return None
    return (ident.pid, ident.inode, ident.start_time)


class Watch:
    """The watched process of one or more open files."""

    def __init__(self, handle: exithand.ExitHandle, key: Optional[Key]) -> None:
        self.handle = handle
        self.key = key
        self.pid = handle.pid
        self.dead = trio.Event()
        self.refs = 0
        self.status_refs = 0  # open exithand_full/exitstatus files: keep credentials fresh
        self.poll_handles: dict[int, Any] = {}  # fh -> pyfuse3.PollHandle
        self.closed = False
        self._seen: Optional[exithand.ProcessCredentials] = None
        self._scope = trio.CancelScope()

    def credentials(self) -> Optional[exithand.ProcessCredentials]:
        """Last seen credentials; None if the process was reaped before we could read any."""
        try:
            creds = self.handle.credentials()
            if self._seen is None:
                self._seen = creds
            return creds
        except exithand.NoSuchProcess:
            return None
        except exithand.Error as e:
            log.warning("pid %d: cannot read credentials: %s", self.pid, e)
            return None

    def refresh(self) -> None:
        """Re-read the credentials (the scanner calls this each period); log a change."""
        before = self._seen
        now = self.credentials()
        if now is not None and before is not None and (now.ruid, now.euid, now.ppid) != (
                before.ruid, before.euid, before.ppid):
            log.debug("credentials-changed pid=%d ruid=%d euid=%d ppid=%d", self.pid,
                      now.ruid, now.euid, now.ppid)
        self._seen = now

    def needs_refresh(self) -> bool:
        """Is someone waiting to be judged by this process's last credentials?"""
        return self.status_refs > 0 and not self.dead.is_set() and not self.closed

    def status(self) -> exithand.ExitStatus:
        """The exit status (possibly unknown, with a reason).  Only called once dead."""
        st = self.handle.status()
        assert st is not None
        return st

    async def run(self) -> None:
        """The watcher task: wait for death, then wake everybody."""
        with self._scope:
            if self.closed:
                return
            if self.handle.is_alive():
                try:
                    await trio.lowlevel.wait_readable(self.handle.fileno())
                except trio.ClosedResourceError:
                    return
            self._on_dead()

    def _on_dead(self) -> None:
        # Read what a zombie still shows before the parent reaps it.
        self.credentials()
        try:
            st = self.status()
            log.debug("dead pid=%d status=%r", self.pid, st.describe())
        except exithand.Error as e:
            log.warning("pid %d: cannot read exit status: %s", self.pid, e)
        self.dead.set()
        self.notify_pollers()

    def notify_pollers(self) -> None:
        handles = list(self.poll_handles.values())
        self.poll_handles.clear()
        for ph in handles:
            try:
                ph.notify()
            except (OSError, RuntimeError) as e:  # the kernel may have dropped the poller
                log.debug("poll notify for pid %d failed: %s", self.pid, e)

    def close(self) -> None:
        """Stop the task and close the pidfd (trio is told first)."""
        if self.closed:
            return
        self.closed = True
        self._scope.cancel()
        fd = self.handle.fileno()
        try:
            trio.lowlevel.notify_closing(fd)
        except RuntimeError:
            pass  # outside trio.run (final cleanup): nothing is watching the fd any more
        self.handle.close()
