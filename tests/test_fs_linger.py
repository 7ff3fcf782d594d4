"""A new open of ``MNT/PID:INODE/...`` after the parent reaped the process (issue 11).

The daemon keeps a dead process's pidfd for ``--linger`` seconds after the last file on it
closed (at most ``--max-lingering``), so the pinned name still answers; the bare number never
does (it names nothing, or a reuser).  Real processes reaped by their real parent, a real mount.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest
from fshelp import Forked, fsmount, needs_fuse, pidfs_inode, procs  # noqa: F401
from reuse_prelude import PRELUDE

from conftest import NOBODY, drop_to, env_with_src, run_as
from exithand.fs.linger import Lingering

pytestmark = [needs_fuse, pytest.mark.timeout(60)]

PR_SET_DUMPABLE = 4


def died_and_reaped(fs, procs, v, how):  # noqa: F811
    """``cat P:I/exithand`` (open at death, as a shell user would), kill ``v`` with ``how()``,
    wait until the cat returned and the parent reaped it; the pinned directory name."""
    return cat_until_reaped(fs, procs, v.pid, how,
                            lambda: v.keeper.stdout.readline() == b"reaped\n")


def cat_until_reaped(fs, procs, pid, how, reaped):  # noqa: F811
    pinned = f"{pid}:{pidfs_inode(pid)}"
    cat = procs.start(["cat", fs.path(pinned, "exithand")], stdout=subprocess.PIPE)
    fs.wait_blocked(pid)
    how()
    assert cat.communicate(timeout=10) == (b"", None)
    assert reaped()
    with pytest.raises(ProcessLookupError):
        os.pidfd_open(pid)  # reaped: no such process
    fs.wait_log(rf"lingering pid={pid} ")
    return pinned


def parent_of_nobody() -> Forked:
    """A root parent of one child running as nobody (dumpable, as an exec'ed program of that
    user would be).  Answers "pid", and "exit N" (the child exits N; answered once reaped)."""
    state: list[int] = []

    def setup() -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.close(w)
                drop_to(NOBODY)()
                ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1)
                code = os.read(r, 1)[0]
            finally:
                os._exit(code)
        os.close(r)
        state[:] = [pid, w]

    def handler(line: str) -> str:
        if line == "pid":
            return str(state[0])
        os.write(state[1], bytes([int(line.split()[1])]))
        _, st = os.waitpid(state[0], 0)
        return f"reaped {os.waitstatus_to_exitcode(st)}"

    return Forked(setup, handler)


def test_pinned_open_after_reap_answers(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount()
    v = victim_factory(reap=True)
    pinned = died_and_reaped(fs, procs, v, lambda: v.exit(7))
    with open(fs.path(pinned, "exitstatus")) as f:
        assert f.read() == f"{v.pid}: exited with status 7.\n"
    with open(fs.path(pinned, "exithand_full"), "rb") as f:
        info = f.read()
    signo, _, code = struct.unpack_from("iii", info)
    pid, _, status = struct.unpack_from("iIi", info, 16)  # the union, after 4 bytes of padding
    assert (signo, code, pid, status) == (signal.SIGCHLD, 1, v.pid, 7)  # CLD_EXITED
    with open(fs.path(pinned, "exithand"), "rb") as f:
        assert f.read() == b""  # dead: EOF at once
    # the bare number names nothing now; another inode with that number was never this one
    for name in (str(v.pid), f"{v.pid}:{pidfs_inode(os.getpid())}"):
        with pytest.raises(FileNotFoundError):
            os.stat(fs.path(name))
        with pytest.raises(FileNotFoundError):
            open(fs.path(name, "exitstatus")).close()
    assert str(v.pid) not in os.listdir(fs.mnt)


def test_killed_pinned_after_reap(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount()
    v = victim_factory(reap=True)
    pinned = died_and_reaped(fs, procs, v, lambda: v.die_by(signal.SIGKILL))
    with open(fs.path(pinned, "exitstatus")) as f:
        assert f.read() == f"{v.pid}: killed by signal 9.\n"


def test_bare_number_open_at_death_lingers_under_the_pinned_name(
        fsmount, victim_factory, procs):  # noqa: F811
    """The watch is the process's, however it was named: ``cat MNT/PID/exithand`` then
    ``cat MNT/PID:INODE/exitstatus`` after the reap answers."""
    fs = fsmount()
    v = victim_factory(reap=True)
    ino = pidfs_inode(v.pid)
    cat = procs.start(["cat", fs.path(v.pid, "exithand")], stdout=subprocess.PIPE)
    fs.wait_blocked(v.pid)
    v.exit(4)
    assert cat.communicate(timeout=10) == (b"", None)
    assert v.keeper.stdout.readline() == b"reaped\n"
    fs.wait_log(rf"lingering pid={v.pid} inode={ino} ")
    with open(fs.path(f"{v.pid}:{ino}", "exitstatus")) as f:
        assert f.read() == f"{v.pid}: exited with status 4.\n"
    with pytest.raises(FileNotFoundError):
        os.stat(fs.path(v.pid))


def test_closed_before_death_is_not_kept(fsmount, victim_factory, procs):  # noqa: F811
    """Nothing was open at death: nothing is kept (the daemon holds no pidfd for it)."""
    fs = fsmount()
    v = victim_factory(reap=True)
    pinned = f"{v.pid}:{pidfs_inode(v.pid)}"
    with open(fs.path(pinned, "exithand"), "rb"):
        pass
    fs.wait_log(rf"file-closed fh=\d+ pid={v.pid}\b")
    v.exit(0)
    assert v.keeper.stdout.readline() == b"reaped\n"
    with pytest.raises(FileNotFoundError):
        os.stat(fs.path(pinned))
    assert fs.count(r"lingering pid=") == 0


def test_linger_expires_and_closes_the_pidfd(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount(extra=("--linger", "0.5"))
    v = victim_factory(reap=True)
    fd_dir = f"/proc/{fs.proc.pid}/fd"
    with open(fs.path(v.pid, "exithand"), "rb"):  # warm up: first use allocates a few fds
        pass
    fs.wait_log(r"file-closed ")
    before = len(os.listdir(fd_dir))
    pinned = died_and_reaped(fs, procs, v, lambda: v.exit(3))
    assert len(os.listdir(fd_dir)) == before + 1  # the kept pidfd
    fs.wait_log(rf"linger-expired pid={v.pid}\b", timeout=10)
    with pytest.raises(FileNotFoundError):
        open(fs.path(pinned, "exitstatus")).close()
    assert len(os.listdir(fd_dir)) == before


def test_reopening_does_not_extend_the_linger(fsmount, victim_factory, procs):  # noqa: F811
    """Someone reopening the pinned name over and over cannot keep it forever: the deadline
    is --linger after the watch was first left unused."""
    fs = fsmount(extra=("--linger", "1"))
    v = victim_factory(reap=True)
    pinned = died_and_reaped(fs, procs, v, lambda: v.exit(2))
    t0 = time.monotonic()
    answered = 0
    while time.monotonic() - t0 < 10:  # bounded; with an extending deadline it never ends
        try:
            with open(fs.path(pinned, "exitstatus")) as f:
                assert f.read() == f"{v.pid}: exited with status 2.\n"
            answered += 1
        except FileNotFoundError:
            break
    else:
        pytest.fail("the pinned name still answered 10 s after a 1 s linger")
    assert answered >= 1


def test_linger_zero_keeps_nothing(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount(extra=("--linger", "0"))
    v = victim_factory(reap=True)
    pinned = f"{v.pid}:{pidfs_inode(v.pid)}"
    cat = procs.start(["cat", fs.path(pinned, "exithand")], stdout=subprocess.PIPE)
    fs.wait_blocked(v.pid)
    v.exit(0)
    assert cat.communicate(timeout=10) == (b"", None)
    assert v.keeper.stdout.readline() == b"reaped\n"
    fs.wait_log(rf"file-closed fh=\d+ pid={v.pid}\b")
    with pytest.raises(FileNotFoundError):
        os.stat(fs.path(pinned))
    assert fs.count(r"lingering pid=") == 0


def test_cap_drops_the_oldest(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount(extra=("--max-lingering", "2"))
    vs = [victim_factory(reap=True) for _ in range(3)]
    fd_dir = f"/proc/{fs.proc.pid}/fd"
    with open(fs.path(vs[0].pid, "exithand"), "rb"):  # warm up: first use allocates a few fds
        pass
    fs.wait_log(r"file-closed ")
    before = len(os.listdir(fd_dir))
    pinned = [died_and_reaped(fs, procs, v, lambda v=v, i=i: v.exit(i))
              for i, v in enumerate(vs, start=1)]
    assert len(os.listdir(fd_dir)) == before + 2  # two pidfds kept, the third closed
    with pytest.raises(FileNotFoundError):  # the oldest was dropped for the third
        open(fs.path(pinned[0], "exitstatus")).close()
    for i, (v, name) in enumerate(zip(vs, pinned), start=1):
        if i > 1:
            with open(fs.path(name, "exitstatus")) as f:
                assert f.read() == f"{v.pid}: exited with status {i}.\n"


def test_same_user_without_verdict_at_death_is_refused(fsmount, procs):  # noqa: F811
    fs = fsmount()  # default policy same-user
    parent = parent_of_nobody()
    try:
        pid = int(parent.ask("pid"))
        answer: list[str] = []
        pinned = cat_until_reaped(fs, procs, pid, lambda: answer.append(parent.ask("exit 5")),
                                  lambda: answer == ["reaped 5"])
    finally:
        parent.close()

    def try_open(name: str) -> int:
        try:
            with open(fs.path(pinned, name), "rb") as f:
                f.read()
            return 0
        except OSError as e:
            return e.errno or -1

    assert run_as(NOBODY, lambda: try_open("exithand")) == 0  # open to all
    for name in ("exitstatus", "exithand_full"):
        assert run_as(NOBODY, lambda n=name: try_open(n)) == errno.EACCES
    assert try_open("exitstatus") == 0  # root still reads it
    fs.wait_log(rf"open-refused {pinned}/exitstatus uid={NOBODY} .*reaped before the daemon")


def test_lingering_bookkeeping():
    lg: Lingering[str] = Lingering(seconds=10, total=3, per_user=2)
    assert lg.keep((1, 11), "a", uid=1000, deadline=10) == []
    assert lg.keep((2, 12), "b", uid=1000, deadline=11) == []
    assert lg.keep((3, 13), "c", uid=1000, deadline=12) == ["a"]  # the uid's own soonest
    assert lg.keep((4, 14), "d", uid=2000, deadline=13) == []
    assert lg.keep((5, 15), "e", uid=3000, deadline=14) == ["b"]  # the soonest of all
    assert lg.get((1, 11)) is None and lg.get((3, 13)) == "c"
    assert lg.get((3, 14)) is None  # same number, other inode: not the same process
    assert lg.take((4, 14)) == "d" and len(lg) == 2
    assert lg.keep((4, 14), "d", uid=2000, deadline=13) == []  # kept again, same deadline
    assert lg.next_deadline() == 12
    assert lg.expire(11.9) == [] and lg.expire(12) == ["c"]
    assert sorted(lg.expire(100)) == ["d", "e"] and lg.next_deadline() is None
    root: Lingering[str] = Lingering(seconds=10, total=3, per_user=1)
    assert root.keep((1, 11), "a", uid=0, deadline=10) == []
    assert root.keep((2, 12), "b", uid=0, deadline=10) == []  # uid 0: only the global cap
    assert root.keep((3, 13), "c", uid=0, deadline=11) == []
    assert root.keep((4, 14), "d", uid=0, deadline=12) in (["a"], ["b"])
    assert root.keep((4, 14), "d", uid=0, deadline=12) == [] and len(root) == 3
    off: Lingering[str] = Lingering(seconds=0, total=3, per_user=2)
    assert off.keep((1, 11), "a", uid=0, deadline=0) == ["a"] and len(off) == 0


REUSE_SCRIPT = PRELUDE + textwrap.dedent("""
    import errno, subprocess
    sys.path.insert(0, TESTS)
    from fshelp import pidfs_inode, start_daemon

    out = {}
    a, a_ctl = pid0, w0
    ino = pidfs_inode(a)
    fs = start_daemon(policy="public")
    try:
        cat = subprocess.Popen(["cat", f"{fs.mnt}/{a}:{ino}/exithand"], stdout=subprocess.PIPE)
        fs.wait_blocked(a)
        os.kill(a, signal.SIGKILL)
        out["cat"] = cat.communicate(timeout=10)[0].decode()
        os.waitpid(a, 0)
        os.close(a_ctl)
        fs.wait_log(rf"lingering pid={a} ")
        c, c_ctl = reuse_number(a)
        out["reuser_inode_differs"] = pidfs_inode(c) != ino
        with open(f"{fs.mnt}/{a}:{ino}/exitstatus") as f:
            out["pinned"] = f.read()
        fd = os.open(f"{fs.mnt}/{a}/exitstatus", os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.read(fd, 100)
            out["bare"] = "answered"
        except OSError as e:
            out["bare"] = errno.errorcode[e.errno]
        finally:
            os.close(fd)
        os.close(c_ctl)
        os.waitpid(c, 0)
    finally:
        fs.stop()
    print(json.dumps(out))
""")


@pytest.mark.timeout(90)
def test_reused_number_is_never_answered_for():
    """PID reuse forced for real (tests/reuse_prelude.py), with the daemon in that pid
    namespace: the pinned name answers for the dead process, the bare number for the reuser."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) not installed")
    script = REUSE_SCRIPT.replace("TESTS", repr(os.path.dirname(__file__)))
    res = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                          script], capture_output=True, text=True, timeout=80, env=env_with_src())
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["cat"] == ""  # EOF at death
    assert out["reuser_inode_differs"] is True
    pid = out["pinned"].split(":")[0]
    assert out["pinned"] == f"{pid}: killed by signal 9.\n"
    assert out["bare"] == "EAGAIN"  # the bare number is the living reuser: nothing to answer
