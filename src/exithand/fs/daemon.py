"""Mount, serve, stop: the life of the exithand filesystem daemon.

* Mount options: ``allow_other`` (other users must see it; root may always set it, others need
  ``user_allow_other`` in /etc/fuse.conf), ``ro``, and *no* ``default_permissions``: access is
  decided by :mod:`.policy`, not by file modes.
* ``pyfuse3.main`` runs with ``max_tasks`` above ``--max-readers``: every blocked ``read()``
  holds a worker task, and with none free the whole mount would stall.
* SIGTERM, SIGINT and SIGHUP are received by trio (``open_signal_receiver``, installed before
  the mount is announced ready): every blocked reader is answered EIO (the session ends only
  once every answer is sent), pollers are woken, new opens get ESHUTDOWN, the main loop stops
  and the mount is removed (libfuse unmounts lazily as root), so no stale mount is left
  behind.  A daemon killed with SIGKILL cannot clean up: the kernel aborts the connection, so
  reads in progress fail with ECONNABORTED, and every later access to the stale mountpoint
  with ENOTCONN until ``exithand umount`` clears it.  A reader never sees EOF (death) because
  the daemon died.
* Exit statuses at death for non-children come from the library; when it offers a system-wide
  exit listener (the netlink proc connector) the daemon starts it.
* Logs go to journald natively (:class:`exithand.obs.journal.JournalHandler`: PRIORITY,
  CODE_FILE/LINE/FUNC) when run by systemd (``JOURNAL_STREAM`` set) and its socket answers;
  otherwise to stderr, with ``<N>`` syslog priority prefixes under systemd; a background daemon
  logs to syslog, or to a file when there is no ``/dev/log``, and the starter is told where.
  Writing a log line never blocks the daemon and no message can forge a line
  (:mod:`.logsinks`); repeated warnings are rate-limited per person (:mod:`.logthrottle`).
  Readiness is announced with ``sd_notify("READY=1")`` when ``NOTIFY_SOCKET`` is set
  (``Type=notify`` units).
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
from typing import Any, Callable

import pyfuse3
import trio

import exithand

from . import logsinks
from .mounts import MountError, allow_other_problem, check_mountpoint, fuse_device_problem
from .ops import ExitFS
from .quota import Limits

log = logging.getLogger("exithand.fs")

#: Worker tasks kept beyond --max-readers for lookups, opens, ls, polls.
SPARE_TASKS = 64


def _native_journal() -> logging.Handler | None:
    """Under systemd (``JOURNAL_STREAM``), journald's native protocol when its socket answers."""
    if not os.environ.get("JOURNAL_STREAM"):
        return None
    from exithand.obs.journal import handler_for_journal_stream
    return handler_for_journal_stream("exithand-fs")


def setup_logging(debug: bool) -> None:
    """Log natively to journald under systemd (``JOURNAL_STREAM``) when its socket answers;
    else to stderr, with journald priority prefixes under systemd, else with time and pid;
    never blocking, every message escaped (:mod:`.logsinks`)."""
    native = _native_journal()
    # native: structured records (PRIORITY, CODE_*), see exithand.obs.journal
    handler: logging.Handler = (native if native is not None
                                else logsinks.BoundedHandler(sys.stderr.fileno()))
    if native is not None:
        pass
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logsinks.JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logsinks.SafeFormatter(
            "%(asctime)s exithand-fs[%(process)d] %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    logging.getLogger("pyfuse3").addHandler(handler)
    logging.getLogger("pyfuse3").setLevel(logging.WARNING)


def sd_notify(message: str) -> None:
    """Tell systemd (or a test) about our state, if ``NOTIFY_SOCKET`` asks for it."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), addr)
    except OSError as e:
        log.warning("sd_notify(%s) failed: %s", message, e)


#: fds beyond one per open file: FUSE, epoll, /proc reads, lookups' transient pidfds, logs.
SPARE_FDS = 1024


def fds_needed(limits: Limits) -> int:
    """Every open file may pin one more process (one pidfd; readers of one process share it,
    and blocked readers hold no fd of their own), and every lingering watch one pidfd, so the
    daemon needs ``files`` + ``lingering`` + spare."""
    return limits.files + limits.lingering + SPARE_FDS


def raise_fd_limit(need: int) -> int:
    """Raise RLIMIT_NOFILE to ``need`` (the hard limit too, as root); MountError naming the
    shortfall if it cannot be had.  Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= need:
        return soft
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= need else need
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, new_hard))
    except (ValueError, OSError) as e:
        raise MountError(
            f"the configuration needs {need} file descriptors (one per open file, at most "
            f"--max-readers + 1024, one per lingering watch, + {SPARE_FDS} spare) but the "
            f"limit is {soft} (hard {hard}) and cannot be raised ({e}); raise it "
            "(ulimit -Hn, LimitNOFILE= in the unit, fs.nr_open) or lower --max-readers") from None
    return need


def start_exit_listener() -> bool:
    """Start the library's proc connector listener: exit statuses known at death time.

    Optional accelerator: without it (no CAP_NET_ADMIN on a kernel that requires it, or outside
    the initial namespaces) statuses still come from zombies and PIDFD_INFO_EXIT.
    """
    try:
        ok = exithand.start_exit_listener()
    except Exception as e:  # an optional accelerator must not stop the daemon
        log.warning("proc connector exit listener failed: %s", e)
        return False
    log.info("exit statuses: proc connector listener %s", "running" if ok else
             "unavailable (statuses from zombies and PIDFD_INFO_EXIT only)")
    return ok


async def _signals(ops: ExitFS, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
        task_status.started()
        async for signum in sigs:
            ops.stopped_by = signum
            log.info("%s: waking blocked readers with EIO and unmounting",
                     signal.Signals(signum).name)
            sd_notify("STOPPING=1")
            ops.shutdown()
            # Let every cancelled read send its EIO before the session ends: a reply lost to
            # the unmount would reach the reader as ECONNABORTED instead (bounded wait).
            with trio.move_on_after(2):
                while ops.blocked:
                    await trio.sleep(0.001)
            await trio.lowlevel.checkpoint()
            pyfuse3.terminate()
            return


async def _serve(ops: ExitFS, max_readers: int, ready: Callable[[], None]) -> None:
    async with trio.open_nursery() as nursery:
        ops.nursery = nursery
        await nursery.start(_signals, ops)
        nursery.start_soon(ops.scanner.run, name="reader-scanner")
        nursery.start_soon(ops.throttle.run, name="log-throttle")
        ready()
        await pyfuse3.main(min_tasks=4, max_tasks=max_readers + SPARE_TASKS)
        nursery.cancel_scope.cancel()
        ops.close_all()


def serve(mountpoint: str, access_policy: str, limits: Limits,
          ready: Callable[[], None]) -> int:
    """Mount at ``mountpoint`` and serve until unmounted or signalled.  Returns an exit code."""
    max_readers = limits.readers
    raise_fd_limit(fds_needed(limits))
    ops = ExitFS(access_policy, max_readers, limits=limits)
    start_exit_listener()
    options = {"fsname=exithand", "subtype=exithand", "allow_other", "ro"}
    try:
        pyfuse3.init(ops, mountpoint, options)
    except RuntimeError as e:
        why = None if os.geteuid() == 0 else (fuse_device_problem() or allow_other_problem())
        hint = f" ({why})" if why else ""
        raise MountError(f"cannot mount {mountpoint}: {e}{hint}") from None

    def announce() -> None:
        log.info("mounted %s (policy %s, max %d blocked readers, %d per user; %d open files, "
                 "%d per user; %d directory handles, %d per user; %d dead processes kept %gs, "
                 "%d per user; pid %d)", mountpoint,
                 access_policy, max_readers, limits.readers_per_user, limits.files,
                 limits.files_per_user, limits.dirs, limits.dirs_per_user, limits.lingering,
                 limits.linger_seconds, limits.lingering_per_user, os.getpid())
        sd_notify("READY=1")
        ready()

    try:
        trio.run(_serve, ops, max_readers, announce)
    finally:
        ops.close_all()
        pyfuse3.close(unmount=True)
        log.info("unmounted %s", mountpoint)
    # Ctrl-C in the foreground: 130 as for every exithand command; SIGTERM/HUP: a normal stop
    return 130 if ops.stopped_by == signal.SIGINT else 0


def _detach_stderr(handler: logging.Handler) -> None:
    """A background daemon must not keep its starter's stderr: log to ``handler`` (syslog, or
    a file without /dev/log: :func:`.logsinks.background_sink`) from now on."""
    for old in log.handlers:
        if isinstance(old, logsinks.BoundedHandler):
            old.close()  # what it still holds goes to the starter's stderr first (bounded)
    log.handlers[:] = [handler]
    logging.getLogger("pyfuse3").handlers[:] = [handler]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def run(mountpoint: str, access_policy: str, limits: Limits, foreground: bool,
        debug: bool) -> int:
    """``exithand mount``: check, then serve in the foreground or as a background daemon."""
    setup_logging(debug)
    if not foreground and not debug:
        log.setLevel(logging.WARNING)  # the starter's terminal gets problems only
    path = check_mountpoint(mountpoint)
    if foreground:
        return serve(path, access_policy, limits, lambda: None)
    r, w = os.pipe()
    pid = os.fork()
    if pid:  # parent: wait until the child has mounted (or failed), report, exit
        os.close(w)
        with os.fdopen(r, "rb") as f:
            msg = f.read().decode(errors="replace")
        if msg.startswith("ok"):
            where = msg[2:].strip()
            if where:
                print(f"exithand mount: daemon {pid} logs to {where}", file=sys.stderr)
            return 0
        os.waitpid(pid, 0)
        raise MountError(msg or "the daemon exited before mounting (see messages above)")
    # child
    os.close(r)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)

    def ready() -> None:
        nonlocal w
        if w >= 0:
            sink, where = logsinks.background_sink()
            os.write(w, f"ok {where}".encode())
            os.close(w)
            w = -1
            _detach_stderr(sink)
            log.setLevel(logging.DEBUG if debug else logging.INFO)
            log.info("mounted %s (policy %s, pid %d)", path, access_policy, os.getpid())

    rc = 1
    try:
        rc = serve(path, access_policy, limits, ready)
    except MountError as e:
        if w >= 0:
            os.write(w, str(e).encode())
    except BaseException:
        log.exception("daemon failed")
    finally:
        for h in log.handlers:  # os._exit skips logging's shutdown: write what is queued
            h.flush()  # (bounded: BoundedHandler waits at most 1 s)
        os._exit(rc)
