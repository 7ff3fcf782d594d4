"""kill_and_wait(tree=True): a 3-level tree of 30 processes, one of which forks while being killed.

Every process of the tree writes its pid to a log (O_APPEND) and holds the write end of a "life"
pipe: once every process that ever existed is dead, the pipe reads EOF.  That is the check that
nothing escaped, independent of what the library reports.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from collections import Counter
from types import SimpleNamespace

import pytest
from kill_helpers import start_keeper

import exithand
from conftest import run_cli
from exithand import _kill

# root -> 4 children -> 25 grandchildren (7, 6, 6, 6) = 30 processes.  The first grandchild is
# the forker: after "ready" it forks a child every few ms (at most FORKS), and on SIGTERM its
# handler forks one more child (logged with a T) and carries on; it dies only by SIGKILL.
TREE = """
import signal, time
LOG, LIFE_W, FORKS = int(ENV["LOG"]), int(ENV["LIFE"]), int(ENV["FORKS"])
def log(tag, pid=None):
    os.write(LOG, f"{tag} {pid or os.getpid()}\\n".encode())
def leaf():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log("L")
    block()
def forker():
    log("F")
    def on_term(*a):
        kid = os.fork()
        if kid == 0:
            leaf()
        log("T", kid)
    signal.signal(signal.SIGTERM, on_term)
    ready()
    for _ in range(FORKS):
        if os.fork() == 0:
            leaf()
        time.sleep(0.003)  # keeps forking while the kill runs: the scenario, not a sync point
    block()
def node(level, first):
    if level == 2:
        if first:
            forker()
        log("N")
        ready()
        block()
    kids = 4 if level == 0 else (7 if first else 6)
    for i in range(kids):
        if os.fork() == 0:
            node(level + 1, i == 0 if level == 0 else (first and i == 0))
    log("N")
    ready()
    block()
node(0, True)
"""


def _tree_keeper(forks: int):
    log_path = f"/tmp/exithand-issue6-tree-{os.getpid()}.log"
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    os.unlink(log_path)
    read_fd = os.open(f"/proc/self/fd/{log_fd}", os.O_RDONLY)
    life_r, life_w = os.pipe()
    code = (f"ENV = {{'LOG': '{log_fd}', 'LIFE': '{life_w}', 'FORKS': '{forks}'}}\n" + TREE)
    k = start_keeper(code, pass_fds=(log_fd, life_w))
    os.close(log_fd)
    os.close(life_w)
    k.extra_fds += [read_fd, life_r]
    return k, read_fd, life_r


def _logged(read_fd: int) -> list[tuple[str, int]]:
    data = b""
    while True:
        chunk = os.pread(read_fd, 65536, len(data))
        if not chunk:
            break
        data += chunk
    return [(t, int(p)) for t, p in (line.split() for line in data.decode().splitlines())]


def _via_cli(root: int, sig: int) -> list[SimpleNamespace]:
    """``exithand kill --tree --json``, read back into KillResult-like records."""
    r = run_cli("kill", "--tree", "--json", "-s", str(int(sig)), "--grace", "0.5",
                "-t", "60", str(root), timeout=90)
    assert r.returncode == 0, r
    out = []
    for line in r.stdout.splitlines():
        o = json.loads(line)
        out.append(SimpleNamespace(
            pid=o["pid"], parent=o["parent"], outcome=o["outcome"],
            signals=tuple(int(getattr(signal, n)) for n in o["signals_sent"])))
    return out


def _assert_all_dead(life_r: int) -> None:
    fl = fcntl.fcntl(life_r, fcntl.F_GETFL)
    fcntl.fcntl(life_r, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    try:
        assert os.read(life_r, 1) == b"", "something still holds the life pipe"
    except BlockingIOError:
        pytest.fail("a process of the tree is still alive (life pipe not at EOF)")


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("sig", "how"), [(signal.SIGTERM, "lib"), (signal.SIGKILL, "lib"),
                                          (signal.SIGTERM, "cli")],
                         ids=["term+grace", "kill", "cli-term+grace"])
def test_tree_of_30_with_a_forker_all_dead_each_reported(no_fd_leak, sig, how):
    k, read_fd, life_r = _tree_keeper(forks=60)
    try:
        k.wait_ready(30)
        root = k.pid
        if how == "lib":
            res = exithand.kill_and_wait(root, signal=sig, grace=0.5, timeout=60, tree=True)
        else:
            res = _via_cli(root, sig)
        _assert_all_dead(life_r)
        outcomes = Counter(r.outcome for r in res)
        assert _kill.OUTCOME_TIMED_OUT not in outcomes, outcomes
        reported = {r.pid for r in res}
        logged = _logged(read_fd)
        initial = [p for t, p in logged if t in ("N", "F")]
        assert len(initial) == 30
        assert set(initial) <= reported
        assert {p for _t, p in logged} <= reported, "a process that lived was not reported"
        assert res[0].pid == root and res[0].parent is None
        assert all(r.parent is not None for r in res[1:])
        assert len(reported) == len(res)  # each process reported once
        forker = next(p for t, p in logged if t == "F")
        fr = next(r for r in res if r.pid == forker)
        if sig == signal.SIGTERM:
            # the forker survives TERM (its handler forks and returns): escalated after 0.5 s
            assert fr.outcome == _kill.OUTCOME_ESCALATED, fr
            assert fr.signals == (signal.SIGTERM, signal.SIGKILL)
            term_forks = [p for t, p in logged if t == "T"]
            assert term_forks, "the forker's TERM handler never forked"
            assert set(term_forks) <= reported  # born during the kill, found and killed
            # everyone else died of the TERM itself
            others = [r for r in res if r.pid != forker]
            assert all(r.outcome in (_kill.OUTCOME_KILLED, _kill.OUTCOME_ESCALATED)
                       for r in others)
        else:
            assert all(r.outcome == _kill.OUTCOME_KILLED for r in res), outcomes
            assert all(r.signals == (signal.SIGKILL,) for r in res)
    finally:
        k.cleanup()


@pytest.mark.timeout(60)
def test_tree_error_leaves_nothing_stopped(no_fd_leak):
    """A tree with a process we may not signal: AccessDenied, nothing killed or left stopped."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a child that belongs to another user")
    from conftest import NOBODY, run_as
    code = """
kid = os.fork()
if kid == 0:
    ready(); block()      # stays root
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
ready(); block()
"""
    k = start_keeper(code)
    try:
        k.wait_ready(2)
        (kid,) = [p for p in k.descendants() if p != k.pid]

        def attempt() -> str:
            try:
                exithand.kill_and_wait(k.pid, signal=signal.SIGKILL, tree=True, timeout=5)
            except exithand.AccessDenied as e:
                return f"denied {e.pid}"
            return "done"

        assert run_as(NOBODY, attempt) == f"denied {kid}"
        for p in (k.pid, kid):
            with open(f"/proc/{p}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            assert state in ("S", "R"), (p, state)  # alive and not left stopped (T)
    finally:
        k.cleanup()


@pytest.mark.timeout(60)
def test_the_caller_is_never_part_of_its_own_tree_kill(no_fd_leak):
    """B kills the tree of its parent A (A, B, and B's sibling C): A and C die, B survives.

    All of it runs below the keeper (a subreaper), which adopts and later reaps B.
    """
    from conftest import env_with_src
    code = """
import signal
a = os.getpid()
if os.fork() == 0:            # C, the sibling
    block()
if os.fork() == 0:            # B, the caller
    import exithand
    res = exithand.kill_and_wait(a, signal=signal.SIGKILL, tree=True, timeout=20)
    out = sorted((r.pid, r.parent, r.outcome) for r in res)
    os.write(READY_FD, repr((os.getpid(), out)).encode() + b"\\n")
    block()
block()
"""
    k = start_keeper(code, env=env_with_src())
    try:
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(k.ready_r, 4096)
            assert chunk, "the killer died"
            line += chunk
        b, res = eval(line.decode())  # (pid of B, [(pid, parent, outcome), ...])
        assert [(p, o) for p, _par, o in res if p == k.pid] == [(k.pid, "killed")]  # A
        others = [(par, o) for p, par, o in res if p != k.pid]
        assert others == [(k.pid, "killed")]  # C, a child of A; B itself is not listed
        assert b not in {p for p, _par, _o in res}
        with open(f"/proc/{b}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] in ("S", "R")  # alive, not stopped
    finally:
        k.cleanup()  # B now hangs below the keeper (a subreaper) and is killed and reaped here
