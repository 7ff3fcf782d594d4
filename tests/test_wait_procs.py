"""exithand.wait_procs against psutil.wait_procs: same shape, same callback behaviour.

Both get the same kind of mixed list -- processes already dead, processes that die during the
call (killed from the callback, so no timing is involved), and processes that outlive the
timeout -- as ``psutil.Process`` objects, and must sort them the same way.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import psutil
import pytest
from _herd import herd

import exithand
from conftest import stop_process, wait_reaped


def _has_pidfd_info_exit() -> bool:
    """Linux 6.15+: a non-child's status is readable after its reap (else: only by a race)."""
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    disabled = exithand._kernel.syscalls.feature_disabled("pidfd_info")
    return (major, minor) >= (6, 15) and not disabled


def _scenario(wait_procs, timeout: float):
    """2 dead + 2 dying + 2 long-lived non-children; returns what wait_procs said."""
    with herd(6) as hd:
        handles = [exithand.open(p) for p in hd.pids]
        try:
            procs = [psutil.Process(p) for p in hd.pids]
            dead, dying, living = procs[:2], procs[2:4], procs[4:]
            for h in handles[:2]:
                h.kill()
                wait_reaped(h.fileno())  # until the keeper reaped it
            calls = []

            def callback(proc):
                calls.append(proc)
                if len(calls) == 1:  # the first death makes the "dying" ones die
                    for h in handles[2:4]:
                        h.kill()

            result = wait_procs(procs, timeout=timeout, callback=callback)
            return result, calls, dead, dying, living
        finally:
            for h in handles:
                h.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("impl", ["psutil", "exithand"])
def test_same_shape_and_callbacks_as_psutil(impl, no_fd_leak):
    fn = psutil.wait_procs if impl == "psutil" else exithand.wait_procs
    # psutil needs up to ~1 s per round-robin round to notice a death; give it 3
    result, calls, dead, dying, living = _scenario(fn, timeout=3)
    assert isinstance(result, tuple) and len(result) == 2
    gone, alive = result
    assert isinstance(gone, list) and isinstance(alive, list)
    assert {p.pid for p in gone} == {p.pid for p in dead + dying}
    assert {p.pid for p in alive} == {p.pid for p in living}
    # the callback got each gone object once, the very objects passed in
    assert len(calls) == len(gone) == 4
    assert {id(p) for p in calls} == {id(p) for p in gone} <= {id(p) for p in dead + dying}
    for p in gone:
        assert hasattr(p, "returncode")
    for p in alive:
        assert not hasattr(p, "returncode")
    if impl == "psutil":
        assert all(p.returncode is None for p in gone)  # psutil cannot tell for non-children
    else:
        # already reaped before the call: nobody can know any more (no pidfd existed), as in
        # psutil; died during the call: SIGKILL, known for non-children too (Linux 6.15+)
        killed = -9 if _has_pidfd_info_exit() else None
        assert {p.pid: p.returncode for p in gone} == {
            **{p.pid: None for p in dead}, **{p.pid: killed for p in dying}}
        assert [id(p) for p in gone] == [id(p) for p in calls]  # in order of death
        assert [id(p) for p in alive] == [id(p) for p in living]  # in the order given


@pytest.mark.parametrize("fn", [psutil.wait_procs, exithand.wait_procs])
def test_bad_arguments_raise_like_psutil(fn):
    with pytest.raises(ValueError):
        fn([], timeout=-1)
    with pytest.raises(TypeError):
        fn([], callback=1)
    assert fn([], timeout=0) == ([], [])


def test_pids_handles_gone_pids_and_timeout_zero(no_fd_leak):
    with herd(3) as hd, exithand.open(hd.pids[0]) as h0, exithand.open(hd.pids[2]) as h2:
        h0.kill()
        h0.wait(timeout=10)
        missing = 4_000_000 if exithand._identity.pid_max() > 4_000_000 else None
        items = [h0, hd.pids[1], h2]
        gone, alive = exithand.wait_procs(items, timeout=0)
        assert gone == [h0] and alive == [hd.pids[1], h2]
        assert h0.status().signal == 9  # handles keep their status
        # a pid that names no process counts as gone at once, as in psutil
        with exithand.open(hd.pids[1]) as h1:
            h1.kill()
            wait_reaped(h1.fileno())  # until the keeper reaped it
        gone, alive = exithand.wait_procs([hd.pids[1], h2], timeout=0.05)
        assert gone == [hd.pids[1]] and alive == [h2]
        assert missing is None or exithand.wait_procs([missing]) == ([missing], [])


def test_own_child_is_not_reaped(no_fd_leak):
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(7)"])
    try:
        proc = psutil.Process(p.pid)
        gone, alive = exithand.wait_procs([proc], timeout=30)
        assert gone == [proc] and alive == [] and proc.returncode == 7
        # still a zombie for its parent (us): Popen can reap it and sees the same code
        assert psutil.Process(p.pid).status() == psutil.STATUS_ZOMBIE
    finally:
        assert p.wait(timeout=10) == 7


def test_popen_items_are_watched_safely_and_left_reapable(no_fd_leak):
    r, w = os.pipe()
    a = subprocess.Popen([sys.executable, "-c", "import os,sys; os.read(0, 1); sys.exit(3)"],
                         stdin=r)
    b = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(4)"])
    os.close(r)
    try:
        assert b.wait(timeout=30) == 4  # reaped by Popen: its pid may be reused, never used
        calls = []
        gone, alive = exithand.wait_procs([a, b], timeout=0.05, callback=calls.append)
        assert gone == [b] and alive == [a] and calls == [b]
        assert exithand.wait_any([a, b]) is b
        os.write(w, b"x")
        gone, alive = exithand.wait_procs([a], timeout=30)
        assert gone == [a] and alive == []
        assert a.returncode is None  # untouched: Popen still has to reap it
        assert a.wait(timeout=10) == 3
    finally:
        os.close(w)
        for p in (a, b):
            stop_process(p)
