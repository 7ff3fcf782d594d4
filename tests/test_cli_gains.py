"""What ``exithand wait``/``kill``/``watch``/``id`` gained next to the peer faces: durations
with units on every time option, ``-t 0`` = no timeout, ``/proc/PID`` targets, ``-p`` on every
way out, ``-v`` saying ``timeout``, ``-e`` and pids above pid_max, ``--version`` and the
subcommand's own usage, kill(1)'s signal forms and the "still waiting" note."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from facehelp import finish, start_waiting, wait_blocked

import exithand
from conftest import env_with_src, run_cli
from exithand._cmd._duration import DurationError, parse_duration

pytestmark = pytest.mark.timeout(60)


# ----- durations -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("0", 0.0), ("1", 1.0), ("1.5", 1.5), (".5", 0.5), ("250ms", 0.25), ("2s", 2.0),
    ("1.5m", 90.0), ("2h", 7200.0), ("1d", 86400.0), ("1e3", 1000.0), (" 3s ", 3.0),
    ("0ms", 0.0), ("1e18", 1e18),
])
def test_duration_table(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, why", [
    ("-1", "must be >= 0"), ("-1s", "must be >= 0"), ("nan", "must be >= 0"),
    ("inf", "finite"), ("1e309", "finite"), ("x", "not a number"), ("1x", "not a number"),
    ("ms", "not a number"), ("1_0", "not a number"), ("", "not a number"), ("1 d s", "not a"),
])
def test_duration_errors(text: str, why: str) -> None:
    with pytest.raises(DurationError, match=why):
        parse_duration(text)


# every time option of every command takes the same durations
TIME_OPTIONS = [("wait", "-t"), ("kill", "-t"), ("kill", "--grace"), ("watch", "-t")]


@pytest.mark.parametrize("cmd, opt", TIME_OPTIONS)
@pytest.mark.parametrize("value", ["2x", "-1", "inf"])
def test_every_time_option_rejects_bad_durations(cmd: str, opt: str, value: str) -> None:
    res = run_cli(cmd, opt, value, "1")
    assert res.returncode == 2 and "invalid duration" in res.stderr, res.stderr
    assert f"usage: exithand {cmd}" in res.stderr


@pytest.mark.parametrize("value", ["150ms", "0.15", "0.0025m"])
def test_wait_timeout_units(value: str) -> None:
    res = run_cli("wait", "-t", value, "1")
    assert (res.returncode, res.stdout) == (124, "")


def test_kill_grace_units(victim_factory) -> None:
    # a target that ignores TERM is killed once a grace given in ms runs out
    p = subprocess.Popen([sys.executable, "-c", "import signal,sys; signal.signal("
                          "signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
                          "signal.pause()"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "1\n"
        res = run_cli("kill", "-v", "--grace", "100ms", str(p.pid))
        assert res.returncode == 0 and "killed by signal 9 (escalated" in res.stdout, res
    finally:
        p.kill()
        p.wait()
        if p.stdout:
            p.stdout.close()


def test_zero_timeout_means_no_timeout(victim_factory) -> None:
    v = victim_factory()
    p, _ = start_waiting([sys.executable, "-m", "exithand", "wait", "-v", "-t", "0",
                          str(v.pid)])
    wait_blocked(p)
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.3)  # -t 0 used to time out at once
    v.exit(5)
    assert finish(p) == (0, f"{v.pid}: exited with status 5.\n", "")


def test_watch_zero_timeout_runs_until_interrupted(backend_availability) -> None:
    ok, why = backend_availability["connector"]
    if not ok:
        pytest.skip(f"proc connector unavailable: {why}")
    p = subprocess.Popen([sys.executable, "-m", "exithand", "watch", "-q", "-t", "0",
                          "--comm", "^no-such-comm-f10$"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env_with_src())
    wait_blocked(p)
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.3)
    p.send_signal(signal.SIGINT)
    rc, _out, err = finish(p)
    assert rc in (0, 130) and "Traceback" not in err


# ----- exithand wait ---------------------------------------------------------------------------

def test_wait_proc_targets(victim_factory) -> None:
    v = victim_factory()
    p, _ = start_waiting([sys.executable, "-m", "exithand", "wait", "-v", f"/proc/{v.pid}"])
    v.exit(3)
    assert finish(p) == (0, f"{v.pid}: exited with status 3.\n", "")


def test_wait_p_on_any_lists_the_living(victim_factory) -> None:
    a, b, c = victim_factory(), victim_factory(), victim_factory()
    p, _ = start_waiting([sys.executable, "-m", "exithand", "wait", "-o", "-p",
                          str(a.pid), str(b.pid), str(c.pid)])
    b.exit(0)
    lo, hi = sorted((a.pid, c.pid))
    assert finish(p) == (0, f"{lo}\n{hi}\n", "")


def test_wait_verbose_says_timeout(victim_factory) -> None:
    v = victim_factory()
    res = run_cli("wait", "-v", "-p", "-t", "100ms", str(v.pid))
    assert (res.returncode, res.stdout) == (124, f"timeout\n{v.pid}\n")


def test_wait_exited_and_pid_above_pid_max() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1
    res = run_cli("wait", "-e", "-v", str(beyond))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{beyond}: exited (status unknown: ")
    res = run_cli("wait", str(beyond))  # without -e it stays a usage error
    assert res.returncode == 2 and "pid_max" in res.stderr


@pytest.mark.parametrize("cmd", ["wait", "kill", "id", "watch", "info", "mount", "umount"])
def test_version_on_every_subcommand(cmd: str) -> None:
    res = run_cli(cmd, "--version")
    assert (res.returncode, res.stdout) == (0, f"exithand {exithand.__version__}\n")


def test_mistyped_option_shows_the_subcommand_usage() -> None:
    res = run_cli("wait", "--tiemout", "3", "1")
    assert res.returncode == 2
    assert res.stderr.startswith("usage: exithand wait ")
    assert "unrecognized arguments: --tiemout" in res.stderr


def test_top_level_help_lists_faces_and_id() -> None:
    res = run_cli("--help")
    assert res.returncode == 0
    for word in ("pwait", "waitpid", "pidwait", " id ", "wait"):
        assert word in res.stdout


# ----- exithand id -----------------------------------------------------------------------------

def test_id_prints_pid_inode(victim_factory) -> None:
    v = victim_factory()
    res = run_cli("id", str(v.pid), f"/proc/{os.getpid()}")
    assert res.returncode == 0, res.stderr
    with exithand.open(v.pid) as h, exithand.open(os.getpid()) as me:
        assert res.stdout == f"{h.identity}\n{me.identity}\n"
    p, _ = start_waiting([sys.executable, "-m", "exithand", "wait", "-v",
                          res.stdout.split()[0]])
    v.exit(1)
    assert finish(p)[:2] == (0, f"{v.pid}: exited with status 1.\n")


def test_id_of_a_gone_pid_is_an_error() -> None:
    t = subprocess.Popen(["true"])
    t.wait()
    res = run_cli("id", str(t.pid), "1")
    assert res.returncode == 1 and res.stdout.startswith("1:")
    assert f"{t.pid}:" in res.stderr


# ----- exithand kill: kill(1)'s words -------------------------------------------------------

@pytest.mark.parametrize("form", [["-9"], ["-KILL"], ["-SIGKILL"], ["-s", "KILL"],
                                  ["-s", "SIGKILL"], ["-s", "9"]])
def test_kill_signal_forms(form: list[str]) -> None:
    p = subprocess.Popen(["sleep", "60"])
    try:
        res = run_cli("kill", "-v", *form, str(p.pid))
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"{p.pid}: killed by signal 9 ")
    finally:
        p.kill()
        p.wait()


def test_kill_signal_form_after_options_and_targets() -> None:
    p = subprocess.Popen(["sleep", "60"])
    try:
        res = run_cli("kill", "-v", str(p.pid), "-HUP")
        assert res.returncode == 0 and res.stdout.startswith(f"{p.pid}: killed by signal 1 ")
    finally:
        p.kill()
        p.wait()


def test_kill_l_and_L_match_procps_kill() -> None:
    res = run_cli("kill", "-l")
    assert res.returncode == 0 and res.stdout.split()[:3] == ["HUP", "INT", "QUIT"]
    assert "KILL" in res.stdout.split() and len(res.stdout.split()) == 31
    table = run_cli("kill", "-L")
    assert table.returncode == 0 and table.stdout.startswith(" 1 HUP      2 INT ")
    assert run_cli("kill", "-l", "9").stdout == "KILL\n"
    assert run_cli("kill", "-l", "137").stdout == "KILL\n"  # a shell's 128+9
    assert run_cli("kill", "-l", "SIGTERM").stdout == "15\n"
    bad = run_cli("kill", "-l", "NOPE")
    assert bad.returncode == 2 and "unknown signal" in bad.stderr
    kill = shutil.which("kill")  # procps kill(1), when installed, prints the same
    if kill is not None and "procps" in subprocess.run([kill, "--version"],
                                                       capture_output=True, text=True).stdout:
        assert res.stdout == subprocess.run([kill, "-l"], capture_output=True,
                                            text=True).stdout
        assert table.stdout.splitlines() == [
            ln.rstrip() for ln in subprocess.run([kill, "-L"], capture_output=True,
                                                 text=True).stdout.splitlines()]


@pytest.mark.timeout(90)
def test_kill_says_what_it_still_waits_for() -> None:
    # a target ignoring TERM, no --grace, no -t: after ~3 s a note on stderr (not a tty: a
    # full line) names it and says how to escalate; then we do escalate, from outside
    p = subprocess.Popen([sys.executable, "-c", "import signal; signal.signal("
                          "signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
                          "signal.pause()"], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "1\n"
        k = subprocess.Popen([sys.executable, "-m", "exithand", "kill", str(p.pid)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env_with_src())
        assert k.stderr is not None
        line = k.stderr.readline()  # blocks until the note (about 3 s)
        assert line.startswith(f"exithand: still waiting for {p.pid} (")
        assert f"after SIGTERM); escalate with: exithand kill -s KILL {p.pid}" in line
        p.kill()
        _out, err = k.communicate(timeout=30)
        assert k.returncode == 0 and "Traceback" not in err
    finally:
        p.kill()
        p.wait()
        if p.stdout:
            p.stdout.close()
