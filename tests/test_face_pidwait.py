"""The pidwait face against procps' own cases, and the same cases against procps' binary.

Ported from procps-ng ``testsuite/pwait.test/pwait.exp`` (every case) and
``testsuite/pgrep.test/pgrep.exp`` (the selection cases, as pidwait runs them: ``-c`` prints
the number of matches and ``-e`` one ``waiting for NAME (pid N)`` line per match, then it
waits), plus the rules of ``src/pgrep.c`` (pidwait mode) and ``man/pgrep.1``.  Each case runs
against the face and, where procps' ``pidwait`` is installed (Debian 12: procps 4.0.2), against
that binary too, which proves the expectation; a case the installed binary cannot run says why.

As upstream's ``make_testproc``, the test processes are copies of sleep(1) under a unique
name, so other processes on the machine never match.  Every run waits for the test
processes; they are killed once the program sleeps in epoll (its kernel wait channel).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest
from facehelp import spawned, wait_blocked
from facehelp import testproc_binary as make_testproc

from conftest import env_with_src

pytestmark = pytest.mark.timeout(60)

PROCPS = shutil.which("pidwait")


def _procps_version() -> str:
    if PROCPS is None:
        return ""
    return subprocess.run([PROCPS, "-V"], capture_output=True, text=True).stdout


@pytest.fixture(params=["face", "procps"])
def impl(request: pytest.FixtureRequest) -> str:
    if request.param == "procps" and PROCPS is None:
        pytest.skip("procps pidwait is not installed")
    return str(request.param)


def cmd(impl: str, *args: str) -> list[str]:
    if impl == "face":
        return [sys.executable, "-m", "exithand", "pidwait", *args]
    return ["pidwait", *args]  # run as PROCPS with argv[0] "pidwait", as from a shell


class Testprocs:
    __test__ = False

    def __init__(self, path: str, comm: str, procs: list[subprocess.Popen[bytes]]) -> None:
        self.path, self.comm, self.procs = path, comm, procs
        self.pids = [p.pid for p in procs]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()


@pytest.fixture
def testprocs(tmp_path: Path) -> Iterator[Testprocs]:
    """Two processes named like nothing else: ``COMM 1001`` and ``COMM 1002``."""
    with make_testproc(tmp_path) as (path, comm), \
            spawned([path, "1001"], [path, "1002"]) as procs:
        yield Testprocs(path, comm, procs)


def pidwait(impl: str, tp: Optional[Testprocs], *args: str,
            stdin: Optional[str] = None) -> tuple[int, str, str]:
    """Run pidwait; once it sleeps in epoll (or has ended), end the test processes."""
    p = subprocess.Popen(cmd(impl, *args), executable=PROCPS if impl == "procps" else None,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         text=True, env=env_with_src())
    if stdin is not None:
        assert p.stdin is not None
        p.stdin.write(stdin)
        p.stdin.close()
        p.stdin = None
    wait_blocked(p)
    if tp is not None:
        tp.kill()
    out, err = p.communicate(timeout=30)
    return p.returncode, out, err


def echo(tp: Testprocs, *which: int, name: Optional[str] = None) -> str:
    return "".join(f"waiting for {tp.comm if name is None else name} (pid {tp.pids[i]})\n"
                   for i in which)


def pidfile_name(impl: str, tp: Testprocs) -> str:
    """The name -e shows for a match made without a pattern (-F alone).  procps 4.0.2 prints
    an empty one (pgrep.c fills the name only when a pattern or -l/-a asks for it): a peer
    bug; the face prints the name, as the man page's "display PIDs" with names intends."""
    return "" if impl == "procps" else tp.comm


# ----- testsuite/pwait.test/pwait.exp ----------------------------------------------------------

def test_no_arguments(impl: str) -> None:
    rc, out, err = pidwait(impl, None)
    assert (rc, out) == (2, "")
    assert err.startswith("pidwait: no matching criteria specified\n")


def _not_matching(tp: Testprocs) -> dict[str, list[str]]:
    return {
        "gid": ["-G", str(os.getgid() + 1), tp.comm],
        "ppid": ["-P", str(os.getpid() + 1), tp.comm],
        "sid": ["-s", "-1", tp.comm],
        "tty": ["-t", "glass", tp.comm],
        "uid": ["-U", str(os.getuid() + 1), tp.comm],
    }


@pytest.mark.parametrize("case", ["gid", "ppid", "sid", "tty", "uid"])
def test_not_matching_is_blank(impl: str, testprocs: Testprocs, case: str) -> None:
    rc, out, err = pidwait(impl, testprocs, *_not_matching(testprocs)[case])
    assert (rc, out, err) == (1, "", "")


# ----- testsuite/pgrep.test/pgrep.exp, as pidwait runs them ------------------------------------

def _session(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[3])


def _cgroup(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].rstrip("\n")
    pytest.skip("no cgroup v2 here")


BOTH, FIRST, SECOND, NONE = (0, 1), (0,), (1,), ()


def _selection_cases(tp: Testprocs) -> dict[str, tuple[list[str], tuple[int, ...]]]:
    trim = tp.comm[:-1]
    return {
        "find both": ([tp.comm], BOTH),
        "full command line": (["-f", rf"{tp.path}\s+1001"], FIRST),
        "matching gid": (["-G", str(os.getgid()), tp.comm], BOTH),
        "newest": (["-n", tp.comm], SECOND),
        "oldest": (["-o", tp.comm], FIRST),
        "parent": (["-P", str(os.getpid()), tp.comm], BOTH),
        "own sid": (["-s", str(_session(tp.pids[0])), tp.comm], BOTH),
        "bogus sid": (["-s", str(_session(tp.pids[0]) + 1), tp.comm], NONE),
        "euid": (["-u", str(os.geteuid()), tp.comm], BOTH),
        "not euid": (["-u", str(os.geteuid() + 1), tp.comm], NONE),
        "uid": (["-U", str(os.getuid()), tp.comm], BOTH),
        "substring": ([trim], BOTH),
        "exact": (["-x", tp.comm], BOTH),
        "exact substring": (["-x", trim], NONE),
        # from pgrep.1 (not in pgrep.exp)
        "ignore case": (["-i", tp.comm.upper()], BOTH),
        "pgroup 0 is ours": (["-g", "0", tp.comm], BOTH),
        "runstate S": (["-r", "S", tp.comm], BOTH),
        "runstate D": (["-r", "D", tp.comm], NONE),
        "older than a day": (["-O", "86400", tp.comm], NONE),
        "cgroup": (["--cgroup", _cgroup(tp.pids[0]), tp.comm], BOTH),
        "ns": (["--ns", str(os.getpid()), "--nslist", "pid,mnt", tp.comm], BOTH),
        "user name": (["-u", "root" if os.geteuid() == 0 else str(os.geteuid()), tp.comm],
                      BOTH),
        "regex alternation": ([f"^({tp.comm}|nomatch)$"], BOTH),
        "posix class": ([f"^{tp.comm[:4]}[[:xdigit:]]+$"], BOTH),
    }


CASES = ["find both", "full command line", "matching gid", "newest", "oldest", "parent",
         "own sid", "bogus sid", "euid", "not euid", "uid", "substring", "exact",
         "exact substring", "ignore case", "pgroup 0 is ours", "runstate S", "runstate D",
         "older than a day", "cgroup", "ns", "user name", "regex alternation", "posix class"]


@pytest.mark.parametrize("case", CASES)
def test_selection(impl: str, testprocs: Testprocs, case: str) -> None:
    args, which = _selection_cases(testprocs)[case]
    rc, out, err = pidwait(impl, testprocs, "-c", "-e", *args)
    assert (rc, out, err) == (0 if which else 1, f"{len(which)}\n" + echo(testprocs, *which),
                              "")


def test_long_pattern_warns(impl: str) -> None:
    # pgrep.exp: "pgrep with long non-matching pattern gives warning"
    rc, out, err = pidwait(impl, None, "gnome-session-bi")
    assert (rc, out) == (1, "")
    assert err == ("pidwait: pattern that searches for process name longer than 15 characters "
                   "will result in zero matches\nTry `pidwait -f' option to match against the "
                   "complete command line.\n")


def test_pidfile(impl: str, testprocs: Testprocs, tmp_path: Path) -> None:
    pf = tmp_path / "pid"
    pf.write_text(f"{testprocs.pids[1]}\n")
    rc, out, err = pidwait(impl, testprocs, "-e", "-F", str(pf))
    assert (rc, out, err) == (0, echo(testprocs, 1, name=pidfile_name(impl, testprocs)), "")


def test_pidfile_not_locked(impl: str, testprocs: Testprocs, tmp_path: Path) -> None:
    pf = tmp_path / "pid"
    pf.write_text(f"{testprocs.pids[1]}\n")
    rc, out, err = pidwait(impl, testprocs, "-L", "-F", str(pf))
    assert (rc, out) == (1, "")
    assert err == "pidwait: pidfile not valid\nTry `pidwait --help' for more information.\n"


def test_pidfile_locked(impl: str, testprocs: Testprocs, tmp_path: Path) -> None:
    import fcntl
    pf = tmp_path / "pid"
    pf.write_text(f"{testprocs.pids[0]}\n")
    with open(pf) as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # a daemon holding its pid file
        rc, out, err = pidwait(impl, testprocs, "-e", "-L", "-F", str(pf))
    assert (rc, out, err) == (0, echo(testprocs, 0, name=pidfile_name(impl, testprocs)), "")


@pytest.mark.parametrize("args, code, first", [
    (["-n", "-o", "x"], 2, ""),
    (["-U", "no-such-user-eh", "x"], 2, "pidwait: invalid user name: no-such-user-eh"),
    (["-G", "no-such-group-eh", "x"], 2, "pidwait: invalid group name: no-such-group-eh"),
    (["-P", "abc", "x"], 2, "pidwait: not a number: abc"),
    (["a("], 2, r"pidwait: regex error: Unmatched ( or \("),
    (["-L", "x"], 2, "pidwait: -L without -F makes no sense"),
    (["a", "b"], 2, "pidwait: only one pattern can be provided"),
    (["-v", "x"], 2, "pidwait: invalid option -- 'v'"),   # -v is pgrep's only
    (["-F", "/nonexistent/eh"], 1, "pidwait: pidfile not valid"),
    (["--bogus"], 2, "pidwait: unrecognized option '--bogus'"),
    (["--nslist", "bogus", "x"], 2, ""),
], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_usage_errors(impl: str, args: list[str], code: int, first: str) -> None:
    rc, out, err = pidwait(impl, None, *args)
    assert (rc, out) == (code, "")
    assert err.split("\n")[0] == first


def test_help_goes_to_stdout(impl: str) -> None:
    rc, out, err = pidwait(impl, None, "-h")
    assert rc == 0 and err == "" and " -F, --pidfile <file>      read PIDs from file" in out


# ----- beyond procps 4.0.2 (the face only) -----------------------------------------------------

def test_pid_list_face_only(testprocs: Testprocs) -> None:
    # procps 4.0.3+ (src/pgrep.c: -p, --pid); the installed 4.0.2 rejects -p
    gone = subprocess.Popen(["true"])
    gone.wait()
    rc, out, err = pidwait("face", testprocs, "-e", "-p", f"{gone.pid},{testprocs.pids[0]}")
    assert (rc, out, err) == (0, echo(testprocs, 0), "")


def test_pid_and_pidfile_conflict_face_only(tmp_path: Path) -> None:
    # pgrep.exp: "pgrep pid and pidfile opption conflict" (needs -p: procps 4.0.3+)
    rc, out, err = pidwait("face", None, "-p", "42", "-F", "/dev/null")
    assert (rc, out) == (1, "")
    assert err.startswith("pidwait: Cannot use pidfile and pid option together\n")


def test_pidfile_from_stdin_face_only(testprocs: Testprocs) -> None:
    # "-F -": procps 4.0.2 says "pidfile not valid"; the face reads standard input
    rc, out, err = pidwait("face", testprocs, "-e", "-F", "-", stdin=f"{testprocs.pids[1]}\n")
    assert (rc, out, err) == (0, echo(testprocs, 1), "")


def test_zombie_match_counts_as_dead(tmp_path: Path) -> None:
    with make_testproc(tmp_path) as (path, comm), spawned([path, "1001"]) as procs:
        procs[0].kill()
        while _state(procs[0].pid) != "Z":  # killed, not reaped: a zombie named comm
            os.sched_yield()
        res = subprocess.run(cmd("face", "-e", "-x", comm), capture_output=True, text=True,
                             env=env_with_src(), timeout=30)
        assert (res.returncode, res.stdout) == (0, f"waiting for {comm} (pid {procs[0].pid})\n")


def _state(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_debug_line_and_symlink_dispatch(testprocs: Testprocs, tmp_path: Path) -> None:
    link = tmp_path / "pidwait"
    link.write_text(f"#!{sys.executable}\nimport sys\nfrom exithand.cli import main\n"
                    "sys.exit(main())\n")
    link.chmod(0o755)
    p = subprocess.Popen([str(link), "-x", testprocs.comm], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=env_with_src(EXITHAND_DEBUG="1"))
    assert p.stderr is not None
    assert p.stderr.readline() == "exithand: debug: waiting for 2 process(es)\n"
    testprocs.kill()
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out, err) == (0, "", "")


# ----- reuse race: a match dies and its number is reused before the wait starts -----------------

REUSE = textwrap.dedent("""
    import ctypes, json, os, signal, sys, time
    from exithand._cmd.faces import pidwait as face_pidwait, procscan as _procscan

    try:
        with open("/proc/sys/kernel/pid_max", "w") as f:
            f.write("340")
    except OSError as e:
        print(json.dumps({"skip": f"cannot set pid_max in a new pid namespace: {e}"}))
        sys.exit(0)
    libc = ctypes.CDLL(None, use_errno=True)

    def spawn(name):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            if name:
                libc.prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: the comm pidwait sees
            os.write(ready_w, b"x")
            os.read(r, 1)
            os._exit(0)
        os.close(r)
        os.read(ready_r, 1)
        return pid, w

    ready_r, ready_w = os.pipe()

    def set_last_pid(n):
        # the next fork gets n + 1 (root in this pid namespace may set it: ns_last_pid)
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(n))

    set_last_pid(305)
    victim, victim_ctl = spawn("ehreuse")
    out = {"victim": victim}
    real_scan = _procscan.scan

    def scan_then_reuse(only=None):
        yield from real_scan(only)  # the victim is seen here, alive, with its start time
        born = _procscan.read_proc(victim).start_time
        os.kill(victim, signal.SIGKILL)
        os.waitpid(victim, 0)
        # a later clock tick, so the newcomer's start time differs
        ticks = os.sysconf("SC_CLK_TCK")
        while time.clock_gettime(time.CLOCK_BOOTTIME) * ticks < born + 2:
            time.sleep(0.001)
        set_last_pid(victim - 1)
        pid, w = spawn("ehreuse")
        out["reused"] = pid == victim
        out["reuser_ctl"] = w

    _procscan.scan = scan_then_reuse
    rc = face_pidwait.main(["-e", "-x", "ehreuse"])
    out["rc"] = rc
    out["reuser_alive"] = os.waitpid(victim, os.WNOHANG) == (0, 0)
    print(json.dumps({k: v for k, v in out.items() if k != "reuser_ctl"}))
""")


def test_reused_number_is_never_waited_for() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    res = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                          REUSE], capture_output=True, text=True, env=env_with_src(),
                         timeout=50)
    if res.returncode != 0 and "unshare" in res.stderr:
        pytest.skip(f"cannot make a pid namespace here: {res.stderr.strip()}")
    import json
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, (res.stdout, res.stderr)
    got = json.loads(lines[-1])
    if "skip" in got:
        pytest.skip(got["skip"])
    assert got["reused"], "ns_last_pid did not give the number back"
    # the match was echoed (as procps does before opening it), then found to be another
    # process: nothing left to wait for, exit 1 at once, and the newcomer was not waited for
    assert got["rc"] == 1 and got["reuser_alive"], got
    assert f"waiting for ehreuse (pid {got['victim']})" in res.stdout


def test_pid_list_never_matches_a_thread_id() -> None:
    # pgrep.c matches -p against thread-group ids: a thread's id is no match, although
    # /proc/TID exists (the face reads only the listed pids, so it checks the Tgid)
    import threading
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert t.native_id is not None and t.native_id != os.getpid()
        rc, out, err = pidwait("face", None, "-c", "-p", str(t.native_id))
        assert (rc, out, err) == (1, "0\n", "")
    finally:
        stop.set()
        t.join()
