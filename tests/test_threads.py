"""Handles on one thread: ``exithand.open(tid, thread=True)`` (PIDFD_THREAD, Linux 6.9).

Real threads of real processes (a Python helper whose worker thread exits on a line of stdin;
``leader_exits_first.c`` whose leader ``pthread_exit``-s while a worker runs).  Proves: a
thread handle fires when that thread exits and not before, while the process lives on; the
leader rule (a leader thread that exited while others run is a dead thread, not a dead
process); signals reach that thread only; a non-leader tid without thread=True stays
NotProcessLeader; bad input (another process's tid with tgid=, an exited tid, a number no thread
has) is a clear error; a kernel without PIDFD_THREAD (forced) is a clear BackendUnavailable.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import exithand
from conftest import leader_zombie, require, stop_process

pytestmark = pytest.mark.timeout(60)

_THREADED = textwrap.dedent("""
    import os, signal, sys, threading
    got = []
    def worker():
        sys.stdout.write(f"{threading.get_native_id()}\\n"); sys.stdout.flush()
        sys.stdin.readline()      # a line: this thread exits, the process lives on
    signal.signal(signal.SIGUSR1, lambda *a: got.append(threading.get_native_id()))
    t = threading.Thread(target=worker); t.start(); t.join()
    sys.stdout.write("worker-gone\\n"); sys.stdout.flush()
    sys.stdin.readline()
    sys.exit(0)
""")


@pytest.fixture
def threaded() -> Iterator[tuple[subprocess.Popen[str], int]]:
    require("pidfd_thread")
    p = subprocess.Popen([sys.executable, "-c", _THREADED], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        tid = int(p.stdout.readline())
        yield p, tid
    finally:
        stop_process(p)


def _readable(fd: int, timeout: float = 0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_thread_handle_fires_at_thread_exit(no_fd_leak, threaded):
    p, tid = threaded
    with exithand.open(tid, thread=True) as th, exithand.open(p.pid) as ph:
        assert th.thread and th.tgid == p.pid and th.pid == tid
        assert not ph.thread and ph.tgid == p.pid
        assert th.is_alive() and not _readable(th.fileno())
        assert p.stdin is not None and p.stdout is not None
        p.stdin.write("\n")
        p.stdin.flush()
        st = th.wait(timeout=30)
        assert not st.known and "thread" in (st.reason or "")
        assert p.stdout.readline() == "worker-gone\n"
        assert ph.is_alive(), "the process lives on after one thread exited"


def test_non_leader_without_thread_flag_is_not_a_process(threaded):
    p, tid = threaded
    with pytest.raises(exithand.NotProcessLeader) as ei:
        exithand.open(tid)
    assert ei.value.tgid == p.pid


def test_tgid_must_match(threaded):
    p, tid = threaded
    with pytest.raises(exithand.NoSuchProcess, match=f"not a thread of process {os.getpid()}"):
        exithand.open(tid, thread=True, tgid=os.getpid())
    with exithand.open(tid, thread=True, tgid=p.pid) as h:
        assert h.tgid == p.pid


def test_exited_and_absent_thread_ids(threaded):
    p, tid = threaded
    assert p.stdin is not None and p.stdout is not None
    raw = os.pidfd_open(tid, os.O_EXCL)  # the raw kernel object, to know when it is gone
    try:
        p.stdin.write("\n")
        p.stdin.flush()
        assert _readable(raw, 30)  # a non-leader thread is released at its exit
    finally:
        os.close(raw)
    with pytest.raises(exithand.NoSuchProcess, match="no such thread"):
        exithand.open(tid, thread=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with pytest.raises(exithand.NoSuchProcess, match="no such thread"):
        exithand.open(gone.pid, thread=True)


def test_signal_goes_to_that_thread(threaded):
    """A thread handle signals its thread (PIDFD_SIGNAL_THREAD) while it lives, and refuses
    (NoSuchProcess, ESRCH from the pinned task) once it has exited, never another thread."""
    p, tid = threaded
    with exithand.open(tid, thread=True) as h:
        h.send_signal(signal.SIGCONT)
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
        h.wait(timeout=30)
        with pytest.raises(exithand.NoSuchProcess):
            h.send_signal(signal.SIGCONT)


def test_leader_thread_exit_is_a_dead_thread_not_a_dead_process(leader_exits_first):
    require("pidfd_thread")
    p = subprocess.Popen([leader_exits_first, "5", "cue"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == b"ready\n"
        with exithand.open(p.pid, thread=True) as th, exithand.open(p.pid) as ph:
            assert th.thread and th.tgid == p.pid and th.is_alive()
            p.stdin.write(b"\n")
            p.stdin.flush()
            assert p.stdout.readline() == b"leader-gone\n"
            th.wait(timeout=30)  # the leader thread is dead ...
            assert _readable(th.fileno())
            assert ph.is_alive() and not _readable(ph.fileno())  # ... the process is not
            p.stdin.write(b"x\n")
            p.stdin.flush()
            assert ph.wait(timeout=30).exit_code == 5
    finally:
        stop_process(p)


def test_open_thread_on_exited_leader_thread(leader_exits_first):
    """A leader that already exited while its worker runs: thread=True opens it (the task is a
    zombie) and is readable at once."""
    require("pidfd_thread")
    with leader_zombie(leader_exits_first) as p, exithand.open(p.pid, thread=True) as th:
        th.wait(timeout=30)
        with exithand.open(p.pid) as ph:
            assert ph.is_alive()


def test_forced_kernel_without_pidfd_thread(threaded, monkeypatch):
    _p, tid = threaded
    monkeypatch.setenv("EXITHAND_DISABLE", "pidfd_thread")
    with pytest.raises(exithand.BackendUnavailable, match="PIDFD_THREAD"):
        exithand.open(tid, thread=True)


def test_thread_needs_pidfd_backend(threaded):
    p, tid = threaded
    with pytest.raises(exithand.BackendUnavailable, match="thread"):
        exithand.open(tid, thread=True, backend="procpoll")
    with pytest.raises(ValueError):
        exithand.open(tid, tgid=p.pid)


def test_waitset_with_thread_handle(threaded):
    p, tid = threaded
    with exithand.open(tid, thread=True) as th, exithand.WaitSet() as ws:
        ws.add(th)
        assert list(ws.as_exited(timeout=0)) == []
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
        assert list(ws.as_exited(timeout=30)) == [th]
