"""One watcher per watched process, shared by every open file on it.

A :class:`Watch` owns one :class:`exithand.ExitHandle` (one pidfd) and one trio task that waits
for it to become readable (``trio.lowlevel.wait_readable(h.fileno())``: readable exactly when
the process is dead).  At death, first of all, it decides for every reader of a status file
whether the kernel would show it the exit code (:mod:`.policy`, :mod:`.askkernel`): that must
happen while the zombie exists.  Then it reads the last credentials and exit status (a zombie
keeps both; after the reap only ``PIDFD_INFO_EXIT`` survives, on 6.15+), sets an event that
wakes the blocked readers, and notifies the stored FUSE poll handles so that ``poll``/``epoll``
users re-poll and see POLLIN.  Nothing is done periodically: a watch costs no CPU until the
death (credentials are never sampled; they are judged at death).

Opens of the same process share a watch (keyed by its identity: pidfs inode, or start time),
so a thousand readers of one process cost one pidfd and one task.  The last ``release``
closes it, calling ``trio.lowlevel.notify_closing`` first as trio requires for a watched fd.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import trio

import exithand

from . import access as policy
from . import askkernel

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

    def __init__(self, handle: exithand.ExitHandle, key: Optional[Key],
                 access_policy: str = policy.DEFAULT_POLICY) -> None:
        self.handle = handle
        self.key = key
        self.pid = handle.pid
        self.policy = access_policy
        self.dead = trio.Event()
        self.refs = 0
        self.readers: dict[policy.Caller, int] = {}  # callers with a status file open
        self.verdicts: dict[policy.Caller, tuple[bool, str]] = {}  # decided at death
        self._kernel_answers: dict[tuple[int, int], policy.KernelAnswer] = {}  # at death
        self.poll_handles: dict[int, Any] = {}  # fh -> pyfuse3.PollHandle
        self.blocked = 0  # reads blocked on this process right now (ops.read keeps it)
        # Read once (read_final), for every reader: the credentials it died with (None if
        # reaped before any could be read) and its status (None if it could not be read).
        self.final_creds: Optional[exithand.ProcessCredentials] = None
        self.final_status: Optional[exithand.ExitStatus] = None
        self.final_read = False
        self.closed = False
        # once dead and left with no file open: kept until then, charged to that uid (.linger)
        self.linger_until: Optional[float] = None
        self.linger_uid = -1
        self._scope = trio.CancelScope()

    def credentials(self) -> Optional[exithand.ProcessCredentials]:
        """Last seen credentials; None if the process was reaped before we could read any."""
        try:
            return self.handle.credentials()
        except exithand.NoSuchProcess:
            return None
        except exithand.Error as e:
            log.warning("pid %d: cannot read credentials: %s", self.pid, e)
            return None

    def _ask_kernel(self, caller: policy.Caller) -> policy.KernelAnswer:
        """The kernel's answer for this reader's fsuid/fsgid; once dead it is final, so one
        question serves every reader with the same ids (many processes of one user)."""
        ids = (caller.uid, caller.gid)
        hit = self._kernel_answers.get(ids)
        if hit is not None:
            return hit
        dead = not self.handle.is_alive()
        if self.handle.is_reaped():
            return None, "the process was reaped before the daemon could check it"
        ans, why = askkernel.may_read_exit_code(self.pid, caller.uid, caller.gid)
        if self.handle.is_reaped():  # the answer may describe a reuser of the number
            return None, "the process was reaped while the daemon checked it"
        if dead:
            self._kernel_answers[ids] = (ans, why)
        return ans, why

    def judge(self, caller: policy.Caller) -> tuple[bool, str]:
        """May ``caller`` learn the status?  After death: the verdict taken at death (or now,
        from the zombie, for a caller that opened after death)."""
        v = self.verdicts.get(caller)
        if v is not None:
            return v
        final = not self.handle.is_alive()  # a zombie's credentials no longer change
        creds = self.credentials()
        v = policy.decide(self.policy, caller, creds.ppid if creds is not None else None,
                          lambda: self._ask_kernel(caller))
        if final:
            self.verdicts[caller] = v
        return v

    def add_reader(self, caller: policy.Caller) -> None:
        self.readers[caller] = self.readers.get(caller, 0) + 1

    def remove_reader(self, caller: policy.Caller) -> None:
        n = self.readers.get(caller, 0) - 1
        if n > 0:
            self.readers[caller] = n
        else:
            self.readers.pop(caller, None)

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
        """Judge, read what every reader will be answered with, once, then release them all.

        First of all, while the zombie may still exist, decide for every reader of a status
        file whether the kernel would show it the exit code (credentials and dumpability can
        change until the last instant).  Then read what a zombie still shows before the parent
        reaps it: the credentials it died with and the status.  Then one ``Event.set()``
        reschedules every blocked read in one pass; each only slices the bytes its open file
        computed from these (pyfuse3 sends each reply from the worker task that received the
        request, so one task switch per reader is the floor; bench/_fuse_floor.py).  One log
        line for all of them, written by :meth:`run` after they were answered: a line per
        reader was most of the cost of a fan-out with ``--debug`` (each write to a busy
        stderr pipe took up to 0.2 ms).
        """
        for caller in list(self.readers):
            ok, why = self.judge(caller)
            if not ok:
                log.debug("refused-at-death pid=%d uid=%d gid=%d: %s", self.pid, caller.uid,
                          caller.gid, why)
        if self.readers:  # someone will be told the status: read it while it shows
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
