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
        self.blocked = 0  # reads blocked on this process right now (ops.read keeps it)
        # Read once (read_final), for every reader: the credentials it died with (None if
        # reaped before any could be read) and its status (None if it could not be read).
        self.final_creds: Optional[exithand.ProcessCredentials] = None
        self.final_status: Optional[exithand.ExitStatus] = None
        self.final_read = False
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
            released = self.blocked
            self._on_dead()
            # The readers run once this task yields: answered first, logged after.  Two
            # checkpoints: trio may run one batch of tasks in either order, and the readers
            # (all rescheduled by the one Event.set) all run in the first.
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            if released:
                log.debug("read-released pid=%d readers=%d", self.pid, released)
            # Only plain readers were waiting: they needed nothing read; what a status file
            # opened later will need is read now, while a zombie may still show it.
            self.read_final()

    def read_final(self) -> None:
        """Read the credentials and status a dead process is judged and described by, once.

        Before the blocked readers are released when a status file is open; else just after
        they are (plain ``exithand`` readers need neither, so they are not kept waiting for
        an ioctl and a status resolution), or at the first read of a status file, whichever
        comes first.  Limit: on kernels without PIDFD_INFO_EXIT (< 6.15) and without the
        proc connector, a zombie reaped by its parent within that moment leaves a status
        file opened later with an unknown status, where it read field 52 before.
        """
        if self.final_read:
            return
        self.final_read = True
        self.final_creds = self.credentials()
        try:
            self.final_status = self.status()
            log.debug("dead pid=%d status=%r", self.pid, self.final_status.describe())
        except exithand.Error as e:
            log.warning("pid %d: cannot read exit status: %s", self.pid, e)

    def _on_dead(self) -> None:
        """Read what every reader will be answered with, once, then release them all.

        Read what a zombie still shows before the parent reaps it: the credentials it died
        with (the access policy decides at death) and the status.  Then one ``Event.set()``
        reschedules every blocked read in one pass; each only slices the bytes its open file
        computed from these (pyfuse3 sends each reply from the worker task that received the
        request, so one task switch per reader is the floor; bench/_fuse_floor.py).  One log
        line for all of them, written by :meth:`run` after they were answered: a line per
        reader was most of the cost of a fan-out with ``--debug`` (each write to a busy
        stderr pipe took up to 0.2 ms).
        """
        if self.status_refs:  # someone will be told the status: read it while it shows
            self.read_final()
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
