"""The waitpid face against util-linux's own cases.

Ported from util-linux ``tests/ts/waitpid/waitpid`` (subtests normal, timeout, exited, count;
expected output in ``tests/expected/waitpid/``) and ``tests/ts/waitpid/pidfd-ino``
(one-pid-arg, mixed-pid-formats, count), plus the rules of ``misc-utils/waitpid.c`` and
``waitpid.1.adoc`` (each test names its source).  The upstream scripts order events with
``sleep 0.1``/``sleep 0.5``; here the victims exit on command, once the face is waiting.
util-linux waitpid is not installed here (Debian 12 ships util-linux 2.38 without it), so
these cases run against the face only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from facehelp import face_cmd, finish, run, start_waiting

import exithand
from conftest import env_with_src

pytestmark = pytest.mark.timeout(60)


def waitpid(*args: str) -> list[str]:
    return face_cmd("waitpid", *args)


def pin(pid: int) -> str:
    with exithand.open(pid) as h:
        return str(h.identity)  # PID:INODE, what util-linux getino -p prints


# ----- tests/ts/waitpid/waitpid --------------------------------------------------------------

def test_normal_waits_for_every_pid(victim_factory) -> None:
    # upstream "normal": waitpid BG1 BG2 returns only after both exited (output 3 2 1 4)
    a, b = victim_factory(), victim_factory()
    p, _ = start_waiting(waitpid("-v", str(a.pid), str(b.pid)))
    b.exit(0)
    assert p.stdout is not None
    assert p.stdout.readline() == f"PID {b.pid} finished\n"
    assert p.poll() is None  # a is alive: still waiting
    a.exit(0)
    rc, out, err = finish(p)
    assert (rc, out, err) == (0, f"PID {a.pid} finished\n", "")


def test_timeout_prints_timeout_expired_and_exits_3() -> None:
    # upstream "timeout": waitpid --verbose --timeout 0.1 1 -> "Timeout expired", exit 3
    res = run(waitpid("--verbose", "--timeout", "0.1", "1"))
    assert (res.returncode, res.stdout, res.stderr) == (3, "Timeout expired\n", "")


def test_exited_pid_above_pid_max_is_skipped() -> None:
    # upstream "exited": --verbose --exited 2147483647; expected/waitpid/waitpid-exited.err
    res = run(waitpid("--verbose", "--exited", "2147483647"))
    assert (res.returncode, res.stdout) == (0, "")
    assert res.stderr == "waitpid: PID 2147483647 has exited, skipping\n"


def test_count_returns_after_that_many_exits(victim_factory) -> None:
    # upstream "count": --count 1 1 BG1 returns when BG1 exits although pid 1 lives on
    v = victim_factory()
    p, _ = start_waiting(waitpid("--count", "1", "1", str(v.pid)))
    v.exit(0)
    assert finish(p) == (0, "", "")


# ----- tests/ts/waitpid/pidfd-ino --------------------------------------------------------------

def test_pidfd_ino_one_pid_arg(victim_factory) -> None:
    v = victim_factory()
    p, _ = start_waiting(waitpid(pin(v.pid)))
    v.exit(0)
    assert finish(p) == (0, "", "")


def test_pidfd_ino_mixed_pid_formats(victim_factory) -> None:
    a, b = victim_factory(), victim_factory()
    p, _ = start_waiting(waitpid(pin(a.pid), str(b.pid)))
    b.exit(0)
    a.exit(0)
    assert finish(p) == (0, "", "")


def test_pidfd_ino_count(victim_factory) -> None:
    v = victim_factory()
    p, _ = start_waiting(waitpid("-c", "1", "1", pin(v.pid)))
    v.exit(0)
    assert finish(p) == (0, "", "")


# ----- misc-utils/waitpid.c and waitpid.1.adoc -------------------------------------------------

def gone_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("args, err", [
    ([], "waitpid: no PIDs specified\n"),
    (["-c", "3", "1", "1"], "waitpid: can't wait for 3 of 2 PIDs\n"),
    (["-c", "1", "-e", "1"], "waitpid: mutually exclusive arguments: --exited --count\n"),
    (["-c", "0", "1"], "waitpid: invalid count: '0': Numerical result out of range\n"),
    (["-c", "x", "1"], "waitpid: invalid count: 'x'\n"),
    (["-t", "x", "1"], "waitpid: invalid timeout: 'x'\n"),
    (["-t", "5s", "1"], "waitpid: invalid timeout: '5s'\n"),  # strtod_or_err: no units
    (["abc"], "waitpid: failed to parse PID argument 'abc': Invalid argument\n"),
    (["0"], "waitpid: failed to parse PID argument '0': Numerical result out of range\n"),
    (["1:0"], "waitpid: failed to parse PID argument '1:0': Numerical result out of range\n"),
    (["1:x"], "waitpid: failed to parse PID argument '1:x': Invalid argument\n"),
    (["-x", "1"], "waitpid: invalid option -- 'x'\nTry 'waitpid --help' for more "
                  "information.\n"),
    (["--bogus", "1"], "waitpid: unrecognized option '--bogus'\nTry 'waitpid --help' for "
                       "more information.\n"),
    (["-t"], "waitpid: option requires an argument -- 't'\nTry 'waitpid --help' for more "
             "information.\n"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_errors_exit_1_with_util_linux_words(args: list[str], err: str) -> None:
    res = run(waitpid(*args))
    assert (res.returncode, res.stdout, res.stderr) == (1, "", err)


def test_gone_pid_is_an_error_without_exited() -> None:
    pid = gone_pid()
    res = run(waitpid(str(pid)))
    assert (res.returncode, res.stderr) == (1, f"waitpid: could not open PID {pid}: "
                                               "No such process\n")
    res = run(waitpid("-e", str(pid)))  # -e: skipped silently (the note needs -v)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_stale_pid_inode_counts_as_exited(victim_factory) -> None:
    # pidfd-ino: a PID:INODE whose inode does not match is gone (ul_get_valid_pidfd)
    v = victim_factory()
    ident = pin(v.pid)
    pid, ino = ident.split(":")
    stale = f"{pid}:{int(ino) + 1}"
    res = run(waitpid("-v", "-e", stale))
    assert res.returncode == 0
    assert res.stderr == (f"waitpid: pidfd inode {int(ino) + 1} not found for PID {pid}\n"
                          f"waitpid: PID {pid} has exited, skipping\n")
    res = run(waitpid(stale))
    assert res.returncode == 1 and "could not open PID" in res.stderr


def test_zero_timeout_means_no_timeout(victim_factory) -> None:
    # waitpid.c open_timeoutfd(): a zero timeout arms no timer
    v = victim_factory()
    p, _ = start_waiting(waitpid("-t", "0", str(v.pid)))
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.3)  # would have exited 3 at once if 0 were a deadline
    v.exit(0)
    assert finish(p) == (0, "", "")


def test_help_and_version_go_to_stdout() -> None:
    res = run(waitpid("--help"))
    assert res.returncode == 0 and "--timeout=<timeout>" in res.stdout and res.stderr == ""
    res = run(waitpid("-V"))
    assert res.returncode == 0 and res.stdout.startswith("waitpid from ")


def test_zombie_counts_as_dead(victim_factory) -> None:
    v = victim_factory(reap=False)
    v.exit(3)  # stays a zombie: its keeper does not reap it
    res = run(waitpid("-v", str(v.pid)))
    assert (res.returncode, res.stdout) == (0, f"PID {v.pid} finished\n")


def test_symlink_named_waitpid_runs_the_face(tmp_path: Path) -> None:
    # busybox-style dispatch on argv[0]; the console script does what this launcher does
    link = tmp_path / "waitpid"
    link.write_text(f"#!{sys.executable}\nimport sys\nfrom exithand.cli import main\n"
                    "sys.exit(main())\n")
    link.chmod(0o755)
    res = subprocess.run([str(link), "--verbose", "--timeout", "0.1", "1"], capture_output=True,
                         text=True, env=env_with_src(), timeout=30)
    assert (res.returncode, res.stdout) == (3, "Timeout expired\n")


def test_interrupted_exits_130(victim_factory) -> None:
    v = victim_factory()
    p, _ = start_waiting(waitpid(str(v.pid)))
    os.kill(p.pid, signal.SIGINT)
    rc, _out, err = finish(p)
    assert rc == 130 and "Traceback" not in err
