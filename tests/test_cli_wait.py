"""``exithand wait``: real processes, the CLI run as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import env_with_src, require, run_cli

pytestmark = pytest.mark.timeout(60)


def start_cli(*args: str) -> subprocess.Popen[str]:
    """Start the CLI and return once every target is open and the wait has begun."""
    cli = subprocess.Popen([sys.executable, "-m", "exithand", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           env=env_with_src(EXITHAND_DEBUG="1"))
    assert cli.stderr is not None
    cli.warnings = []  # type: ignore[attr-defined]
    while True:
        line = cli.stderr.readline()
        assert line, "CLI exited before waiting"
        if line.startswith("exithand: debug: waiting for"):
            return cli
        cli.warnings.append(line)  # type: ignore[attr-defined]


def vanished_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_wait_verbose_reports_in_pwait_words(victim_factory) -> None:
    a, b = victim_factory(), victim_factory()
    cli = start_cli("wait", "-v", str(a.pid), str(b.pid))
    a.exit(7)
    assert cli.stdout is not None
    assert cli.stdout.readline() == f"{a.pid}: exited with status 7.\n"
    b.die_by(9)
    out, err = cli.communicate(timeout=30)
    assert out == f"{b.pid}: killed by signal 9.\n"
    assert cli.returncode == 0, err


def test_wait_json_and_pid_inode(victim_factory) -> None:
    import exithand
    v = victim_factory()
    with exithand.open(v.pid) as h:
        target = str(h.identity)
    cli = start_cli("wait", "--json", target)
    v.exit(3)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err
    rec = json.loads(out)
    assert rec["pid"] == v.pid and rec["exit_code"] == 3 and rec["known"] is True
    assert rec["signal"] is None and rec["core_dumped"] is False
    assert rec["source"] in ("pidfd_info", "connector", "zombie")
    assert isinstance(rec["seconds"], float)
    if ":" in target:
        assert rec["inode"] == int(target.split(":")[1])


def test_wait_zombie_returns_at_once(victim_factory) -> None:
    v = victim_factory(reap=False)
    v.exit(2)
    from conftest import wait_dead
    wait_dead(v.pid)
    res = run_cli("wait", "-v", str(v.pid))
    assert res.returncode == 0 and res.stdout == f"{v.pid}: exited with status 2.\n"


def test_wait_any_and_count(victim_factory) -> None:
    vs = [victim_factory() for _ in range(3)]
    cli = start_cli("wait", "--any", "-v", *(str(v.pid) for v in vs))
    vs[1].exit(0)
    out, _ = cli.communicate(timeout=30)
    assert cli.returncode == 0 and out == f"{vs[1].pid}: exited with status 0.\n"
    cli = start_cli("wait", "-e", "-c", "2", "-v", *(str(v.pid) for v in vs))
    # vs[1] is already gone (reaped): it counts at once; one more death completes the count
    vs[2].exit(1)
    out, _ = cli.communicate(timeout=30)
    assert cli.returncode == 0
    assert sorted(out.splitlines()) == sorted([
        f"{vs[1].pid}: exited (status unknown: not running when the wait started).",
                                               f"{vs[2].pid}: exited with status 1."])


def test_timeout_exits_124_and_prints_remaining(victim_factory) -> None:
    a, b = victim_factory(), victim_factory()
    a.exit(0)
    from conftest import wait_dead
    wait_dead(a.pid)
    res = run_cli("wait", "-e", "-t", "0.2", "-p", str(a.pid), str(b.pid))
    assert res.returncode == 124
    assert res.stdout.split() == [str(b.pid)]
    res = run_cli("wait", "-t", "0.1", str(b.pid))
    assert res.returncode == 124 and res.stdout == ""
    res = run_cli("wait", "-t", "0.1", "-p", "--json", str(b.pid))
    assert res.returncode == 124 and json.loads(res.stdout)["pid"] == b.pid


def test_exited_flag_and_vanished_pid() -> None:
    gone = vanished_pid()
    res = run_cli("wait", str(gone))
    assert res.returncode == 1 and "no such process" in res.stderr
    res = run_cli("wait", "-e", "-v", str(gone))
    assert res.returncode == 0
    assert res.stdout == f"{gone}: exited (status unknown: not running when the wait started).\n"


def test_duplicate_targets_waited_once(victim_factory) -> None:
    v = victim_factory()
    cli = start_cli("wait", "-v", str(v.pid), str(v.pid))
    assert "waiting for it once" in cli.warnings[0]  # type: ignore[attr-defined]
    v.exit(0)
    out, _ = cli.communicate(timeout=30)
    assert cli.returncode == 0 and out.count("exited with status 0") == 1


@pytest.mark.parametrize(("args", "code", "message"), [
    (["0"], 2, "invalid pid 0"),
    (["--", "-1"], 2, "invalid target '-1'"),
    (["-1"], 2, "invalid pid -1"),
    (["abc"], 2, "pid must be an integer"),
    ([str(2**64)], 2, "larger than the kernel's pid_max"),
    (["1:abc"], 2, "inode must be an integer"),
    (["1:0"], 2, "inode must be a positive integer"),
    # str.isdigit() is true for these, int() reads the first as 12 and fails on the second
    (["\u0661\u0662"], 2, "pid must be an integer"),
    (["\u00b2"], 2, "pid must be an integer"),
    (["1:\u00b2"], 2, "inode must be an integer"),
    (["+5"], 2, "pid must be an integer"),
    (["0x10"], 2, "pid must be an integer"),
    (["12:"], 2, "inode must be an integer"),
    ([":12"], 2, "pid must be an integer"),
    (["-t", "-1", "1"], 2, "must be >= 0"),
    (["-t", "nan", "1"], 2, "must be >= 0"),
    (["-t", "x", "1"], 2, "not a number"),
    (["-t", "inf", "1"], 2, "must be a finite number"),
    (["-t", "1e309", "1"], 2, "must be a finite number"),
    (["-c", "0", "1"], 2, "must be at least 1"),
    (["-c", "3", "1", "1"], 2, "more than the 2 target(s)"),
    (["--any", "-c", "2", "1", "1"], 2, "disagree"),
    ([], 2, "required"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else str(x))
def test_bad_input(args: list[str], code: int, message: str) -> None:
    res = run_cli("wait", *args)
    assert res.returncode == code, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_thread_id_is_an_error() -> None:
    ev = threading.Event()
    t = threading.Thread(target=ev.wait)
    t.start()
    try:
        res = run_cli("wait", str(t.native_id))
        assert res.returncode == 1
        assert f"is a thread of process {os.getpid()}" in res.stderr
    finally:
        ev.set()
        t.join()


def test_pid_inode_of_a_gone_process(victim_factory) -> None:
    import exithand
    v = victim_factory()
    with exithand.open(v.pid) as h:
        if h.identity.inode is None:
            require("pidfs")  # skips where the kernel has none; else our inode is missing
            pytest.fail("the kernel has pidfs inodes but the handle has none")
        wrong = f"{v.pid}:{h.identity.inode + 1}"
    res = run_cli("wait", wrong)
    assert res.returncode == 1 and "another process" in res.stderr
    assert run_cli("wait", "-e", wrong).returncode == 0


def test_ctrl_c_exits_130_without_traceback(victim_factory) -> None:
    v = victim_factory()
    cli = subprocess.Popen([sys.executable, "-m", "exithand", "wait", "-v", str(v.pid)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env_with_src(EXITHAND_DEBUG="1"))
    import signal
    assert cli.stderr is not None
    # EXITHAND_DEBUG=1 says when the targets are open and the wait begins: the sync point
    assert cli.stderr.readline() == "exithand: debug: waiting for 1 process(es)\n"
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 130
    assert "Traceback" not in err and out == ""


def test_help_explains() -> None:
    res = run_cli("wait", "--help")
    assert res.returncode == 0
    for word in ("PID:INODE", "124", "exited with status", "--any", "--exited", "examples"):
        assert word in res.stdout
    res = run_cli("--help")
    assert res.returncode == 0 and "wait" in res.stdout
    res = run_cli()
    assert res.returncode == 2
