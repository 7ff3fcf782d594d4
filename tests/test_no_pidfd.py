"""The no-pidfd backends (procpoll, connector) and automatic backend selection (issue 5)."""

from __future__ import annotations

import json
import os
import platform
import select
import signal
import subprocess
import sys
import textwrap

import pytest

import exithand
from conftest import SRC, env_with_src, leader_zombie, require, run_cli, stop_process
from exithand._identity import read_stat

FALLBACKS = ["procpoll", "connector"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", ["pidfd", *FALLBACKS])
def test_thread_leader_zombie_is_not_dead(no_fd_leak, leader_exits_first, backend_availability,
                                          name: str) -> None:
    if name != "procpoll":
        require("pidfd" if name == "pidfd" else "proc_connector")
    with leader_zombie(leader_exits_first, 4) as p:
        assert p.stdin is not None
        st = read_stat(p.pid)
        assert st is not None and st.state == "Z" and st.num_threads == 2  # the trap is real
        with exithand.open(p.pid, backend=name) as h:
            assert h.backend == name
            assert h.is_alive()
            assert h.status() is None
            # bounded negative check: the fd stays unreadable over many monitor rounds
            assert not select.select([h], [], [], 0.3)[0]
            p.stdin.write(b"x")
            p.stdin.flush()
            assert select.select([h], [], [], 10)[0]
            st2 = h.wait(timeout=10)
            assert st2.known and st2.exit_code == 4 and st2.source == "child"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", FALLBACKS)
def test_fallback_fileno_signal_and_identity(no_fd_leak, victim_factory, backend_availability,
                                             name: str) -> None:
    if name != "procpoll":
        require("pidfd" if name == "pidfd" else "proc_connector")
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
    try:
        with exithand.open(p.pid, backend=name) as h:
            assert h.identity.inode is None
            assert h.identity.start_time == read_stat(p.pid).start_time
            assert h.identity.boot_id
            assert not select.select([h.fileno()], [], [], 0)[0]
            with pytest.raises(exithand.Error, match="no pidfd"):
                h.release_memory()
            h.send_signal(signal.SIGTERM)
            st = h.wait(timeout=10)
            assert st.signal == signal.SIGTERM and st.source == "child"
            assert p.wait(timeout=10) == -signal.SIGTERM  # reaped now
            assert not h.is_alive()
            # reaped: signalling must refuse instead of hitting a reuser of the number
            with pytest.raises(exithand.NoSuchProcess):
                h.kill()
    finally:
        stop_process(p)
    # a pinned start time that does not match is refused
    v2 = victim_factory(reap=True)
    st = read_stat(v2.pid)
    with pytest.raises(exithand.NoSuchProcess):
        exithand.open(v2.pid, start_time=st.start_time + 1, backend=name)
    with exithand.open(v2.pid, start_time=st.start_time, backend=name) as h2:
        assert h2.is_alive()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", FALLBACKS)
def test_fallback_thread_id_is_not_a_process(no_fd_leak, leader_exits_first,
                                             backend_availability, name: str) -> None:
    if name != "procpoll":
        require("pidfd" if name == "pidfd" else "proc_connector")
    with leader_zombie(leader_exits_first, 4) as p:
        tids = [int(t) for t in os.listdir(f"/proc/{p.pid}/task") if int(t) != p.pid]
        assert tids
        with pytest.raises(exithand.NotProcessLeader) as ei:
            exithand.open(tids[0], backend=name)
        assert ei.value.tgid == p.pid


_REUSE_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, SRC)
    import exithand
    from exithand._identity import read_stat
    with open("/proc/sys/kernel/pid_max", "w") as f:   # per pid namespace since Linux 6.14
        f.write("400")
    r, w = os.pipe()
    while True:      # after a wrap-around numbers restart at 300 (RESERVED_PIDS): get above it
        a = os.fork()
        if a == 0:
            os.read(r, 1); os._exit(0)
        if a > 300:
            break
        os.kill(a, signal.SIGKILL); os.waitpid(a, 0)
    h = exithand.open(a, backend="procpoll")
    st0 = h.identity.start_time
    os.kill(a, signal.SIGKILL)
    os.waitpid(a, 0)                                   # reaped: the number is free again
    reuser, tries = None, 0
    while reuser is None and tries < 3000:
        tries += 1
        c = os.fork()
        if c == 0:
            os.read(r, 1); os._exit(0)
        st = read_stat(c)
        if c == a and st is not None and st.start_time != st0:
            reuser = c
        else:
            os.kill(c, signal.SIGKILL); os.waitpid(c, 0)
    out = {"a": a, "reuser": reuser, "tries": tries, "dead": not h.is_alive()}
    try:
        h.send_signal(signal.SIGTERM)
        out["signal"] = "sent"
    except exithand.NoSuchProcess:
        out["signal"] = "refused"
    out["reuser_alive"] = os.waitpid(reuser, os.WNOHANG) == (0, 0)
    st = h.status()
    out["status_known"] = st.known
    try:
        exithand.open(a, start_time=st0, backend="procpoll").close()
        out["reopen"] = "opened"
    except exithand.NoSuchProcess:
        out["reopen"] = "refused"
    h.close()
    os.kill(reuser, signal.SIGKILL); os.waitpid(reuser, 0)
    print(json.dumps(out))
""")


@pytest.mark.timeout(90)
def test_procpoll_pid_reuse_detected_by_start_time() -> None:
    """In a private pid namespace with pid_max=400, make the number of a dead, reaped process
    name a new one: the procpoll handle must say dead, refuse to signal, refuse to reopen."""
    require("pid_max_per_ns")
    with open("/proc/sys/kernel/pid_max") as f:
        host_pid_max = f.read()
    res = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
         f"SRC = {SRC!r}\n" + _REUSE_SCRIPT],
        capture_output=True, text=True, timeout=80)
    with open("/proc/sys/kernel/pid_max") as f:
        assert f.read() == host_pid_max  # the host was not touched
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["reuser"] == out["a"], out
    assert out["dead"] is True
    assert out["signal"] == "refused" and out["reuser_alive"] is True
    assert out["status_known"] is False  # not the reuser's status, and ours was reaped unseen
    assert out["reopen"] == "refused"


def _info(env: dict[str, str], prefix: list[str]) -> dict[str, object]:
    res = subprocess.run([*prefix, sys.executable, "-m", "exithand", "info", "--json"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


@pytest.mark.timeout(60)
def test_forced_fallback_by_environment() -> None:
    out = _info(env_with_src(EXITHAND_NO_PIDFD="1"), [])
    backends = {b["name"]: b for b in out["backends"]}  # type: ignore[union-attr]
    assert backends["pidfd"]["available"] is False
    assert "EXITHAND_NO_PIDFD" in backends["pidfd"]["reason"]
    assert out["selected"] == ("connector" if backends["connector"]["available"] else "procpoll")
    forced = _info(env_with_src(EXITHAND_BACKEND="procpoll"), [])
    assert forced["selected"] == "procpoll" and forced["forced"] == "procpoll"
    bad = run_cli("info", env=env_with_src(EXITHAND_BACKEND="nosuch"))
    assert bad.returncode == 1 and "unknown backend" in bad.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("err", ["EPERM", "ENOSYS"])
def test_seccomp_refusal_selects_fallback(eh5_bin, err: str) -> None:
    """A real seccomp filter failing pidfd_open: the probe notices, a fallback is chosen."""
    deny = [eh5_bin["eh5_deny_pidfd"], err]
    out = _info(env_with_src(), deny)
    backends = {b["name"]: b for b in out["backends"]}  # type: ignore[union-attr]
    assert backends["pidfd"]["available"] is False
    assert os.strerror(getattr(__import__("errno"), err)) in backends["pidfd"]["reason"]
    if backends["connector"]["available"]:
        assert out["selected"] == "connector"
    else:
        assert out["selected"] == "procpoll"


_WATCH_SCRIPT = textwrap.dedent("""
    import sys, exithand
    pid = int(sys.argv[1])
    with exithand.open(pid) as h:
        print(h.backend, flush=True)
        sys.stdin.readline()          # the test kills the victim after this line
        st = h.wait(timeout=20)
        print(int(not h.is_alive()), st.known, flush=True)
""")


@pytest.mark.timeout(60)
def test_seccomp_and_user_namespace_select_procpoll(eh5_bin, victim_factory) -> None:
    """pidfd_open refused and the proc connector ignored (a child user namespace): procpoll is
    chosen automatically, and it sees a death."""
    if os.geteuid() != 0:
        pytest.skip("unshare --user as root keeps /proc readable for the script")
    v = victim_factory(reap=True)
    p = subprocess.Popen([eh5_bin["eh5_deny_pidfd"], "EPERM", "unshare", "--user",
                          sys.executable, "-c", _WATCH_SCRIPT, str(v.pid)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=env_with_src())
    try:
        assert p.stdout.readline().strip() == "procpoll"  # type: ignore[union-attr]
        v.exit(3)
        assert v.keeper.stdout.readline() == b"reaped\n"
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
        assert p.stdout.readline().split() == ["1", "False"]  # type: ignore[union-attr]
        assert p.wait(timeout=20) == 0
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


def test_info_text_marks_the_selected_backend() -> None:
    res = run_cli("info", env=env_with_src(EXITHAND_BACKEND="procpoll"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("kernel:") and platform.release() in lines[0]
    assert any(x.startswith("  * procpoll") for x in lines)
    assert "selected:  procpoll (forced by EXITHAND_BACKEND=procpoll)" in lines
    assert any(x.startswith("exit status of non-children:") for x in lines)
