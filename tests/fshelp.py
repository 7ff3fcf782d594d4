"""Helpers for the filesystem tests: a real daemon on a real FUSE mount, real reader processes.

Each mount lives in a fresh temp dir and is always unmounted (SIGTERM to the daemon, then
``fusermount3 -u`` / ``umount -l`` if anything is left) and its daemon killed.
Synchronisation: readiness comes from the daemon's ``sd_notify("READY=1")`` on a datagram socket,
and "a reader is now blocked in the daemon" from its ``--debug`` log lines (read from a pipe).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest

from conftest import env_with_src
from exithand.fs import missing_dependency
from exithand.fs.mounts import is_stale, mount_fstype

_problem = missing_dependency()
if _problem is None and not os.path.exists("/dev/fuse"):
    _problem = "/dev/fuse is missing"
if _problem is None and os.geteuid() != 0:
    _problem = "the filesystem tests mount with allow_other and switch users: run as root"

needs_fuse = pytest.mark.skipif(_problem is not None, reason=str(_problem))


class FsDaemon:
    """A running ``exithand mount --foreground --debug`` and its log."""

    def __init__(self, mnt: str, proc: subprocess.Popen[bytes], drain: bool = True) -> None:
        self.mnt = mnt
        self.proc = proc
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        if drain:  # else nobody reads its stderr until start_drain()
            self._thread.start()

    def start_drain(self) -> None:
        if not self._thread.is_alive() and not self._eof:
            self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def path(self, *parts: Any) -> str:
        return os.path.join(self.mnt, *(str(p) for p in parts))

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        with self._cond:
            return sum(1 for line in self.lines if rx.search(line))

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 30) -> None:
        """Block until ``count`` log lines match ``pattern`` (regex)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for line in self.lines if rx.search(line)) < count:
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    tail = "\n".join(self.lines[-20:])
                    raise AssertionError(f"daemon log never had {count} x {pattern!r}:\n{tail}")
                self._cond.wait(left)

    def wait_blocked(self, pid: int, count: int = 1, timeout: float = 30) -> None:
        self.wait_log(rf"read-blocked fh=\d+ pid={pid} ", count, timeout)

    def log_text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        force_unmount(self.mnt)
        with contextlib.suppress(OSError):
            os.rmdir(self.mnt)


def force_unmount(mnt: str) -> None:
    """Whatever state ``mnt`` is in, leave it unmounted."""
    for cmd in (["fusermount3", "-u", mnt], ["fusermount3", "-u", "-z", mnt],
                ["umount", "-l", mnt]):
        if mount_fstype(mnt) is None and not is_stale(mnt):
            return
        if shutil.which(cmd[0]):
            subprocess.run(cmd, capture_output=True, timeout=30, check=False)


def make_mountpoint() -> str:
    mnt = tempfile.mkdtemp(prefix="eh4-mnt-")
    os.chmod(mnt, 0o755)
    return mnt


def start_daemon(policy: str = "same-user", max_readers: Optional[int] = None,
                 mnt: Optional[str] = None, env: Optional[dict[str, str]] = None,
                 prefix: tuple[str, ...] = (), extra: tuple[str, ...] = (),
                 debug: bool = True, drain: bool = True) -> FsDaemon:
    """``prefix``: a command the daemon runs under (e.g. ``setpriv ...``), exec'ing it;
    ``extra``: more daemon options; ``drain``: read its stderr (else nobody does, until
    ``start_drain()``)."""
    mnt = mnt or make_mountpoint()
    sockdir = tempfile.mkdtemp(prefix="eh4-notify-")
    sockpath = os.path.join(sockdir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sockpath)
    args = [sys.executable, "-m", "exithand", "mount", "--foreground", "--debug",
            "--policy", policy, mnt]
    if not debug:
        args.remove("--debug")
    if max_readers is not None:
        args[4:4] = ["--max-readers", str(max_readers)]
    args[4:4] = list(extra)
    proc = subprocess.Popen([*prefix, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            env=env_with_src(NOTIFY_SOCKET=sockpath, **(env or {})))
    d = FsDaemon(mnt, proc, drain)
    try:
        pfd = os.pidfd_open(proc.pid)
        try:
            ready, _, _ = select.select([sock, pfd], [], [], 60)
        finally:
            os.close(pfd)
        if sock not in ready:
            d.stop()
            raise AssertionError(f"daemon did not become ready:\n{d.log_text()}")
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()
        shutil.rmtree(sockdir, ignore_errors=True)
    return d


@pytest.fixture
def fsmount() -> Iterator[Any]:
    """``fsmount(policy=..., max_readers=...) -> FsDaemon``; all stopped and unmounted after."""
    made: list[FsDaemon] = []

    def make(**kw: Any) -> FsDaemon:
        d = start_daemon(**kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


class Procs:
    """Started processes, all killed and reaped at the end of the test."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []

    def start(self, args: list[str], **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=30)
            for f in (p.stdout, p.stderr, p.stdin):
                if f is not None:
                    f.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    yield ps
    ps.cleanup()


def exits_within(p: subprocess.Popen[Any], timeout: float) -> bool:
    """Wait on a pidfd (no sleeping) for ``p`` to exit."""
    fd = os.pidfd_open(p.pid)
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def stays_blocked(p: subprocess.Popen[Any], seconds: float = 0.3) -> bool:
    """A bounded negative check: ``p`` does not exit within ``seconds``."""
    return not exits_within(p, seconds)


def pidfs_inode(pid: int) -> int:
    fd = os.pidfd_open(pid)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


class Forked:
    """A forked child of the test answering one line per command line (no exec needed, so
    it works as any uid even where the Python binary is not readable by that uid)."""

    def __init__(self, setup: Any, handler: Any) -> None:
        c_r, c_w = os.pipe()
        a_r, a_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(c_w)
                os.close(a_r)
                setup()
                with os.fdopen(c_r) as cmds, os.fdopen(a_w, "w") as out:
                    out.write("ready\n")
                    out.flush()
                    for line in cmds:
                        out.write(f"{handler(line.strip())}\n")
                        out.flush()
            except BaseException:
                code = 70
            finally:
                os._exit(code)
        os.close(c_r)
        os.close(a_w)
        self.pid = pid
        self._cmd = os.fdopen(c_w, "w")
        self._ans = os.fdopen(a_r)
        if self._ans.readline() != "ready\n":
            self.close()
            raise RuntimeError("forked helper failed in its setup")

    def ask(self, line: str) -> str:
        self._cmd.write(line + "\n")
        self._cmd.flush()
        return self._ans.readline().strip()

    def tell(self, line: str) -> None:
        """Send a command that ends the child (no answer expected)."""
        self._cmd.write(line + "\n")
        self._cmd.flush()

    def close(self) -> int:
        """Kill (if still running) and reap; returns the raw wait status."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        for f in (self._cmd, self._ans):
            with contextlib.suppress(OSError):
                f.close()
        return os.waitpid(self.pid, 0)[1]
