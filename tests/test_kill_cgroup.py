"""kill_cgroup / exithand kill --cgroup: cgroup.kill, waiting on cgroup.events, clear errors."""

from __future__ import annotations

import json
import os
import signal

import pytest
from kill_helpers import is_alive, start_keeper, v2_cgroup

import exithand
from conftest import NOBODY, run_as, run_cli
from exithand import _kill, cli
from exithand._kernel import cgroup as _cgroup

# The keeper's child forks N processes that each join the cgroup, say ready, and block.
JOINERS = """
import signal
N, CG, SIG = int(ENV["N"]), ENV["CG"], ENV["SIG"]
for i in range(N):
    if os.fork() == 0:
        with open(CG + "/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
        if SIG == "ignore-term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ready()
        block()
block()
"""


def _fill(path: str, n: int, sig: str = "default"):
    k = start_keeper(f"ENV = {{'N': '{n}', 'CG': {path!r}, 'SIG': {sig!r}}}\n" + JOINERS)
    k.wait_ready(n)
    return k


def _procs(path: str) -> list[int]:
    with open(os.path.join(path, "cgroup.procs")) as f:
        return [int(x) for x in f.read().split()]


@pytest.mark.timeout(60)
def test_cgroup_with_50_processes_returns_when_empty(no_fd_leak):
    with v2_cgroup("fifty") as cg:
        k = _fill(cg, 50)
        try:
            pids = _procs(cg)
            assert len(pids) == 50
            res = exithand.kill_cgroup(cg, timeout=30)
            assert res.empty and res.remaining == ()
            assert _procs(cg) == [] and not _cgroup.is_populated(cg)
            assert sorted(r.pid for r in res.processes) == sorted(pids)
            assert all(r.outcome == _kill.OUTCOME_KILLED for r in res.processes), res
            assert all(r.status is not None and r.status.signal == signal.SIGKILL
                       for r in res.processes)
            assert all(r.memory and r.memory > 0 for r in res.processes)
            assert not any(is_alive(p) for p in pids)
        finally:
            k.cleanup()


@pytest.mark.timeout(60)
def test_cgroup_with_a_process_forking_during_the_kill(no_fd_leak):
    """cgroup.kill also gets children forked while it runs: the cgroup ends up empty."""
    with v2_cgroup("forker") as cg:
        k = start_keeper(f"""
with open({cg!r} + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
ready()
for i in range(300):
    if os.fork() == 0:
        block()
block()
""")
        try:
            k.wait_ready()
            res = exithand.kill_cgroup(cg, timeout=30)
            assert res.empty and _procs(cg) == [] and not _cgroup.is_populated(cg)
            assert res.processes and all(r.outcome == _kill.OUTCOME_KILLED
                                         for r in res.processes)
            # nothing below the keeper survived (zombies may wait for the keeper to reap them)
            assert not any(is_alive(p) for p in k.descendants())
        finally:
            k.cleanup()


@pytest.mark.timeout(60)
def test_cgroup_subtree_and_term_then_grace(no_fd_leak):
    """TERM to each process, cgroup.kill after the grace; a child cgroup is included."""
    with v2_cgroup("grace") as cg:
        sub = os.path.join(cg, "inner")
        os.mkdir(sub)
        k1 = _fill(cg, 3)
        k2 = _fill(sub, 3, "ignore-term")
        try:
            res = exithand.kill_cgroup(cg, signal=signal.SIGTERM, grace=0.3, timeout=30)
            assert res.empty and len(res.processes) == 6
            by = {}
            for r in res.processes:
                by.setdefault(r.outcome, []).append(r)
            assert len(by[_kill.OUTCOME_KILLED]) == 3  # died of the TERM
            assert len(by[_kill.OUTCOME_ESCALATED]) == 3  # ignored it, cgroup.kill after 0.3 s
            for r in by[_kill.OUTCOME_ESCALATED]:
                assert r.signals == (signal.SIGTERM, signal.SIGKILL)
                assert r.seconds is not None and r.seconds >= 0.3
        finally:
            k1.cleanup()
            k2.cleanup()


@pytest.mark.timeout(60)
def test_cgroup_timeout_lists_remaining(no_fd_leak):
    with v2_cgroup("timeout") as cg:
        k = _fill(cg, 2, "ignore-term")
        try:
            res = exithand.kill_cgroup(cg, signal=signal.SIGTERM, timeout=0.3)  # no grace
            assert not res.empty
            assert sorted(res.remaining) == sorted(_procs(cg))
            assert all(r.outcome == _kill.OUTCOME_TIMED_OUT for r in res.processes)
            r = run_cli("kill", "--cgroup", cg, "-s", "TERM", "-t", "0.2")
            assert r.returncode == 124, r
            assert sorted(int(line.split(":")[0]) for line in r.stdout.splitlines()) == \
                sorted(res.remaining)
        finally:
            k.cleanup()


def test_bad_paths_give_clear_errors(no_fd_leak, tmp_path):
    with pytest.raises(exithand.CgroupError, match="no such cgroup"):
        exithand.kill_cgroup(str(tmp_path / "nope"))
    with pytest.raises(exithand.CgroupError, match="not a cgroup"):
        exithand.kill_cgroup(str(tmp_path))
    m = _cgroup.cgroup2_mount()
    if m is not None:
        with pytest.raises(exithand.CgroupError, match="root cgroup"):
            exithand.kill_cgroup(m.mount_point)
        with pytest.raises(exithand.CgroupError, match="not a cgroup directory"):
            exithand.kill_cgroup(os.path.join(m.mount_point, "cgroup.procs"))
    v1 = next((x for x in _cgroup.cgroup_mounts() if x.version == 1), None)
    if v1 is not None:
        with pytest.raises(exithand.CgroupError, match="cgroup v1"):
            exithand.kill_cgroup(v1.mount_point)
    r = run_cli("kill", "--cgroup", str(tmp_path / "nope"))
    assert r.returncode == 1 and "no such cgroup" in r.stderr
    r = run_cli("kill", "--cgroup", str(tmp_path))
    assert r.returncode == 1 and "not a cgroup" in r.stderr
    r = run_cli("kill", "--cgroup", str(tmp_path), "1234")
    assert r.returncode == 2 and "no TARGET" in r.stderr


@pytest.mark.timeout(60)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own the cgroup and drop to nobody")
def test_no_permission_is_access_denied_and_nothing_killed(no_fd_leak, capfd):
    with v2_cgroup("perm") as cg:
        k = _fill(cg, 3)
        try:
            pids = _procs(cg)

            def attempt() -> str:
                try:
                    exithand.kill_cgroup(cg, timeout=5)
                except exithand.AccessDenied as e:
                    return str(e)
                return "killed"

            msg = run_as(NOBODY, attempt)
            assert "permission denied" in msg and "cgroup.kill" in msg
            assert all(is_alive(p) for p in pids) and _procs(cg) == pids
            # the CLI, in-process in a child that dropped to nobody (the interpreter here may not
            # be executable by nobody)
            capfd.readouterr()
            assert run_as(NOBODY, lambda: cli.main(["kill", "--cgroup", cg])) == 1
            err = capfd.readouterr().err
            assert "permission denied" in err and "nothing was signalled" in err, err
            assert all(is_alive(p) for p in pids)
        finally:
            k.cleanup()


@pytest.mark.timeout(60)
def test_cli_cgroup_50_json_and_relative_path(no_fd_leak):
    """``exithand kill --cgroup`` on 50 processes: exit 0 once empty, each one reported."""
    with v2_cgroup("cli") as cg:
        k = _fill(cg, 50)
        try:
            m = _cgroup.cgroup2_mount()
            assert m is not None
            rel = "/" + os.path.relpath(cg, m.mount_point)  # as /proc/PID/cgroup prints it
            r = run_cli("kill", "--cgroup", rel, "--json", "--mrelease", "-t", "30")
            assert r.returncode == 0, r
            objs = [json.loads(line) for line in r.stdout.splitlines()]
            assert objs[-1]["cgroup"] == cg and objs[-1]["empty"] is True
            assert objs[-1]["processes"] == 50
            procs = objs[:-1]
            assert len(procs) == 50 and not _procs(cg)
            assert all(o["outcome"] == "killed" and o["signal_name"] == "SIGKILL"
                       for o in procs)
            assert all(o["mrelease"] in ("released", "already_released") for o in procs)
        finally:
            k.cleanup()


def test_mountinfo_parsing_handles_both_layouts():
    hybrid = (
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,"
        "release_agent=/x,name=systemd\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "22 1 0:20 / /sys rw - sysfs sysfs rw\n")
    ms = _cgroup.parse_mountinfo(hybrid)
    assert [(m.mount_point, m.version, m.controllers) for m in ms] == [
        ("/sys/fs/cgroup/memory", 1, ("memory",)),
        ("/sys/fs/cgroup/systemd", 1, ("name=systemd",)),
        ("/sys/fs/cgroup/unified", 2, ()),
    ]
    pure = ("30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 "
            "rw,nsdelegate,memory_recursiveprot\n"
            "31 23 0:27 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n")
    ms = _cgroup.parse_mountinfo(pure)
    assert [(m.mount_point, m.version) for m in ms] == [("/sys/fs/cgroup", 2),
                                                       ("/mnt/with space", 2)]


@pytest.mark.timeout(60)
def test_caller_inside_the_cgroup_is_refused(no_fd_leak):
    with v2_cgroup("self") as cg:
        def attempt() -> str:
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            try:
                exithand.kill_cgroup(cg, timeout=5)
            except exithand.CgroupError as e:
                return str(e)
            return "killed"

        assert "is in the cgroup itself" in run_as(0, attempt)
