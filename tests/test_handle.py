"""Behaviour suite for ExitHandle, written against the backend interface and run per backend.

Every test uses real processes; non-children are grandchildren kept by a 'keeper' process
(see conftest.Victim).  No sleeps: victims are told to die through pipes and deaths are
observed through pidfds.
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import subprocess
import sys
import threading
import warnings

import pytest

import exithand
from conftest import NOBODY, Victim, leader_zombie, run_as, wait_dead, wait_reaped

pytestmark = pytest.mark.timeout(60)


def test_nonchild_reaped_by_its_parent(no_fd_leak: None, victim_factory, backend: str) -> None:
    v: Victim = victim_factory(reap=True)
    with exithand.open(v.pid, backend=backend) as h:
        assert h.is_alive()
        assert h.status() is None
        v.exit(7)
        assert v.keeper.stdout.readline() == b"reaped\n"
        st = h.wait(timeout=10)
        assert not h.is_alive()
        assert st.known, st.reason
        assert st.exit_code == 7 and st.signal is None and st.returncode == 7
        if backend == "pidfd":
            assert st.source == "pidfd_info"
        assert st.describe() == f"{v.pid}: exited with status 7."


def test_nonchild_killed_by_signal(no_fd_leak: None, victim_factory, backend: str) -> None:
    v = victim_factory(reap=True)
    with exithand.open(v.pid, backend=backend) as h:
        v.die_by(signal.SIGKILL)
        assert v.keeper.stdout.readline() == b"reaped\n"
        st = h.wait(timeout=10)
        assert st.known and st.signal == signal.SIGKILL and st.exit_code is None
        assert st.returncode == -9 and int(st) == -9
        assert st.describe() == f"{v.pid}: killed by signal 9."


def test_zombie_nonchild_is_dead_and_root_reads_field_52(no_fd_leak: None, victim_factory,
                                                         backend: str) -> None:
    v = victim_factory(reap=False)
    v.exit(5)
    wait_dead(v.pid)
    with open(f"/proc/{v.pid}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
    with exithand.open(v.pid, backend=backend) as h:
        assert not h.is_alive(), "a zombie is dead"
        st = h.wait(timeout=0)
        assert st.known and st.exit_code == 5, st
        if backend == "pidfd":
            assert st.source == "zombie"


def test_is_reaped_tells_zombie_from_reaped(no_fd_leak: None, victim_factory,
                                            backend: str) -> None:
    v = victim_factory(reap=False)
    with exithand.open(v.pid, backend=backend) as h:
        assert h.is_alive() and not h.is_reaped()
        v.exit(4)
        wait_dead(v.pid)
        assert not h.is_alive() and not h.is_reaped(), "a zombie is dead, not reaped"
        v.reap()
        assert h.is_reaped()


def _status_as_other_user(pid: int, backend: str) -> dict[str, object]:
    with exithand.open(pid, backend=backend) as h:
        st = h.wait(timeout=5)
        return {"known": st.known, "reason": st.reason, "exit_code": st.exit_code,
                "dead": not h.is_alive()}


def test_zombie_nonchild_status_hidden_from_other_user(no_fd_leak: None, victim_factory) -> None:
    v = victim_factory(reap=False)
    v.exit(5)
    wait_dead(v.pid)
    res = run_as(NOBODY, lambda: _status_as_other_user(v.pid, "pidfd"))
    assert res["dead"] is True
    assert res["known"] is False and res["exit_code"] is None
    assert "ptrace" in str(res["reason"])


def test_zombie_status_becomes_known_after_reap_for_other_user(victim_factory) -> None:
    """Unknown while a zombie; PIDFD_INFO_EXIT (6.15+) tells everyone after the reap."""
    v = victim_factory(reap=False)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: unprivileged watcher
        code = 1
        try:
            os.close(r)
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            h = exithand.open(v.pid, backend="pidfd")
            os.write(w, b"open\n")
            st = h.wait(timeout=10)
            assert not st.known, st
            os.write(w, b"unknown\n")
            code = 3
            wait_reaped(h.fileno())  # the test's parent reaps v now
            st = h.status()
            code = 0 if (st and st.known and st.exit_code == 5
                         and st.source == "pidfd_info") else 4
            h.close()
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as rf:
        assert rf.readline() == b"open\n"
        v.exit(5)
        assert rf.readline() == b"unknown\n"
        v.reap()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_own_child_status_without_reaping(no_fd_leak: None, backend: str) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read(); sys.exit(3)"],
                         stdin=subprocess.PIPE)
    try:
        with exithand.open(p.pid, backend=backend) as h:
            p.stdin.close()  # type: ignore[union-attr]
            st = h.wait(timeout=10)
            assert st.known and st.exit_code == 3 and st.source == "child"
        # the child is still ours to reap
        assert p.wait(timeout=5) == 3
    finally:
        p.kill()
        p.wait()


def test_from_popen_after_popen_reaps(no_fd_leak: None, backend: str) -> None:
    p = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"])
    with exithand.ExitHandle.from_popen(p, backend=backend) as h:
        assert p.wait(timeout=10) == 4  # Popen reaps first
        st = h.wait(timeout=5)
        assert st.known and st.exit_code == 4 and st.source in ("popen", "pidfd_info")
    with pytest.raises(exithand.NoSuchProcess, match="already reaped"):
        exithand.ExitHandle.from_popen(p, backend=backend)


def test_from_pidfd_adopts(no_fd_leak: None, victim_factory) -> None:
    v = victim_factory(reap=True)
    fd = os.pidfd_open(v.pid)
    h = exithand.ExitHandle.from_pidfd(fd)
    try:
        assert h.pid == v.pid and h.fileno() == fd
        v.exit(0)
        assert h.wait(timeout=10).exit_code == 0
    finally:
        h.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # the handle owned and closed it


def test_from_pidfd_rejects_other_fds(no_fd_leak: None) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(exithand.Error, match="not a pidfd"):
            exithand.ExitHandle.from_pidfd(r)
    finally:
        os.close(r)
        os.close(w)


def test_identity_and_selectors(no_fd_leak: None, victim_factory, backend: str) -> None:
    v = victim_factory(reap=True)
    with exithand.open(v.pid, backend=backend) as h, selectors.DefaultSelector() as sel:
        ident = h.identity
        assert ident.pid == v.pid and ident.boot_id
        assert ident.start_time is not None
        with open(f"/proc/{v.pid}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[19]) == ident.start_time
        if ident.inode is not None:
            assert str(ident) == f"{v.pid}:{ident.inode}"
            # reopening by PID:INODE and by start time pins the same process
            exithand.open(v.pid, inode=ident.inode, backend=backend).close()
        exithand.open(v.pid, start_time=ident.start_time, backend=backend).close()
        sel.register(h, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []
        v.exit(1)
        ready = sel.select(timeout=10)
        assert [k.fileobj for k, _ in ready] == [h]
        sel.unregister(h)


def test_identity_mismatch_is_no_such_process(no_fd_leak: None, victim_factory,
                                              backend: str) -> None:
    v = victim_factory(reap=True)
    with exithand.open(v.pid, backend=backend) as h:
        ident = h.identity
    if ident.inode is not None:
        with pytest.raises(exithand.NoSuchProcess, match="another process"):
            exithand.open(v.pid, inode=ident.inode + 1, backend=backend)
    with pytest.raises(exithand.NoSuchProcess, match="another process"):
        exithand.open(v.pid, start_time=ident.start_time + 1, backend=backend)  # type: ignore


def test_multithreaded_leader_exit_is_not_death(no_fd_leak: None, leader_exits_first: str,
                                                backend: str) -> None:
    with leader_zombie(leader_exits_first) as p:
        with open(f"/proc/{p.pid}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z", "leader shows as zombie"
        with exithand.open(p.pid, backend=backend) as h:
            assert h.is_alive(), "a live thread group is not dead"
            with pytest.raises(exithand.TimeoutExpired):
                h.wait(timeout=0.2)
            assert h.status() is None
            p.stdin.write(b"go\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
            st = h.wait(timeout=10)
            assert st.known and st.exit_code == 3 and st.source == "child"


def test_signals_reach_the_pinned_process(no_fd_leak: None, victim_factory, backend: str) -> None:
    v = victim_factory(reap=True)
    with exithand.open(v.pid, backend=backend) as h:
        h.terminate()
        wait_dead(v.pid)
        v.reap()
        st = h.wait(timeout=10)
        assert st.signal == signal.SIGTERM
        # reaped: the pid may be anyone's now; the handle refuses instead of guessing
        with pytest.raises(exithand.NoSuchProcess):
            h.kill()


def _signal_as_other_user(pid: int) -> str:
    with exithand.open(pid) as h:
        try:
            h.kill()
        except exithand.AccessDenied as e:
            return f"denied pid={e.pid}"
        return "sent"


def test_signal_other_users_process_is_access_denied(no_fd_leak: None, victim_factory) -> None:
    v = victim_factory(reap=True)
    assert run_as(NOBODY, lambda: _signal_as_other_user(v.pid)) == f"denied pid={v.pid}"
    with exithand.open(v.pid) as h:
        assert h.is_alive(), "nothing was killed"


def test_wait_timeout(no_fd_leak: None, victim_factory, backend: str) -> None:
    v = victim_factory(reap=True)
    with exithand.open(v.pid, backend=backend) as h:
        with pytest.raises(exithand.TimeoutExpired) as ei:
            h.wait(timeout=0.05)
        assert isinstance(ei.value, TimeoutError) and ei.value.pid == v.pid
        with pytest.raises(exithand.TimeoutExpired):
            h.wait(timeout=0)
        for bad in (-1, float("nan"), "1"):
            with pytest.raises(ValueError):
                h.wait(timeout=bad)  # type: ignore[arg-type]
        v.exit(0)
        assert h.wait(timeout=10).exit_code == 0


def test_wait_from_another_thread(no_fd_leak: None, victim_factory, backend: str) -> None:
    v = victim_factory(reap=True)
    with exithand.open(v.pid, backend=backend) as h:
        got: list[exithand.ExitStatus] = []
        t = threading.Thread(target=lambda: got.append(h.wait(timeout=20)))
        t.start()
        v.exit(9)
        t.join(20)
        assert got and got[0].exit_code == 9


def test_close_is_idempotent_and_leak_warns(victim_factory, backend: str) -> None:
    v = victim_factory(reap=True)
    h = exithand.open(v.pid, backend=backend)
    h.close()
    h.close()
    assert h.closed and "closed" in repr(h)
    with pytest.raises(ValueError):
        h.fileno()
    with pytest.raises(ValueError):
        h.poll()
    h2 = exithand.open(v.pid, backend=backend)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del h2
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)


BAD_PIDS = [0, -1, 2**64, 2**22 + 1, True, "abc", 1.5, None]


@pytest.mark.parametrize("bad", BAD_PIDS, ids=repr)
def test_bad_pids_raise_value_error(no_fd_leak: None, bad: object, backend: str) -> None:
    with pytest.raises(ValueError, match="invalid pid"):
        exithand.open(bad, backend=backend)  # type: ignore[arg-type]


def test_thread_id_is_refused_clearly(no_fd_leak: None, backend: str) -> None:
    ev = threading.Event()
    t = threading.Thread(target=ev.wait)
    t.start()
    try:
        assert t.native_id is not None
        with pytest.raises(exithand.NotProcessLeader, match="is a thread of process") as ei:
            exithand.open(t.native_id, backend=backend)
        assert isinstance(ei.value, exithand.NoSuchProcess)
        assert ei.value.tgid == os.getpid() and ei.value.pid == t.native_id
    finally:
        ev.set()
        t.join()


def test_vanished_pid(no_fd_leak: None, backend: str) -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(exithand.NoSuchProcess) as ei:
        exithand.open(p.pid, backend=backend)
    assert ei.value.pid == p.pid


def test_self_is_not_dead(no_fd_leak: None, backend: str) -> None:
    with exithand.open(os.getpid(), backend=backend) as h:
        assert h.is_alive() and h.status() is None
