"""The pwait face against FreeBSD's own cases.

Ported from FreeBSD ``bin/pwait/tests/pwait_test.sh`` (test cases basic, time_unit,
timeout_trigger_timeout, timeout_no_timeout, timeout_many, or_flag) and the rules of
``bin/pwait/pwait.c`` (the version with ``-p``) and ``pwait.1``; each test names its source.
The upstream cases order events with ``sleep N &`` and bound them with ``timeout(1)``; here
victims exit on command once the face is waiting, and the upstream timeouts of 5-12 s are
scaled down (the rule tested is the same).  FreeBSD pwait does not run on Linux, so these
cases run against the face only.
"""

from __future__ import annotations

import subprocess
from typing import Optional

import pytest
from facehelp import face_cmd, finish, run, start_waiting, wait_blocked

pytestmark = pytest.mark.timeout(60)


def pwait(*args: str) -> list[str]:
    return face_cmd("pwait", *args)


def gone_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# ----- pwait_test.sh: basic --------------------------------------------------------------------

def test_basic_waits_for_all(victim_factory) -> None:
    a, b, c = victim_factory(), victim_factory(), victim_factory()
    p, _ = start_waiting(pwait(str(a.pid), str(b.pid), str(c.pid)))
    for v in (a, b):
        v.exit(0)
    c.exit(0)
    assert finish(p) == (0, "", "")
    for v in (a, b, c):  # upstream then checks that kill -0 fails: each one is dead
        assert _state(v.pid) in ("Z", None)


def _state(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# ----- pwait_test.sh: time_unit ----------------------------------------------------------------

@pytest.mark.parametrize("timeout, err", [
    ("1d", "pwait: timeout unit\n"),       # upstream: d is not a unit of pwait
    ("-1", "pwait: timeout value\n"),
    ("100000001", "pwait: timeout value\n"),
    ("1x", "pwait: timeout unit\n"),
    ("1ss", "pwait: timeout unit\n"),      # pwait.c: nothing may follow the unit
    ("x", "pwait: timeout value\n"),
    ("1.5ms", "pwait: timeout unit\n"),
])
def test_time_unit_errors_exit_65(timeout: str, err: str) -> None:
    res = run(pwait("-t", timeout, "1"))
    assert (res.returncode, res.stdout, res.stderr) == (65, "", err)


@pytest.mark.parametrize("timeout", ["100000000", "1h", "1.5h", "1m", "1.5m", "0"])
def test_time_unit_long_values_keep_waiting(timeout: str) -> None:
    # upstream: these "are expected to timeout from the timeout utility rather than pwait -t"
    # (exit 143); "0" sets no timer at all
    p, _ = start_waiting(pwait("-t", timeout, "1"))
    wait_blocked(p)
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.3)
    p.terminate()
    rc, out, _err = finish(p)
    assert rc == -15 and out == ""


@pytest.mark.parametrize("timeout", ["1s", "1.5s", "1", "1.5", "0.5"])
def test_time_unit_short_values_time_out_124(timeout: str) -> None:
    res = run(pwait("-t", timeout, "1"))
    assert (res.returncode, res.stdout, res.stderr) == (124, "", "")


# ----- pwait_test.sh: timeout_trigger_timeout, timeout_no_timeout, timeout_many ----------------

def test_timeout_trigger_timeout(victim_factory) -> None:
    v = victim_factory()
    res = run(pwait("-t", "0.5", str(v.pid)))
    assert (res.returncode, res.stdout, res.stderr) == (124, "", "")


def test_timeout_no_timeout(victim_factory) -> None:
    v = victim_factory()
    p, _ = start_waiting(pwait("-t", "30", str(v.pid)))
    v.exit(0)
    assert finish(p) == (0, "", "")


def test_timeout_many(victim_factory) -> None:
    a, b, c = victim_factory(), victim_factory(), victim_factory()
    p, _ = start_waiting(pwait("-t", "1", str(a.pid), str(b.pid), str(c.pid)))
    a.exit(0)  # one of three ends during the wait; the others outlive the timeout
    assert finish(p) == (124, "", "")


# ----- pwait_test.sh: or_flag ------------------------------------------------------------------

def test_or_flag(victim_factory) -> None:
    a, b, c = (victim_factory(reap=True) for _ in range(3))
    p, _ = start_waiting(pwait("-o", "-v", str(a.pid), str(b.pid), str(c.pid)))
    a.exit(0)
    assert finish(p) == (0, f"{a.pid}: exited with status 0.\n", "")
    a.reap()
    # a is gone now: warned about, and with -o that is the end
    res = run(pwait("-o", str(a.pid), str(b.pid), str(c.pid)))
    assert (res.returncode, res.stdout, res.stderr) == (0, "", f"pwait: {a.pid}: No such "
                                                                "process\n")
    p, _ = start_waiting(pwait("-o", str(b.pid), str(c.pid)))
    b.exit(0)
    assert finish(p) == (0, "", "")
    b.reap()
    res = run(pwait("-o", str(b.pid), str(c.pid)))
    assert (res.returncode, res.stderr) == (0, f"pwait: {b.pid}: No such process\n")
    p, _ = start_waiting(pwait("-o", "-v", str(c.pid)))
    c.exit(0)
    assert finish(p) == (0, f"{c.pid}: exited with status 0.\n", "")
    c.reap()
    res = run(pwait("-o", str(c.pid)))
    assert (res.returncode, res.stderr) == (0, f"pwait: {c.pid}: No such process\n")


# ----- pwait.c / pwait.1 -----------------------------------------------------------------------

@pytest.mark.parametrize("args, err", [
    ([], "usage: pwait [-t timeout] [-oprv] pid ...\n"),
    (["-x", "1"], "pwait: illegal option -- x\nusage: pwait [-t timeout] [-oprv] pid ...\n"),
    (["-t"], "pwait: option requires an argument -- t\nusage: pwait [-t timeout] [-oprv] "
             "pid ...\n"),
    (["-h"], "pwait: illegal option -- h\nusage: pwait [-t timeout] [-oprv] pid ...\n"),
])
def test_usage_exits_64(args: list[str], err: str) -> None:
    res = run(pwait(*args))
    assert (res.returncode, res.stdout, res.stderr) == (64, "", err)


def test_bad_and_gone_pids_are_warned_and_ignored(victim_factory) -> None:
    v = victim_factory()
    gone = gone_pid()
    p, before = start_waiting(pwait("abc", "-5", "99999999", str(gone), str(v.pid)))
    assert before == ["pwait: abc: bad process id\n", "pwait: -5: bad process id\n",
                      "pwait: 99999999: bad process id\n", f"pwait: {gone}: No such process\n"]
    v.exit(0)
    assert finish(p) == (0, "", "")


def test_only_bad_pids_exit_0() -> None:
    res = run(pwait("abc", str(gone_pid())))
    assert res.returncode == 0 and res.stdout == ""
    assert res.stderr.startswith("pwait: abc: bad process id\n")


def test_own_pid_is_skipped() -> None:
    # pwait cannot know its own pid in advance from a shell; the face's own pid is the
    # python process: run it through a tiny shell that execs it, so $$ is its pid
    import sys

    from conftest import env_with_src
    res = subprocess.run(["sh", "-c", f'exec "{sys.executable}" -m exithand pwait -t 0.2 $$'],
                         capture_output=True, text=True, env=env_with_src(), timeout=30)
    assert res.returncode == 0
    assert res.stderr.endswith(": skipping my own pid\n") and res.stderr.startswith("pwait: ")


def test_proc_prefix_and_duplicates(victim_factory) -> None:
    v = victim_factory()
    p, _ = start_waiting(pwait("-v", f"/proc/{v.pid}", str(v.pid)))
    v.exit(4)
    assert finish(p) == (0, f"{v.pid}: exited with status 4.\n", "")


def test_verbose_timeout_and_p_on_timeout(victim_factory) -> None:
    a, b = victim_factory(), victim_factory()
    lo, hi = sorted((a.pid, b.pid))
    res = run(pwait("-v", "-p", "-t", "0.2", str(hi), str(lo)))
    assert (res.returncode, res.stdout, res.stderr) == (124, f"timeout\n{lo}\n{hi}\n", "")


def test_p_with_or_flag_lists_the_living(victim_factory) -> None:
    a, b, c = victim_factory(), victim_factory(), victim_factory()
    p, _ = start_waiting(pwait("-o", "-p", str(a.pid), str(b.pid), str(c.pid)))
    b.exit(0)
    rest = sorted((a.pid, c.pid))
    assert finish(p) == (0, f"{rest[0]}\n{rest[1]}\n", "")


def test_p_after_everything_ended_prints_nothing(victim_factory) -> None:
    v = victim_factory()
    p, _ = start_waiting(pwait("-p", str(v.pid)))
    v.exit(0)
    assert finish(p) == (0, "", "")


def test_killed_by_signal_words(victim_factory) -> None:
    v = victim_factory(reap=False)
    p, _ = start_waiting(pwait("-v", str(v.pid)))
    v.die_by(9)
    assert finish(p) == (0, f"{v.pid}: killed by signal 9.\n", "")


def test_zombie_counts_as_dead(victim_factory) -> None:
    v = victim_factory(reap=False)
    v.exit(2)
    res = run(pwait("-v", str(v.pid)))
    assert (res.returncode, res.stdout) == (0, f"{v.pid}: exited with status 2.\n")


def test_options_end_at_the_first_pid(victim_factory) -> None:
    # BSD getopt: "-v" after a pid is an operand, i.e. a bad process id
    v = victim_factory()
    p, before = start_waiting(pwait(str(v.pid), "-v"))
    assert before == ["pwait: -v: bad process id\n"]
    v.exit(0)
    assert finish(p) == (0, "", "")


# ----- pwait_reap.c (2026): -r waits for the reap ----------------------------------------------
# Upstream forks the target (exit 0 when a pipe closes) and pwait as siblings: the target is
# not pwait's child.  It syncs by sending pwait SIGINFO, which makes FreeBSD pwait print the
# pids it still waits for on stderr; Linux has no SIGINFO, so here the sync is the face's
# EXITHAND_DEBUG line and its sleep in poll.  (Upstream's pwait_normal calls the -r variant
# too, pwait_reap_test(true), a slip; the case its description names is ported here.)

def test_reap_normal_returns_before_the_reap(victim_factory) -> None:
    """pwait_normal: "pwait returns before the target process has been reaped"."""
    v = victim_factory(reap=False)
    p, _ = start_waiting(pwait("-v", str(v.pid)))
    v.exit(0)  # a zombie now; its parent (the keeper) has not reaped it
    assert finish(p) == (0, f"{v.pid}: exited with status 0.\n", "")
    assert _state(v.pid) == "Z"  # pwait returned while it was unreaped
    v.reap()


def test_reap_r_waits_for_the_reap(victim_factory) -> None:
    """pwait_reap: "pwait -r does not return until the target process has been reaped"."""
    v = victim_factory(reap=False)
    p, _ = start_waiting(pwait("-rv", str(v.pid)))
    v.exit(0)
    _wait_zombie(v.pid)
    wait_blocked(p)  # asleep in poll although the target is dead
    assert p.poll() is None, "pwait -r returned before the reap"
    v.reap()
    assert finish(p) == (0, f"{v.pid}: exited with status 0.\n", "")


def test_reap_r_zombie_already_dead(victim_factory) -> None:
    """The issue's case: a zombie non-child.  pwait returns at once; pwait -r waits until the
    parent reaps it (bounded here by -t: exit 124 while it stays a zombie)."""
    v = victim_factory(reap=False)
    v.exit(3)
    _wait_zombie(v.pid)
    res = run(pwait("-v", str(v.pid)))
    assert (res.returncode, res.stdout) == (0, f"{v.pid}: exited with status 3.\n")
    res = run(pwait("-r", "-v", "-t", "0.3", str(v.pid)))
    assert (res.returncode, res.stdout) == (124, "timeout\n")
    p, _ = start_waiting(pwait("-r", "-v", str(v.pid)))
    v.reap()
    assert finish(p) == (0, f"{v.pid}: exited with status 3.\n", "")


def test_reap_r_with_or_and_p(victim_factory) -> None:
    """-r combines with -o and -p: the first reaped one ends it; -p lists the unreaped."""
    a, b = victim_factory(reap=False), victim_factory(reap=False)
    p, _ = start_waiting(pwait("-r", "-o", "-p", "-v", str(a.pid), str(b.pid)))
    a.exit(1)
    b.exit(2)
    _wait_zombie(a.pid)
    _wait_zombie(b.pid)
    wait_blocked(p)
    assert p.poll() is None
    b.reap()
    assert finish(p) == (0, f"{b.pid}: exited with status 2.\n{a.pid}\n", "")
    a.reap()


def test_reap_r_gone_pid_counts_as_reaped() -> None:
    res = run(pwait("-r", "-v", str(gone_pid())))
    assert res.returncode == 0 and "No such process" in res.stderr


def test_reap_r_procpoll_backend(victim_factory, monkeypatch) -> None:
    """Without pidfds (procpoll backend, forced) the reap is asked for on a backoff: same
    behaviour, just polled."""
    monkeypatch.setenv("EXITHAND_BACKEND", "procpoll")
    v = victim_factory(reap=False)
    p, _ = start_waiting(pwait("-rv", str(v.pid)))
    v.exit(0)
    _wait_zombie(v.pid)
    _wait_napping(p)  # between two looks at the reap: a sleep, not a poll on a pidfd
    assert p.poll() is None
    v.reap()
    assert finish(p) == (0, f"{v.pid}: exited with status 0.\n", "")


def _wait_napping(p: subprocess.Popen[str]) -> None:
    import os
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/wchan") as f:
                wchan = f.read()
            # time.sleep: clock_nanosleep on Python 3.11+, select() before (3.9, 3.10)
            if any(w in wchan for w in ("nanosleep", "poll_schedule")):
                return
        except OSError:
            pass
        os.sched_yield()


def _wait_zombie(pid: int) -> None:
    import os
    fd = os.pidfd_open(pid)  # readable once dead (zombie): the kernel's own event
    try:
        import select
        assert select.select([fd], [], [], 30)[0]
    finally:
        os.close(fd)
