"""Opening costs one ``pidfd_open``: identity is proven by the pidfd (and its pidfs inode),
``/proc`` is read only to describe the process, on first use, or where nothing else proves it.

* With pidfs (6.9+), ``open(pid)`` and ``open(pid, inode=...)`` work with ``/proc`` hidden
  (a tmpfs mounted over it in a private mount namespace): no ``/proc`` read decides anything.
* The start time is read on first use of ``identity``; for a process reaped before that it is
  ``None`` (never a newcomer's), while the inode stays exact.
* Without pidfs (forced with ``EXITHAND_DISABLE=pidfs``) the start time is the identity, and is
  read at open: it survives the reap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import env_with_src, wait_dead

pytestmark = pytest.mark.timeout(60)


def _pidfs_reason() -> str:
    """Raw probe: do two processes' pidfds have different inodes (pidfs, Linux 6.9)?"""
    try:
        a = os.pidfd_open(os.getpid())
    except (AttributeError, OSError) as e:
        return f"no pidfd_open here: {e}"
    try:
        b = os.pidfd_open(os.getppid())
        try:
            if os.fstat(a).st_ino == os.fstat(b).st_ino:
                return "pidfds share one inode here (no pidfs, Linux < 6.9)"
        finally:
            os.close(b)
    finally:
        os.close(a)
    return ""


def _raw_inode(pid: int) -> int:
    fd = os.pidfd_open(pid)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _stat_start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


_HIDE_PROC = "mount -t tmpfs exithand-test /proc && exec \"$0\" -c \"$1\""


def _hidden_proc_reason() -> str:
    """Raw probe: can we mount a tmpfs over /proc in a private mount namespace?"""
    try:
        res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              _HIDE_PROC, sys.executable,
                              "import os; print(os.path.exists('/proc/self/stat'))"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare unusable: {e}"
    if res.returncode != 0 or res.stdout.strip() != "False":
        return f"cannot hide /proc in a mount namespace: {res.stderr.strip() or res.stdout}"
    return ""


def test_open_and_inode_check_read_no_proc(no_fd_leak: None, victim_factory) -> None:
    why = _pidfs_reason() or _hidden_proc_reason()
    if why:
        pytest.skip(why)
    v = victim_factory(reap=True)
    inode = _raw_inode(v.pid)
    code = textwrap.dedent(f"""
        import json, os, exithand
        out = {{"proc_hidden": not os.path.exists("/proc/{v.pid}/stat")}}
        with exithand.open({v.pid}) as h:
            out["plain"] = [h.identity.inode, h.is_alive()]
        with exithand.open({v.pid}, inode={inode}) as h:
            out["pinned"] = [h.identity.inode, h.identity.start_time, h.is_alive()]
        try:
            exithand.open({v.pid}, inode={inode + 1})
            out["wrong"] = "opened"
        except exithand.NoSuchProcess as e:
            out["wrong"] = "NoSuchProcess"
        print(json.dumps(out))
    """)
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          _HIDE_PROC, sys.executable, code], capture_output=True, text=True,
                         timeout=50, env=env_with_src())
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["proc_hidden"] is True
    assert out["plain"] == [inode, True]
    # the inode decided, and there was no /proc to describe the start time with
    assert out["pinned"] == [inode, None, True]
    assert out["wrong"] == "NoSuchProcess"


def test_identity_read_on_first_use_is_never_a_newcomers(no_fd_leak: None,
                                                          victim_factory) -> None:
    import exithand

    why = _pidfs_reason()
    if why:
        pytest.skip(why)
    v = victim_factory(reap=False)
    inode = _raw_inode(v.pid)
    with exithand.open(v.pid) as h:
        v.exit(3)
        wait_dead(v.pid)
        v.reap()
        ident = h.identity  # first use: after the reap
        assert ident.pid == v.pid and ident.inode == inode
        assert ident.start_time is None, "a start time read after the reap may be anyone's"
        assert str(ident) == f"{v.pid}:{inode}"
        assert h.identity is ident  # read once, then fixed
        assert not h.is_alive()


def test_identity_read_on_first_use_while_alive(no_fd_leak: None, victim_factory) -> None:
    import exithand

    v = victim_factory(reap=False)
    with exithand.open(v.pid) as h:
        ident = h.identity
        assert ident.start_time == _stat_start_time(v.pid)
        v.exit(0)
        wait_dead(v.pid)
        v.reap()
        assert h.identity is ident  # the start time read while alive is kept after the reap


def test_without_pidfs_start_time_is_read_at_open(victim_factory) -> None:
    v = victim_factory(reap=False)
    start = _stat_start_time(v.pid)
    ctl = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import json, sys, exithand
            h = exithand.open({v.pid})
            print("open", flush=True)
            sys.stdin.readline()          # the victim is dead and reaped now
            i = h.identity
            print(json.dumps([i.inode, i.start_time, str(i)]), flush=True)
            h.close()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env_with_src(EXITHAND_DISABLE="pidfs"))
    assert ctl.stdin is not None and ctl.stdout is not None
    try:
        assert ctl.stdout.readline() == "open\n"
        v.exit(5)
        wait_dead(v.pid)
        v.reap()
        ctl.stdin.write("\n")
        ctl.stdin.flush()
        assert json.loads(ctl.stdout.readline()) == [None, start, str(v.pid)]
        assert ctl.wait(timeout=30) == 0
    finally:
        if ctl.poll() is None:
            ctl.kill()
            ctl.wait()
        ctl.stdin.close()
        ctl.stdout.close()
