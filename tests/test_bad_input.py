"""Bad input to the library entry points: a clear exception, never a crash or a wrong answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable

import pytest

import exithand
from conftest import env_with_src, require, run_cli, sleeps_in_poll

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("text", [
    "\u0661\u0662",   # ARABIC-INDIC DIGITs: isdigit() is true and int() gives 12
    "\u00b2",         # SUPERSCRIPT TWO: isdigit() is true but int() raises
    "1:\u00b2", "1:\u0661", "+5", "0x10", "1e3", "12:", ":12", "", "-", "1:2:3",
])
def test_parse_target_rejects_non_ascii_decimal(text: str) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        exithand.parse_target(text)


def test_parse_target_accepts_plain_forms() -> None:
    assert exithand.parse_target("12") == (12, None)
    assert exithand.parse_target(" 12\n") == (12, None)
    assert exithand.parse_target("12:34") == (12, 34)


def test_parse_target_wants_a_str() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        exithand.parse_target(12)  # type: ignore[arg-type]


# ----- timeouts longer than one poll(2) can take -----------------------------------------------
# poll/epoll_wait take an int of milliseconds (INT_MAX ms is 24.8 days) and a lock wait at most
# threading.TIMEOUT_MAX: a longer timeout (1e9 s, 1e18 s) raised OverflowError from every
# waiting entry point before the fix; now it is waited for in slices.

HUGE = [1e9, 1e18]
_POLL_SYSCALLS = {"7", "232", "271", "281", "441"}  # x86_64 poll, epoll_wait, ppoll, epoll_pwait(2)


def _in_poll(tid: int) -> bool:
    try:
        with open(f"/proc/self/task/{tid}/syscall") as f:
            return f.read().split(" ", 1)[0] in _POLL_SYSCALLS
    except OSError:
        return False


def _run_blocked(fn: Callable[[], Any], then: Callable[[], None]) -> Any:
    """Run ``fn()`` in a thread; once it blocks in poll/epoll_wait (or has ended), call
    ``then()``; return ``fn``'s result or re-raise its exception."""
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["result"] = fn()
        except BaseException as e:  # handed to the test thread
            out["error"] = e

    t = threading.Thread(target=work)
    t.start()
    while t.is_alive() and not (t.native_id and _in_poll(t.native_id)):
        os.sched_yield()
    then()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


@pytest.mark.parametrize("timeout", HUGE)
def test_handle_wait_huge_timeout(victim_factory, timeout: float) -> None:
    v = victim_factory()
    with exithand.open(v.pid) as h:
        st = _run_blocked(lambda: h.wait(timeout), lambda: v.exit(7))
    assert st.exit_code == 7


@pytest.mark.parametrize("timeout", HUGE)
def test_waitset_and_wait_helpers_huge_timeout(victim_factory, timeout: float) -> None:
    v = victim_factory(reap=False)  # stays a zombie: the helpers below find it dead
    with exithand.WaitSet() as ws:
        h = ws.open(v.pid)
        try:
            got = _run_blocked(lambda: ws.wait(timeout), lambda: v.exit(3))
            assert got == [h] and h.wait(0).exit_code == 3
        finally:
            h.close()
    # the helpers built on WaitSet, on a process already dead (poll() raised before sleeping)
    assert exithand.wait_all([v.pid], timeout=timeout) == [v.pid]
    assert exithand.wait_any([v.pid], timeout=timeout) == v.pid
    child = subprocess.Popen(["true"])
    try:
        gone, alive = exithand.wait_procs([child], timeout=timeout)
        assert gone == [child] and not alive
    finally:
        child.wait()


@pytest.mark.parametrize("timeout", HUGE)
def test_kill_and_wait_huge_timeout(victim_factory, timeout: float) -> None:
    v = victim_factory()
    (r,) = exithand.kill_and_wait(v.pid, timeout=timeout, grace=timeout)
    assert r.outcome == "killed" and r.status.signal == signal.SIGTERM


@pytest.mark.timeout(60)
def test_kill_cgroup_huge_timeout(no_fd_leak) -> None:
    from kill_helpers import v2_cgroup
    from test_kill_cgroup import _fill

    with v2_cgroup("huge-timeout") as cg:
        k = _fill(cg, 2)
        try:
            res = exithand.kill_cgroup(cg, timeout=1e18)
            assert res.empty and len(res.processes) == 2
        finally:
            k.cleanup()


def test_watch_huge_timeout(backend_availability, victim_factory) -> None:
    require("proc_connector")
    v = victim_factory()
    with exithand.watch(pids=[v.pid], count=1, timeout=1e18) as w:
        out: list[Any] = []
        t = threading.Thread(target=lambda: out.extend(w))
        t.start()
        # wait until the iterating thread sleeps in poll() (the OverflowError came from that
        # wait's timeout), or has ended with the error
        while t.is_alive() and not (t.native_id and sleeps_in_poll(t.native_id)):
            os.sched_yield()
        v.exit(5)
        t.join()
    assert [(e.pid, e.exit_code) for e in out] == [(v.pid, 5)]


@pytest.mark.parametrize("timeout", ["1e9", "1e18"])
def test_cli_wait_huge_timeout(victim_factory, timeout: str) -> None:
    v = victim_factory(reap=False)
    v.exit(4)
    res = run_cli("wait", "-v", "-t", timeout, str(v.pid))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{v.pid}: exited with status 4.\n"


# ----- standard output closed (>&-) or failing (/dev/full) --------------------------------------

def _close_stdout() -> None:
    os.close(1)


@pytest.mark.parametrize("where", ["closed", "full"])
@pytest.mark.parametrize("args", [["info"], ["info", "--json"], ["wait", "-p", "-t", "1ms", "PID"],
                                  ["wait", "--json", "-p", "-t", "1ms", "PID"]],
                         ids=" ".join)
def test_cli_unwritable_stdout_is_a_clear_error(args: list[str], where: str) -> None:
    args = [str(os.getpid()) if a == "PID" else a for a in args]  # alive: -p prints it
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "exithand", *args], text=True,
                             stdout=full, stderr=subprocess.PIPE, env=env_with_src(),
                             preexec_fn=_close_stdout if where == "closed" else None,
                             timeout=30)
    assert res.returncode == 1, res.stderr
    assert "cannot write to standard output" in res.stderr
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr


def test_cli_kill_with_closed_stdout_still_kills(victim_factory) -> None:
    v = victim_factory(reap=False)
    res = subprocess.run([sys.executable, "-m", "exithand", "kill", "-v", str(v.pid)],
                         text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=env_with_src(), preexec_fn=_close_stdout, timeout=30)
    assert res.returncode == 1 and "cannot write to standard output" in res.stderr, res.stderr
    with exithand.open(v.pid) as h:
        assert not h.is_alive()  # killed before the report failed


def test_cli_closed_stderr_keeps_the_exit_code() -> None:
    def close_stderr() -> None:
        os.close(2)

    res = subprocess.run([sys.executable, "-m", "exithand", "wait", "-t", "0", str(2**22 + 1)],
                         capture_output=True, text=True, env=env_with_src(),
                         preexec_fn=close_stderr, timeout=30)
    assert res.returncode == 2 and res.stdout == ""
    pid = subprocess.Popen(["true"])
    pid.wait()
    res = subprocess.run([sys.executable, "-m", "exithand", "wait", str(pid.pid)],
                         capture_output=True, text=True, env=env_with_src(),
                         preexec_fn=close_stderr, timeout=30)
    assert res.returncode == 1 and res.stdout == ""


# ----- library arguments: ValueError/TypeError up front, never a wrong process ----------------

@pytest.mark.parametrize(("kw", "message"), [
    ({"inode": 0}, "invalid inode 0"), ({"inode": -1}, "invalid inode -1"),
    ({"inode": "x"}, "invalid inode 'x'"), ({"inode": True}, "invalid inode True"),
    ({"start_time": -1}, "invalid start_time -1"), ({"start_time": "x"}, "invalid start_time"),
])
def test_open_rejects_bad_identity_arguments(no_fd_leak, kw: dict[str, Any],
                                             message: str) -> None:
    # before: NoSuchProcess "process 1:x is gone: pid 1 now names another process"
    with pytest.raises(ValueError, match=message):
        exithand.open(os.getpid(), **kw)


def test_from_popen_rejects_non_popen(no_fd_leak) -> None:
    with pytest.raises(TypeError, match=r"takes a subprocess\.Popen"):
        exithand.ExitHandle.from_popen(None)

    class NoPid:
        pid = 0
        returncode = None

    with pytest.raises(ValueError, match="invalid pid 0"):
        exithand.ExitHandle.from_popen(NoPid())


@pytest.mark.parametrize("targets", [b"12", bytearray(b"12"), [(1,)], [(1, 2, 3)]],
                         ids=repr)
def test_kill_and_wait_rejects_bytes_and_odd_tuples(no_fd_leak, targets: Any) -> None:
    # b"12" iterated as the pids 49 and 50 and signalled them
    with pytest.raises(ValueError, match="invalid target"):
        exithand.kill_and_wait(targets, timeout=0)


@pytest.mark.parametrize(("kw", "message"), [
    ({"pids": [0]}, "invalid pid 0"), ({"pids": "12"}, "pids must be a list"),
    ({"uid": -1}, "uid must be"), ({"uid": "0"}, "uid must be"), ({"uid": 2**32 - 1}, "uid must"),
    ({"comm": 5}, "comm must be"), ({"cgroup": ""}, "cgroup must be"),
    ({"timeout": "1"}, "timeout must be"), ({"count": "2"}, "count must be"),
    ({"count": True}, "count must be"), ({"rcvbuf": -1}, "rcvbuf must be"),
    ({"rcvbuf": 2**40}, "rcvbuf must be"),
])
def test_watch_rejects_bad_arguments(no_fd_leak, kw: dict[str, Any], message: str) -> None:
    # before: comm=5 killed the reader thread (the stream then ended empty), rcvbuf=2**40 leaked
    # the netlink socket, and pids=[0], uid=-1 silently matched nothing
    with pytest.raises(ValueError, match=message):
        exithand.watch(**kw)


# ----- mount / umount --------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["mount", "umount"])
def test_empty_mountpoint_is_a_usage_error(tmp_path, cmd: str) -> None:
    # "" was the current directory: 'exithand mount "$UNSET"' mounted over it
    d = tmp_path / "cwd"
    d.mkdir()
    try:
        res = subprocess.run([sys.executable, "-m", "exithand", cmd, ""], capture_output=True,
                             text=True, env=env_with_src(), cwd=d, timeout=30)
        assert res.returncode == 2, res
        assert "empty path" in res.stderr and "Traceback" not in res.stderr
    finally:  # had it mounted over d anyway, do not leave it behind
        with open("/proc/self/mountinfo") as f:
            if f" {d} " in f.read():
                run_cli("umount", "--lazy", str(d))


@pytest.mark.parametrize("cmd", ["mount", "umount"])
def test_mount_help_has_its_own_exit_codes(cmd: str) -> None:
    res = run_cli(cmd, "--help")
    assert res.returncode == 0 and "examples:" in res.stdout
    tail = res.stdout.split("exit status:", 1)[1]
    # not the wait command's table (it spoke of targets, -p and timeouts)
    assert "waited for" not in tail and "target" not in tail and "124" not in tail
    assert "  0 " in tail and "  1 " in tail and "  2 " in tail


def test_kill_cgroup_relative_name_error_tells_the_truth(no_fd_leak, tmp_path,
                                                          monkeypatch) -> None:
    # a name without a leading "/" is only looked up in the current directory; the error used
    # to claim it was not under the v2 mount either, where it was
    from kill_helpers import v2_cgroup

    monkeypatch.chdir(tmp_path)
    with v2_cgroup("relname") as cg:
        name = os.path.basename(cg)
        with pytest.raises(exithand.CgroupError, match=f"write /{name}") as ei:
            exithand.kill_cgroup(name)
        assert "nor under" not in str(ei.value)
        res = run_cli("kill", "--cgroup", name)  # runs in this checkout's cwd, not tmp_path
        assert res.returncode == 1 and f"write /{name}" in res.stderr, res.stderr


# ----- the caller as its own target --------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["wait", "kill"])
def test_cli_refuses_to_wait_for_itself(cmd: str) -> None:
    # 'exec exithand wait $$' waited forever (or until -t); 'exithand kill' sent itself SIGTERM
    # and died without a report (exit 143)
    res = subprocess.run(["sh", "-c", f'exec "$0" -m exithand {cmd} "$$"', sys.executable],
                         capture_output=True, text=True, env=env_with_src(), timeout=30)
    assert res.returncode == 1, res
    assert "this exithand process itself" in res.stderr and "Traceback" not in res.stderr


def test_kill_and_wait_refuses_the_caller(no_fd_leak) -> None:
    with pytest.raises(ValueError, match="the caller itself"):
        exithand.kill_and_wait([os.getpid()])
    with exithand.open(os.getpid()) as h, pytest.raises(ValueError, match="the caller itself"):
        exithand.kill_and_wait(h)


@pytest.mark.parametrize("value", ["\u00b2", str(2**33), "abc", "-5"])
def test_bad_connector_rcvbuf_env_is_ignored(value: str, backend_availability) -> None:
    require("proc_connector")
    env = env_with_src(EXITHAND_CONNECTOR_RCVBUF=value, EXITHAND_BACKEND="connector")
    res = run_cli("info", env=env)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    res = run_cli("wait", "-t", "1ms", "-p", str(os.getpid()), env=env)
    assert res.returncode == 124 and res.stdout == f"{os.getpid()}\n", res.stderr


# ----- Ctrl-C ------------------------------------------------------------------------------------

_TERM_REPORTER = """
import os, signal, sys
def on_term(*_):
    os.write(1, b"term\\n")
signal.signal(signal.SIGTERM, on_term)
os.write(1, b"ready\\n")
sys.stdin.read()
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                           (signal.SIGHUP, 129)], ids=["INT", "TERM", "HUP"])
@pytest.mark.parametrize("tree", [False, True], ids=["plain", "tree"])
def test_cli_kill_ctrl_c_exits_130_and_leaves_nothing_stopped(tree: bool, sig: int,
                                                              code: int) -> None:
    """Interrupted (Ctrl-C, or SIGTERM/SIGHUP as from timeout(1)): 128 + signal, no
    traceback, and the victim is alive and not left stopped."""
    victim = subprocess.Popen([sys.executable, "-c", _TERM_REPORTER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    assert victim.stdout is not None and victim.stdin is not None
    try:
        assert victim.stdout.readline() == b"ready\n"
        cli = subprocess.Popen([sys.executable, "-m", "exithand", "kill", "-v",
                                *(["--tree"] if tree else []), str(victim.pid)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env_with_src())
        assert victim.stdout.readline() == b"term\n"  # signalled: the CLI now waits
        cli.send_signal(sig)
        _out, err = cli.communicate(timeout=30)
        assert cli.returncode == code, err
        assert "Traceback" not in err
        with open(f"/proc/{victim.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        assert state not in ("T", "t") and victim.poll() is None  # alive, not left stopped
    finally:
        victim.kill()
        victim.wait()
        victim.stdin.close()
        victim.stdout.close()


@pytest.mark.parametrize(("count", "code"), [(None, 0), ("5", 130)])
def test_cli_watch_ctrl_c(backend_availability, count, code: int) -> None:
    require("proc_connector")
    cli = subprocess.Popen([sys.executable, "-m", "exithand", "watch", "-p", str(os.getpid()),
                            *(["-c", count] if count else [])],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env_with_src())
    assert cli.stderr is not None
    assert "listening" in cli.stderr.readline()
    cli.send_signal(signal.SIGINT)
    _out, err = cli.communicate(timeout=30)
    assert cli.returncode == code, err
    assert "Traceback" not in err


# ----- a stopped target ------------------------------------------------------------------------
# A stopped process keeps SIGTERM pending until it is continued: kill_and_wait (without tree)
# and kill_cgroup(signal=TERM) waited forever (or until the timeout) for it to die.

def _stopped_child() -> subprocess.Popen[bytes]:
    p = subprocess.Popen(["sleep", "300"])
    os.kill(p.pid, signal.SIGSTOP)
    os.waitpid(p.pid, os.WUNTRACED)  # returns once it is stopped (and leaves it unreaped)
    return p


@pytest.mark.timeout(60)
def test_kill_and_wait_continues_a_stopped_target(no_fd_leak) -> None:
    p = _stopped_child()
    try:
        (r,) = exithand.kill_and_wait(p.pid, timeout=20)
        assert r.outcome == "killed" and r.status is not None, r
        assert r.status.signal == signal.SIGTERM and r.signals == (signal.SIGTERM,)
    finally:
        p.kill()
        p.wait()


@pytest.mark.timeout(60)
def test_kill_cgroup_term_continues_a_stopped_member(no_fd_leak) -> None:
    from kill_helpers import v2_cgroup

    with v2_cgroup("stopped") as cg:
        p = subprocess.Popen(["sleep", "300"])
        try:
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(p.pid))
            os.kill(p.pid, signal.SIGSTOP)
            os.waitpid(p.pid, os.WUNTRACED)
            res = exithand.kill_cgroup(cg, signal=signal.SIGTERM, timeout=20)
            assert res.empty, res
            (r,) = res.processes
            assert r.status is not None and r.status.signal == signal.SIGTERM, r
        finally:
            p.kill()
            p.wait()


@pytest.mark.parametrize("sig", [True, 9.0, "TERM", None, -1, 999, 2**40], ids=repr)
def test_send_signal_rejects_non_signals(victim_factory, sig: Any) -> None:
    # True was sent as SIGHUP and 9.0 as SIGKILL; the others raised raw int()/OSError errors
    v = victim_factory()
    with exithand.open(v.pid) as h:
        with pytest.raises(ValueError, match="invalid signal"):
            h.send_signal(sig)
        assert h.is_alive()  # nothing was sent
        v.exit(6)
        assert h.wait(20).exit_code == 6
