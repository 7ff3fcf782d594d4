"""``exithand kill``: output, exit codes, target forms (run as a real subprocess)."""

from __future__ import annotations

import json
import os
import signal

import kprobe
import pytest
from kill_helpers import is_alive

import exithand
from conftest import run_cli

IGNORE_TERM = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nready(); block()\n"
PLAIN = "ready(); block()\n"


@pytest.mark.timeout(60)
def test_verbose_term(keepers):
    k = keepers(PLAIN)
    r = run_cli("kill", "-v", str(k.pid))
    assert r.returncode == 0, r
    assert r.stdout.startswith(f"{k.pid}: killed by signal 15 (after ")
    assert "MiB released" in r.stdout
    assert not is_alive(k.pid)


@pytest.mark.timeout(60)
def test_grace_escalates_and_json(keepers):
    k = keepers(IGNORE_TERM)
    with exithand.open(k.pid) as h:
        inode = h.identity.inode
    target = f"{k.pid}:{inode}" if inode is not None else str(k.pid)  # pidfs: Linux 6.9+
    r = run_cli("kill", "--json", "--grace", "0.2", "--mrelease", target)
    assert r.returncode == 0, r
    (o,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert o["pid"] == k.pid and o["inode"] == inode
    assert o["outcome"] == "escalated" and o["signal_name"] == "SIGKILL"
    assert o["signals_sent"] == ["SIGTERM", "SIGKILL"]
    assert o["seconds"] >= 0.2 and o["memory_bytes"] > 0
    assert o["mrelease"] in ("released", "already_released")


@pytest.mark.timeout(60)
def test_mrelease_unavailable_is_reported_not_fatal(keepers):
    """On a kernel without process_mrelease (simulated: EXITHAND_DISABLE=mrelease) the kill
    still works and the result says why memory was not released early."""
    from conftest import env_with_src
    k = keepers(PLAIN)
    r = run_cli("kill", "--json", "-s", "KILL", "--mrelease", str(k.pid),
                env=env_with_src(EXITHAND_DISABLE="mrelease"))
    assert r.returncode == 0, r
    o = json.loads(r.stdout)
    assert o["outcome"] == "killed" and o["mrelease"] == "failed"
    assert "ENOSYS" in o["mrelease_error"] and "5.15" in o["mrelease_error"]


@pytest.mark.timeout(60)
def test_timeout_exits_124_and_lists_survivors(keepers):
    a, b = keepers(IGNORE_TERM), keepers(PLAIN)
    r = run_cli("kill", "-t", "0.3", str(a.pid), str(b.pid))
    assert r.returncode == 124, r
    assert r.stdout.splitlines() == [f"{a.pid}: still running."]
    assert is_alive(a.pid) and not is_alive(b.pid)
    r = run_cli("kill", "--json", "-t", "0.2", str(a.pid))
    assert r.returncode == 124
    assert json.loads(r.stdout)["outcome"] == "timed_out"


@pytest.mark.timeout(60)
def test_missing_target_is_an_error_and_nothing_is_signalled(keepers, victim_factory):
    k = keepers(PLAIN)
    gone = victim_factory(reap=True)
    gone.exit(0)
    assert gone.keeper.stdout.readline() == b"reaped\n"
    r = run_cli("kill", "-s", "KILL", str(k.pid), str(gone.pid))
    assert r.returncode == 1 and "nothing was signalled" in r.stderr, r
    assert is_alive(k.pid)
    r = run_cli("kill", "-e", "--json", "-s", "KILL", str(k.pid), str(gone.pid))
    assert r.returncode == 0, r
    outs = {o["pid"]: o["outcome"] for o in map(json.loads, r.stdout.splitlines())}
    assert outs == {k.pid: "killed", gone.pid: "already_gone"}


@pytest.mark.timeout(60)
@pytest.mark.skipif(not kprobe.probe("pidfs").ok, reason="PID:INODE needs pidfs inodes: "
                    + kprobe.probe("pidfs").reason)
def test_reused_number_with_inode_is_not_signalled(keepers):
    k = keepers(PLAIN)
    with exithand.open(k.pid) as h:
        inode = h.identity.inode
    assert inode is not None
    r = run_cli("kill", "-s", "KILL", f"{k.pid}:{inode + 1}")
    assert r.returncode == 1 and "now names another process" in r.stderr, r
    assert is_alive(k.pid)
    r = run_cli("kill", "-e", "-v", "-s", "KILL", f"{k.pid}:{inode + 1}")
    assert r.returncode == 0 and "already gone" in r.stdout, r
    assert is_alive(k.pid)


@pytest.mark.timeout(60)
def test_tree_json(keepers):
    k = keepers("for i in range(3):\n    if os.fork() == 0:\n        block()\nready(); block()\n")
    r = run_cli("kill", "--tree", "--json", "-s", "KILL", str(k.pid))
    assert r.returncode == 0, r
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(objs) == 4 and objs[0]["pid"] == k.pid and objs[0]["parent"] is None
    assert all(o["parent"] == k.pid for o in objs[1:])
    assert all(o["outcome"] == "killed" for o in objs)


def test_usage_errors():
    for args, text in [
        (["kill"], "at least one TARGET"),
        (["kill", "-s", "NOPE", "1"], "unknown signal"),
        (["kill", "-s", "STOP", "1"], "cannot end one"),
        (["kill", "-s", "0", "1"], "invalid signal"),
        (["kill", "-s", "\u00b2", "1"], "unknown signal"),        # isdigit() but not int()
        (["kill", "-s", "\u0661\u0665", "1"], "unknown signal"),  # isdigit(), int() is 15
        (["kill", "-s", "RTMIN-1", "1"], "unknown signal"),       # glibc's own signal 33
        (["kill", "-s", "RTMAX+1", "1"], "unknown signal"),
        (["kill", "-s", "RTMIN+100", "1"], "invalid signal"),
        (["kill", "--grace", "-1", "1"], "invalid timeout"),
        (["kill", "x:y"], "invalid target"),
        (["kill", "--tree", "--cgroup", "/x"], "not allowed with"),
        (["kill", "-v", "--json", "1"], "not allowed with"),
    ]:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r)
        assert text in r.stderr, (args, r.stderr)


@pytest.mark.timeout(60)
def test_thread_id_is_an_error(keepers):
    k = keepers("import threading\nthreading.Thread(target=block, daemon=True).start()\n"
                "ready(); block()\n")
    (tid,) = [int(t) for t in os.listdir(f"/proc/{k.pid}/task") if int(t) != k.pid]
    r = run_cli("kill", "-s", "KILL", str(tid))
    assert r.returncode == 1 and f"is a thread of process {k.pid}" in r.stderr, r
    assert is_alive(k.pid)


def test_signal_names():
    from exithand._cmd.kill import signal_arg
    assert signal_arg("TERM") == signal.SIGTERM == signal_arg("sigterm") == signal_arg("15")
    assert signal_arg("RTMIN+2") == signal.SIGRTMIN + 2
    assert signal_arg("RTMAX-1") == signal.SIGRTMAX - 1
    assert signal_arg("sigrtmin") == signal.SIGRTMIN
    assert signal_arg("KILL") == 9


def test_help_explains():
    r = run_cli("kill", "--help")
    assert r.returncode == 0
    for word in ("--grace", "--mrelease", "--tree", "--cgroup", "PID:INODE", "124",
                 "examples:", "process_mrelease"):
        assert word in r.stdout, word
