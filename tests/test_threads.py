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
from conftest import env_with_src, leader_zombie, require, run_cli, stop_process, wait_holds_pidfd

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
    with pytest.raises(exithand.Error, match=f"not a thread of process {os.getpid()}") as ei:
        exithand.open(tid, thread=True, tgid=os.getpid())
    assert not isinstance(ei.value, exithand.NoSuchProcess)  # it is not gone
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


# ----- exithand wait --thread ------------------------------------------------------------------

def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "exithand", "wait", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_with_src())


def test_cli_wait_thread_verbose_and_json(threaded):
    """``--thread PID/TID`` waits for that thread: it returns once the thread exits, while the
    process runs on; -v and --json say so.  The CLI is started only after its target thread
    exists, and the thread exits only on our line, so the CLI sees it alive first unless it
    opens late: -t bounds it."""
    import json

    p, tid = threaded
    with exithand.open(tid, thread=True) as h:  # our own view of when the thread is gone
        c1 = _cli("--thread", "-v", "-t", "30", f"{p.pid}/{tid}")
        c2 = _cli("--thread", "--json", "-t", "30", f"/proc/{p.pid}/task/{tid}")
        try:
            wait_holds_pidfd(c1.pid, tid)
            wait_holds_pidfd(c2.pid, tid)
            assert p.stdin is not None
            p.stdin.write("\n")
            p.stdin.flush()
            h.wait(timeout=30)
            out1, err1 = c1.communicate(timeout=30)
            out2, err2 = c2.communicate(timeout=30)
        finally:
            for c in (c1, c2):
                if c.poll() is None:
                    c.kill()
                    c.wait()
    assert c1.returncode == 0, err1
    assert out1 == f"{tid}: thread of process {p.pid} exited.\n"
    assert c2.returncode == 0, err2
    d = json.loads(out2)
    assert d["pid"] == tid and d["thread"] is True and d["tgid"] == p.pid
    assert d["known"] is False and "thread" in d["reason"]
    assert p.poll() is None  # the process lives on



def test_cli_thread_bad_input(threaded):
    p, tid = threaded
    # a thread of another process: exit 1, even with -e (it is not gone)
    for extra in ([], ["-e"]):
        res = run_cli("wait", "--thread", *extra, "-t", "5", f"{os.getpid()}/{tid}")
        assert res.returncode == 1, res
        assert f"{tid} is not a thread of process {os.getpid()}" in res.stderr
    # a thread id no live thread has: exit 1; with -e it counts as exited (exit 0)
    gone = subprocess.Popen(["true"])
    gone.wait()
    res = run_cli("wait", "--thread", str(gone.pid))
    assert res.returncode == 1 and "no such thread" in res.stderr, res
    res = run_cli("wait", "--thread", "-e", "-v", str(gone.pid))
    assert res.returncode == 0, res
    # malformed: usage, exit 2
    for bad in ("x", "1/", "/proc/1/tsk/2", "0", "-3/4"):
        res = run_cli("wait", "--thread", "--", bad)
        assert res.returncode == 2, (bad, res)
    # a non-leader tid without --thread stays a thread-id error
    res = run_cli("wait", "-t", "5", str(tid))
    assert res.returncode == 1 and f"thread of process {p.pid}" in res.stderr, res


def test_cli_thread_forced_no_pidfd_thread(threaded):
    _p, tid = threaded
    res = run_cli("wait", "--thread", str(tid),
                  env=env_with_src(EXITHAND_DISABLE="pidfd_thread"))
    assert res.returncode == 1 and "PIDFD_THREAD" in res.stderr, res
