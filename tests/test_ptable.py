"""``exithand.ProcessTable`` against real forks, execs, threads, exits and a real overflow.

Synchronisation: a process's fork event is queued before anything it causes later, and netlink
queues each multicast on our socket as it is sent, so "spawn a sentinel process and wait for its
fork event" is a barrier: every event sent before the sentinel's fork has been applied once the
sentinel is in the table.  Waiting is poll() on the table's socket with a deadline, no sleeps.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

import exithand
from conftest import require

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


@pytest.fixture
def connector() -> None:
    require("proc_connector")


def wait_for(t: exithand.ProcessTable, cond: Callable[[], bool], timeout: float = 10) -> None:
    """Apply events until ``cond()`` holds (poll on the socket), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        t.update()
        if cond():
            return
        left = deadline - time.monotonic()
        assert left > 0, "the table never showed the expected state"
        select.select([t.fileno()], [], [], left)


def barrier(t: exithand.ProcessTable) -> None:
    """Every event sent before this call has been applied when it returns."""
    true = shutil.which("true") or "/bin/true"
    pid = os.posix_spawn(true, [true], {})
    try:
        wait_for(t, lambda: pid in t)
    finally:
        os.waitpid(pid, 0)


@pytest.mark.timeout(60)
def test_table_follows_fork_exec_exit_and_ignores_threads(connector: None) -> None:
    with exithand.ProcessTable() as t:
        assert os.getpid() in t and 1 in t and t.rescans == 1
        before = set(t.pids())
        child = subprocess.Popen(
            [sys.executable, "-c", "import os, sys; sys.stdin.readline(); "
             "os.execv('/bin/sh', ['sh', '-c', 'echo execd; exec cat'])"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stop = threading.Event()
        th = threading.Thread(target=stop.wait)
        th.start()
        try:
            assert child.pid not in before
            wait_for(t, lambda: child.pid in t)                 # fork
            child.stdin.write("go\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            assert child.stdout.readline() == "execd\n"  # type: ignore[union-attr]
            barrier(t)
            assert child.pid in t                               # exec: still the same process
            assert th.native_id is not None and th.native_id not in t  # a thread is no process
            child.kill()
            child.wait(timeout=10)
            wait_for(t, lambda: child.pid not in t)             # exit (and reaped)
            assert child.pid not in t.pids()
        finally:
            stop.set()
            th.join()
            if child.poll() is None:
                child.kill()
                child.wait()
        assert t.gaps == 0 and t.rescans == 1 and t.events >= 3 and not t.stale


@pytest.mark.timeout(60)
def test_overflow_marks_the_table_stale_and_pids_lists_proc_again(connector: None) -> None:
    true = shutil.which("true") or "/bin/true"
    with exithand.ProcessTable() as t:
        # the smallest buffer the kernel allows: a few events, so the burst below overflows it
        with socket.socket(fileno=os.dup(t.fileno())) as s:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1)
        for _ in range(300):  # never read meanwhile: most of these events are dropped
            os.waitpid(os.posix_spawn(true, [true], {}), 0)
        late = subprocess.Popen(["sleep", "60"])  # its fork event too, most likely
        try:
            t.update()
            assert t.stale and t.gaps >= 1
            pids = t.pids()  # lists /proc again
            assert late.pid in pids and os.getpid() in pids
            assert t.rescans == 2 and not t.stale
        finally:
            late.kill()
            late.wait()


def test_bad_rcvbuf_is_a_value_error() -> None:
    for bad in (-1, True, "1", 2**31):
        with pytest.raises(ValueError, match="rcvbuf"):
            exithand.ProcessTable(rcvbuf=bad)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_disabled_connector_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXITHAND_DISABLE", "connector")
    with pytest.raises(exithand.BackendUnavailable, match="EXITHAND_DISABLE=connector"):
        exithand.ProcessTable()


@pytest.mark.timeout(30)
def test_closed_table_refuses_and_close_is_idempotent(connector: None) -> None:
    t = exithand.ProcessTable()
    fd = t.fileno()
    t.close()
    t.close()
    with pytest.raises(ValueError, match="closed"):
        t.update()
    with pytest.raises(ValueError, match="closed"):
        t.fileno()
    assert not os.path.exists(f"/proc/self/fd/{fd}") or \
        not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
