"""Helpers for the peer-face suites: run a face (or the peer's own binary) on real processes.

Synchronisation is on events: our faces print ``exithand: debug: waiting for N process(es)``
under ``EXITHAND_DEBUG=1`` once every target is pinned; a peer binary is known to wait once
its main thread sleeps in epoll/poll (its kernel wait channel).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from conftest import env_with_src

DEBUG_LINE = "exithand: debug: waiting for"


def face_cmd(face: str, *args: str) -> list[str]:
    """``python -m exithand FACE ARGS``."""
    return [sys.executable, "-m", "exithand", face, *args]


def run(cmd: list[str], timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env_with_src(), **kw)  # type: ignore[call-overload]


def start_waiting(cmd: list[str]) -> tuple[subprocess.Popen[str], list[str]]:
    """Start one of our faces; return once it is waiting (every target pinned), with the
    stderr lines it printed before that."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env_with_src(EXITHAND_DEBUG="1"))
    assert p.stderr is not None
    before = []
    while True:
        line = p.stderr.readline()
        if not line:
            out, err = p.communicate(timeout=30)
            raise AssertionError(f"exited ({p.returncode}) before waiting: "
                                 f"{''.join(before)}{err} / {out}")
        if line.startswith(DEBUG_LINE):
            return p, before
        before.append(line)


def blocked_in_kernel(pid: int) -> bool:
    """Is process ``pid``'s main thread asleep in epoll_wait/poll/select?"""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            w = f.read()
    except OSError:
        return False
    return "poll" in w or "select" in w


def wait_blocked(p: subprocess.Popen[str]) -> None:
    """Spin (yielding the CPU) until ``p`` sleeps in the kernel's poll, or has exited."""
    while p.poll() is None and not blocked_in_kernel(p.pid):
        os.sched_yield()


def finish(p: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


@contextlib.contextmanager
def testproc_binary(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """procps' ``make_testproc``: a copy of sleep(1) under a name no other process has
    (the command name is the file name, up to 15 characters).  Yields (path, comm)."""
    comm = "ehpw" + uuid.uuid4().hex[:8]
    path = tmp_path / comm
    sleep = shutil.which("sleep")
    assert sleep is not None
    shutil.copy(sleep, path)
    yield str(path), comm


@contextlib.contextmanager
def spawned(*argvs: list[str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start processes (children of the test); kill and reap them all at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv in argvs:
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))
        # a child is pinned by name only once it has exec'ed: wait until /proc shows the
        # new name (comm changes at exec)
        for p, argv in zip(procs, argvs):
            want = os.path.basename(argv[0])[:15]
            while _comm(p.pid) not in (want, None):
                os.sched_yield()
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)


def _comm(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None
