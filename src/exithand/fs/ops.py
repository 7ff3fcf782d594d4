"""The pyfuse3 ``Operations`` of the exithand filesystem.

Read-only by construction: every mutating operation answers EROFS, unknown names ENOENT, and
no exception escapes a handler (anything unexpected is logged and answered EIO), so hostile
input cannot crash the daemon.

FUSE facts this relies on (pyfuse3 3.5, Linux 6.x):

* The files have size 0, so they are opened with ``direct_io``: otherwise the kernel answers
  ``read()`` from the page cache and ``cat`` sees EOF at once.
* What the kernel may cache (:data:`FILE_ENTRY_TIMEOUT`, :data:`ATTR_TIMEOUT`): the names
  *in the top directory* have ``entry_timeout`` 0, so every path walk asks us again: the kernel's
  dentry cache is shared by every caller, while what ``MNT/30000`` names depends on the
  caller's pid namespace and its ``hidepid=``, and a pid dies and is reused.  The three names
  *inside* a process directory always name the same inode of that directory (``ino + k``),
  which is bound to one daemon-side pid (and pin) for its life, so the kernel may keep them:
  a stale entry can never name another process (opening still pins at ``open()``).  Attributes
  are constant (mode, owner, size 0, the mount's start time) for every inode of a kind, so
  caching them can never change an answer.
* Each blocked ``read()`` holds one pyfuse3 worker task until it is answered; the daemon runs
  ``pyfuse3.main`` with ``max_tasks`` above ``--max-readers`` and refuses (EAGAIN) the reads
  beyond it, so ``ls`` and new opens always find a free worker.
* ``read()`` gets no request context; ``open()`` does (uid, thread id), so the access decision
  and the opener's identity are taken at open.
* ``poll`` gets a fresh ``PollHandle`` when the kernel wants a wakeup; we keep the latest per
  open file and ``notify()`` it at death.  Answering readable before death would be a lie.

Over 500 lines because it is the one ``pyfuse3.Operations`` class, a handler per FUSE request
(most a few lines, the read-only ones one); what is not a FUSE operation lives beside it: the
watch lifecycle in :mod:`.watches`, lingering in :mod:`.linger`, the access policy in
:mod:`.access`, pid namespaces in :mod:`.pidns`, blocked readers in :mod:`.scanner`.
"""

from __future__ import annotations

import array
import errno
import functools
import logging
import os
import select
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import pyfuse3

import exithand
from exithand import procfs

from . import access as policy
from . import askkernel, hidepid, inodes, logthrottle, names, persons, pidns, quota, siginfo
from .deathwatch import Watch
from .linger import Lingering
from .scanner import Blocked, Scanner, start_time
from .watches import Watches

log = logging.getLogger("exithand.fs")

F = TypeVar("F", bound=Callable[..., Any])

#: seconds the kernel may keep attributes (constant per kind) and the names inside a process
#: directory (fixed per directory inode); the top directory's names are never cached (above)
ATTR_TIMEOUT = 300.0
FILE_ENTRY_TIMEOUT = 300.0


def _guard(fn: F) -> F:
    """Turn any unexpected exception of a handler into EIO (logged), keeping FUSEErrors; the
    daemon out of fds (EMFILE/ENFILE) is ENFILE, whatever ran out."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except exithand.FdLimitError as e:  # out of fds inside an exithand.procfs read
            log.warning("%s: out of file descriptors: %s", fn.__name__, e)
            raise pyfuse3.FUSEError(errno.ENFILE) from None
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE):
                log.exception("unexpected error in %s", fn.__name__)
                raise pyfuse3.FUSEError(errno.EIO) from None
            log.warning("%s: out of file descriptors: %s", fn.__name__, e)
            raise pyfuse3.FUSEError(errno.ENFILE) from None
        except Exception:  # (trio.Cancelled is a BaseException and passes through)
            log.exception("unexpected error in %s", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


def _key(pid: int, pin: Optional[int]) -> str:
    """Inode-table key of a directory: the *daemon's* pid (and pin), whatever the reader's
    namespace calls it, so two namespaces' ``30000`` never share a directory."""
    return str(pid) if pin is None else f"{pid}:{pin}"


def _err(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


@dataclass
class OpenFile:
    """One ``open()`` of a process file."""

    fh: int
    kind: int
    watch: Watch
    caller: policy.Caller
    opener_tid: int
    opener_tgid: int  # 0 if unknown
    opener_start: Optional[int]  # start time of the opener's process (identity for the scanner)
    nonblock: bool
    shown_pid: int  # the process's number in the opener's pid namespace
    data: Optional[bytes] = None  # content once known (fixed after death)
    person: int = -1  # charged for this file and its blocked read (.persons)


@dataclass
class Listing:
    """An open directory: the root's snapshot as two compact arrays (8 bytes a process), or
    a process directory (its three names are constant).  ``uid`` is the person charged for
    root ones (:mod:`.persons`)."""

    inode: int
    uid: int
    shown: array.array[int]  # numbers in the opener's pid namespace
    host: array.array[int]  # the same processes' numbers in ours


class ExitFS(pyfuse3.Operations):
    """The filesystem.  ``nursery`` must be set before ``pyfuse3.main`` runs."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, access_policy: str = policy.DEFAULT_POLICY,
                 max_readers: int = 10_000, scan_interval: float = 0.2,
                 limits: Optional[quota.Limits] = None) -> None:
        super().__init__()
        if access_policy not in policy.POLICIES:
            raise ValueError(f"unknown policy {access_policy!r}")
        self.policy = access_policy
        self.max_readers = max_readers
        self.limits = limits or quota.Limits.default(max_readers)
        self.quota_files = quota.Counter("open files", self.limits.files,
                                         self.limits.files_per_user)
        self.quota_readers = quota.Counter("blocked reads", self.limits.readers,
                                           self.limits.readers_per_user)
        self.quota_dirs = quota.Counter("directory handles", self.limits.dirs,
                                        self.limits.dirs_per_user)
        self.table = inodes.InodeTable()
        self.files: dict[int, OpenFile] = {}
        self.dirs: dict[int, Listing] = {}
        self.blocked: dict[int, Blocked] = {}  # id(Blocked) -> Blocked
        # dead processes' watches kept after their last file closed (see .linger)
        self.lingering: Lingering[Watch] = Lingering(
            self.limits.linger_seconds, self.limits.lingering, self.limits.lingering_per_user)
        self.watches = Watches(access_policy, self.lingering, lambda: self.shutting_down,
                               owner=self._owner)
        self.scanner = Scanner(lambda: list(self.blocked.values()), scan_interval)
        self.shutting_down = False
        self.stopped_by = 0  # the signal that stopped the daemon, if any
        self._next_fh = 1
        self._start_ns = time.time_ns()
        self._uid = os.getuid()
        self._gid = os.getgid()
        self.persons = persons.Persons()  # every quota is charged to a person, not a uid
        self.throttle = logthrottle.Throttle(log)  # repeated warnings: per person and kind

    def _person(self, ctx: Any) -> int:
        return self.persons.person(ctx.uid, ctx.pid)

    def _owner(self, w: Watch) -> int:
        """The person a lingering watch is charged to: the process's owner, for good (-1 when
        its credentials could not be read; then the last closer)."""
        creds = w.credentials()
        return -1 if creds is None else self.persons.person(creds.ruid, w.pid)

    @property
    def nursery(self) -> Any:
        """The daemon's nursery, where the watches' tasks run (set before ``pyfuse3.main``)."""
        return self.watches.nursery

    @nursery.setter
    def nursery(self, nursery: Any) -> None:
        self.watches.nursery = nursery

    # ----- helpers ------------------------------------------------------------------------

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _attr(self, ino: int, is_dir: bool, entry_timeout: float = 0) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        a.generation = 0
        a.entry_timeout = entry_timeout
        a.attr_timeout = ATTR_TIMEOUT
        a.st_mode = (stat.S_IFDIR | 0o555) if is_dir else (stat.S_IFREG | 0o444)
        a.st_nlink = 2 if is_dir else 1
        a.st_uid = self._uid
        a.st_gid = self._gid
        a.st_size = 0
        a.st_blksize = 4096
        a.st_blocks = 0
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self._start_ns
        return a

    @staticmethod
    def _probe(pid: int, pin: Optional[int]) -> bool:
        """Does ``pid`` (with pidfs inode ``pin``) name a live or zombie process right now?"""
        try:
            with exithand.open(pid, inode=pin):
                return True
        except exithand.FdLimitError as e:  # out of fds is not "no such process"
            log.warning("lookup of %d: %s", pid, e)
            raise _err(errno.ENFILE) from None
        except (exithand.Error, ValueError):
            return False

    @staticmethod
    def _caller(ctx: Any) -> tuple[policy.Caller, Optional[bytes]]:
        """Who is asking: the request's uid/gid/pid and what its thread's status shows
        (groups, capabilities if it is in our user namespace), read once per request; with
        that status text (None if unreadable)."""
        text = policy.read_thread_status(ctx.pid) if ctx.pid > 0 else None
        return policy.caller_from_status(ctx.uid, ctx.gid, ctx.pid, text,
                                         caps_count=text is not None and
                                         policy.in_our_user_ns(ctx.pid)), text

    @classmethod
    def _hiding(cls, ctx: Any) -> Optional[tuple[int, int, list[int]]]:
        """``(uid, gid, groups)`` to judge visibility as, or None when the reader's own /proc
        hides nothing from it (no ``hidepid=``, in its ``gid=`` group, or CAP_SYS_PTRACE)."""
        if ctx is None:
            return None
        opts = hidepid.options_of(ctx.pid)
        if not opts.hides:
            return None
        caller, text = cls._caller(ctx)
        groups = hidepid.groups_of(text)
        if caller.privileged or (opts.gid is not None and (
                opts.gid == ctx.gid or opts.gid in groups)):
            return None
        return ctx.uid, ctx.gid, groups

    def _listing(self, ctx: Any) -> tuple[array.array[int], array.array[int]]:
        """``ls MNT`` for this caller: (numbers in its pid namespace, ours), sorted by its;
        without what its own /proc hides (hidepid=)."""
        caller_pid = ctx.pid
        host = sorted(procfs.pids())
        as_reader = self._hiding(ctx)
        if as_reader is not None:
            seen_by_reader = askkernel.visible(host, *as_reader) or set()
            host = [p for p in host if p in seen_by_reader]
        with pidns.view_of(caller_pid) as view:
            if view.same:
                return array.array("i", host), array.array("i", host)
            if view.blind:
                log.debug("empty listing for pid %d: %s", caller_pid, view.why)
            seen = []
            for p in host:
                n = view.from_host(p)
                if n is not None:
                    seen.append((n, p))
        seen.sort()
        return array.array("i", (n for n, _ in seen)), array.array("i", (p for _, p in seen))

    def statistics(self) -> dict[str, int]:
        """Counts for logs and tests (``watches``: in use; ``lingering``: kept unused)."""
        return {"open_files": len(self.files),
                "watches": len(self.watches) - len(self.lingering),
                "lingering": len(self.lingering), "blocked_readers": len(self.blocked),
                "inodes": len(self.table)}

    # ----- names ----------------------------------------------------------------------------

    @_guard
    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: Any = None) -> pyfuse3.EntryAttributes:
        if parent_inode == inodes.ROOT:
            if name in (b".", b".."):
                return self._attr(inodes.ROOT, True)
            parsed = names.parse_dir_name(name)
            if parsed is None:
                raise _err(errno.ENOENT)
            with pidns.view_of(ctx.pid if ctx is not None else 0) as view:
                host = view.to_host(parsed[0])
            if host is None:
                raise _err(errno.ENOENT)
            if not self._probe(host, parsed[1]):
                # reaped, but kept (pinned names only): the reader must be in our pid
                # namespace and see every process (the number may name a reuser by now)
                if (parsed[1] is None or self.lingering.get((host, parsed[1])) is None
                        or not view.same or self._hiding(ctx) is not None):
                    raise _err(errno.ENOENT)
                d = self.table.dir_for(_key(host, parsed[1]), host, parsed[1])
                self.table.ref(d.ino)
                return self._attr(d.ino, True)
            as_reader = self._hiding(ctx)
            if as_reader is not None and host not in (
                    askkernel.visible([host], *as_reader) or ()):
                raise _err(errno.ENOENT)  # its own /proc (hidepid=) hides it from the reader
            d = self.table.dir_for(_key(host, parsed[1]), host, parsed[1])
            self.table.ref(d.ino)
            return self._attr(d.ino, True)
        node, kind = self.table.resolve(parent_inode)
        if node is None or kind != 0:
            raise _err(errno.ENOENT if node is None else errno.ENOTDIR)
        if name == b".":
            self.table.ref(node.ino)
            return self._attr(node.ino, True)
        if name == b"..":
            return self._attr(inodes.ROOT, True)
        k = names.file_kind(name)
        if k is None:
            raise _err(errno.ENOENT)
        self.table.ref(node.ino + k)
        return self._attr(node.ino + k, False, FILE_ENTRY_TIMEOUT)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, n in inode_list:
            self.table.forget(ino, n)

    @_guard
    async def getattr(self, inode: int, ctx: Any = None) -> pyfuse3.EntryAttributes:
        if inode == inodes.ROOT:
            return self._attr(inode, True)
        node, kind = self.table.resolve(inode)
        if node is None:
            raise _err(errno.ENOENT)
        return self._attr(inode, kind == 0)

    @_guard
    async def opendir(self, inode: int, ctx: Any) -> int:
        if inode == inodes.ROOT:
            person = self._person(ctx)
            why = self.quota_dirs.take(person)
            if why:
                self.throttle.warn(person, "directory opens refused (quota)", logging.WARNING,
                                   "refusing opendir: %s", why)
                raise _err(errno.EAGAIN)
            try:
                shown, host = self._listing(ctx)
            except BaseException:
                self.quota_dirs.give(person)
                raise
            listing = Listing(inode, person, shown, host)
        else:
            node, kind = self.table.resolve(inode)
            if node is None:
                raise _err(errno.ENOENT)
            if kind != 0:
                raise _err(errno.ENOTDIR)
            listing = Listing(inode, -1, array.array("i"), array.array("i"))
        fh = self._new_fh()
        self.dirs[fh] = listing
        return fh

    @_guard
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        listing = self.dirs.get(fh)
        if listing is None:
            raise _err(errno.EBADF)
        dir_ino = listing.inode
        count = len(listing.shown) if dir_ino == inodes.ROOT else len(names.FILES)
        for i in range(start_id, count):
            node: Optional[inodes.DirNode]
            if dir_ino == inodes.ROOT:
                name = str(listing.shown[i]).encode()
                host = listing.host[i]
                node = self.table.dir_for(_key(host, None), host, None)
                ino, is_dir = node.ino, True
            else:
                node, _ = self.table.resolve(dir_ino)
                if node is None:
                    return
                name = names.FILES[i].encode()
                ino, is_dir = dir_ino + 1 + i, False
            if not pyfuse3.readdir_reply(token, name, self._attr(ino, is_dir), i + 1):
                self.table.drop_if_unused(node)
                return
            self.table.ref(ino)

    async def releasedir(self, fh: int) -> None:
        listing = self.dirs.pop(fh, None)
        if listing is not None and listing.uid >= 0:
            self.quota_dirs.give(listing.uid)

    # ----- files ----------------------------------------------------------------------------

    def _kept(self, node: inodes.DirNode, view: pidns.View) -> Optional[Watch]:
        """The kept watch of the reaped process ``node`` pins, for a reader in our pid
        namespace (another namespace's number for it cannot be learnt after the reap)."""
        if node.pin is None or not view.same:
            return None
        return self.lingering.get((node.pid, node.pin))

    def _pin(self, node: inodes.DirNode) -> exithand.ExitHandle:
        """Pin the directory's process; FUSEError ENOENT if there is none, ENFILE if the daemon
        is out of fds (a process that exists is never called absent)."""
        try:
            return exithand.open(node.pid, inode=node.pin)
        except exithand.FdLimitError as e:
            log.warning("open %s: %s", node.name, e)
            raise _err(errno.ENFILE) from None
        except (exithand.Error, ValueError) as e:
            log.debug("open %s: %s", node.name, e)
            raise _err(errno.ENOENT) from None

    @_guard
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        node, kind = self.table.resolve(inode)
        if node is None:
            raise _err(errno.ENOENT)
        if kind == 0:
            raise _err(errno.EISDIR)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise _err(errno.EROFS)
        if self.shutting_down:
            raise _err(errno.ESHUTDOWN)
        caller, _ = self._caller(ctx)  # once per open: judged at open and again at death
        person = self._person(ctx)
        why = self.quota_files.take(person)
        if why:
            self.throttle.warn(person, "opens refused (quota)", logging.WARNING,
                               "refusing open of %s: %s", node.name, why)
            raise _err(errno.EAGAIN)
        try:
            with pidns.view_of(ctx.pid) as view:  # the opener's pid namespace, once per open
                kept: Optional[Watch] = None
                try:
                    h: Optional[exithand.ExitHandle] = self._pin(node)
                except pyfuse3.FUSEError as e:
                    kept = self._kept(node, view) if e.errno == errno.ENOENT else None
                    if kept is None:
                        raise
                    h = None  # reaped, but its watch was kept: answer from that
                shown = view.from_host(node.pid)  # after pinning: about the pinned process
            if shown is None:  # a process the opener's pid namespace does not contain
                if h is not None:
                    h.close()
                raise _err(errno.ENOENT)
            w = self.watches.watch_for(h) if h is not None else kept
            assert w is not None
            if w.refs <= 0 and w.key is not None and w.key[1] is not None:
                self.lingering.take((w.pid, w.key[1]))  # in use again (by either name)
            w.refs += 1
            try:
                if kind != names.EXITHAND:
                    ok, why = w.judge(caller)
                    if not ok:
                        self.throttle.warn(person, "opens refused", logging.INFO,
                                           "open-refused %s/%s uid=%d pid=%d (%s): %s",
                                           node.name, names.FILES[kind - 1], ctx.uid, ctx.pid,
                                           logthrottle.Comm(ctx.pid), why)
                        raise _err(errno.EACCES)
            except BaseException:
                self.watches.unref(w, person)
                raise
        except BaseException:
            self.quota_files.give(person)
            raise
        fh = self._new_fh()
        opener_tgid = caller.tgid if caller.tgid > 0 else 0
        self.files[fh] = OpenFile(fh, kind, w, caller, ctx.pid, opener_tgid,
                                  start_time(opener_tgid) if opener_tgid else None,
                                  bool(flags & os.O_NONBLOCK), shown, person=person)
        if kind != names.EXITHAND:
            w.add_reader(caller)
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False, nonseekable=False)

    def _content(self, of: OpenFile) -> bytes:
        """What the file holds once the process is dead; FUSEError if refused or unknown."""
        if of.data is not None:
            return of.data
        if of.kind == names.EXITHAND:
            of.data = b""
            return of.data
        w = of.watch
        ok, why = w.judge(of.caller)  # decided at death, from the zombie (see Watch.judge)
        if not ok:
            self.throttle.warn(of.person, "reads refused", logging.INFO,
                               "read-refused fh=%d pid=%d uid=%d: %s", of.fh, w.pid,
                               of.caller.uid, why)
            raise _err(errno.EACCES)
        w.read_final()  # once for every reader: at death if a status file was open then
        creds = w.final_creds
        st = w.final_status
        if st is None or not st.known:
            try:  # unreadable at death, or unknown then: ask again (it may be known now)
                st = w.status()
            except exithand.Error as e:
                log.warning("pid %d: %s", w.pid, e)
                raise _err(errno.EIO) from None
        st = st.with_pid(of.shown_pid)  # the number the reader knows it by (its pid namespace)
        if of.kind == names.EXITSTATUS:
            data = (st.describe() + "\n").encode()
        else:
            if not st.known:
                log.info("pid %d: exit status unknown: %s", of.watch.pid, st.reason)
                raise _err(errno.ENODATA)
            # (uid_t)-1: the process was reaped before its uid could be read; not invented
            uid = creds.ruid if creds is not None else siginfo.NO_UID
            data = siginfo.pack(st, uid)
        of.data = data  # fixed for this open file, so reads at any offset agree
        return data

    @_guard
    async def read(self, fh: int, off: int, size: int) -> bytes:
        of = self.files.get(fh)
        if of is None:
            raise _err(errno.EBADF)
        if not of.watch.dead.is_set():
            if self.shutting_down:
                raise _err(errno.EIO)
            if of.nonblock:
                raise _err(errno.EAGAIN)
            why = self.quota_readers.take(of.person)
            if why:
                self.throttle.warn(of.person, "reads refused (quota)", logging.WARNING,
                                   "refusing read on pid %d: %s", of.watch.pid, why)
                raise _err(errno.EAGAIN)
            try:
                await self._block(of)
            finally:
                self.quota_readers.give(of.person)
        data = self._content(of)
        return data[off:off + size]

    async def _block(self, of: OpenFile) -> None:
        """Wait for the death; released with all other readers of the process in one pass
        (one ``Event.set()``, one log line: see :meth:`Watch._on_dead`)."""
        w = of.watch
        b = Blocked(of.fh, w.pid, of.opener_tgid, of.opener_tid, of.opener_start)
        self.blocked[id(b)] = b
        w.blocked += 1
        self.scanner.wake()
        log.debug("read-blocked fh=%d pid=%d opener=%d", of.fh, w.pid, of.opener_tid)
        try:
            with b.scope:
                await w.dead.wait()
        finally:
            del self.blocked[id(b)]
            w.blocked -= 1
        if b.scope.cancelled_caught:
            log.debug("read-failed fh=%d pid=%d errno=%s", of.fh, w.pid,
                      errno.errorcode.get(b.errno, b.errno))
            raise _err(b.errno or errno.EINTR)

    @_guard
    async def poll(self, inode: int, fh: int, poll_handle: Any, ctx: Any) -> int:
        of = self.files.get(fh)
        if of is None:
            raise _err(errno.EBADF)
        if of.watch.dead.is_set():
            return select.POLLIN | select.POLLRDNORM
        if self.shutting_down:
            return select.POLLIN | select.POLLERR
        if poll_handle is not None:
            of.watch.poll_handles[fh] = poll_handle
        return 0

    # No flush(): pyfuse3's default answers ENOSYS to the first FLUSH, after which the kernel
    # never sends one again (fc->no_flush), so close() costs no round trip to the daemon.

    async def release(self, fh: int) -> None:
        of = self.files.pop(fh, None)
        if of is None:
            return
        of.watch.poll_handles.pop(fh, None)
        if of.kind != names.EXITHAND:
            of.watch.remove_reader(of.caller)
        self.quota_files.give(of.person)
        self.watches.unref(of.watch, of.person)
        log.debug("file-closed fh=%d pid=%d", fh, of.watch.pid)

    async def fsync(self, fh: int, datasync: bool) -> None:
        return None

    # ----- shutdown -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Refuse new opens, fail every blocked read with EIO and wake every poller."""
        self.shutting_down = True
        for b in list(self.blocked.values()):
            b.release(errno.EIO)
        self.watches.notify_pollers()

    def close_all(self) -> None:
        """After the main loop: close every handle and fd still held."""
        self.files.clear()
        self.watches.close_all()
        self.persons.close()

    # ----- everything else: read-only --------------------------------------------------------

    @_guard
    async def access(self, inode: int, mode: int, ctx: Any) -> bool:
        if mode & os.W_OK:
            raise _err(errno.EROFS)
        node, kind = self.table.resolve(inode)
        if inode != inodes.ROOT and node is None:
            raise _err(errno.ENOENT)
        return not (mode & os.X_OK and inode != inodes.ROOT and kind != 0)

    @_guard
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_namemax = 255
        return s

    async def setattr(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise _err(errno.EROFS)

    async def mknod(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise _err(errno.EROFS)

    async def mkdir(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise _err(errno.EROFS)

    async def unlink(self, *args: Any) -> None:
        raise _err(errno.EROFS)

    async def rmdir(self, *args: Any) -> None:
        raise _err(errno.EROFS)

    async def symlink(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise _err(errno.EROFS)

    async def rename(self, *args: Any) -> None:
        raise _err(errno.EROFS)

    async def link(self, *args: Any) -> pyfuse3.EntryAttributes:
        raise _err(errno.EROFS)

    async def create(self, *args: Any) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise _err(errno.EROFS)

    async def write(self, *args: Any) -> int:
        raise _err(errno.EROFS)

    async def readlink(self, *args: Any) -> bytes:
        raise _err(errno.EINVAL)

    async def setxattr(self, *args: Any) -> None:
        raise _err(errno.EROFS)

    async def removexattr(self, *args: Any) -> None:
        raise _err(errno.EROFS)

    async def getxattr(self, *args: Any) -> bytes:
        raise _err(errno.ENODATA)

    async def listxattr(self, *args: Any) -> list[bytes]:
        return []
