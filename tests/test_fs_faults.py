"""Faults: a reader killed mid-read, the daemon stopped with SIGTERM, or killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from fshelp import exits_within, fsmount, is_stale, mount_fstype, needs_fuse, procs, start_daemon  # noqa: F401

from conftest import run_cli

pytestmark = [needs_fuse, pytest.mark.timeout(90)]


def test_reader_killed_mid_read_released_fast(fsmount, procs, victim_factory):  # noqa: F811
    fs = fsmount()
    v = victim_factory()
    cat = procs.start(["cat", fs.path(v.pid, "exithand")])
    fs.wait_blocked(v.pid)
    t0 = time.monotonic()
    cat.send_signal(signal.SIGKILL)
    assert exits_within(cat, 1.0), "killed reader still stuck after 1 s"
    assert time.monotonic() - t0 < 1.0
    assert cat.wait() == -signal.SIGKILL
    fs.wait_log(rf"read-interrupted fh=\d+ pid={v.pid} opener={cat.pid}")
    assert fs.alive()


def test_ctrl_c_reaches_a_python_reader(fsmount, procs, victim_factory):  # noqa: F811
    fs = fsmount()
    v = victim_factory()
    code = ("import sys\ntry:\n    open(sys.argv[1], 'rb').read()\n"
            "except KeyboardInterrupt:\n    print('interrupted'); sys.exit(3)\n")
    p = procs.start([sys.executable, "-c", code, fs.path(v.pid, "exithand")],
                    stdout=subprocess.PIPE)
    fs.wait_blocked(v.pid)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=5)
    assert (p.returncode, out) == (3, b"interrupted\n")


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_sigterm_releases_readers_and_unmounts(fsmount, procs, victim_factory,  # noqa: F811
                                               sig, code):
    fs = fsmount()
    v = victim_factory()
    cats = [procs.start(["cat", fs.path(v.pid, name)], stderr=subprocess.PIPE)
            for name in ("exithand", "exithand_full", "exitstatus")]
    fs.wait_blocked(v.pid, 3)
    fs.proc.send_signal(sig)
    for c in cats:
        _, err = c.communicate(timeout=10)
        assert c.returncode == 1 and b"Input/output error" in err, err
    assert fs.proc.wait(timeout=15) == code
    assert mount_fstype(fs.mnt) is None and not is_stale(fs.mnt)
    assert v.keeper.poll() is None  # the watched process was left alone


def test_sigkill_daemon_then_umount_recovers(procs, victim_factory):  # noqa: F811
    fs = start_daemon()
    try:
        v = victim_factory()
        cats = [procs.start(["cat", fs.path(v.pid, "exithand")], stderr=subprocess.PIPE)
                for _ in range(3)]
        fs.wait_blocked(v.pid, 3)
        fs.proc.kill()
        fs.proc.wait(timeout=10)
        for c in cats:
            _, err = c.communicate(timeout=10)
            assert c.returncode == 1 and err, "reader hung or succeeded after daemon death"
        assert is_stale(fs.mnt)
        r = run_cli("mount", fs.mnt)
        assert r.returncode == 1 and f"exithand umount {fs.mnt}" in r.stderr, r.stderr
        u = run_cli("umount", fs.mnt)
        assert u.returncode == 0, u.stderr
        assert not is_stale(fs.mnt) and mount_fstype(fs.mnt) is None
        # and the mountpoint is usable again
        fs2 = start_daemon(mnt=fs.mnt)
        try:
            assert str(os.getpid()) in os.listdir(fs2.mnt)
        finally:
            fs2.stop()
    finally:
        fs.stop()


def test_umount_while_busy_detaches_lazily(procs, victim_factory):  # noqa: F811
    fs = start_daemon()
    try:
        v = victim_factory()
        fd = os.open(fs.path(v.pid, "exitstatus"), os.O_RDONLY)
        try:
            u = run_cli("umount", fs.mnt)
            assert u.returncode == 0 and "detached lazily" in u.stderr, u.stderr
            assert mount_fstype(fs.mnt) is None and fs.alive()
            v.exit(4)  # the open file still works: pinned at open, served by the daemon
            assert os.read(fd, 100) == f"{v.pid}: exited with status 4.\n".encode()
        finally:
            os.close(fd)
        assert fs.proc.wait(timeout=15) == 0  # last file closed: the daemon exits by itself
    finally:
        fs.stop()


def test_umount_refuses_anything_but_exithand(tmp_path):
    """'exithand umount' never unmounts a filesystem that is not ours (a tmpfs here; /home
    or / would be refused the same way): exit 1, the mount is left in place."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], check=True, timeout=30)
    try:
        (mnt / "marker").write_text("still here")
        for args in (["umount", str(mnt)], ["umount", "--lazy", str(mnt)]):
            r = run_cli(*args)
            assert r.returncode == 1 and "tmpfs mount, not an exithand" in r.stderr, r.stderr
            assert mount_fstype(str(mnt)) == "tmpfs"
            assert (mnt / "marker").read_text() == "still here"
        r = run_cli("umount", "/")
        assert r.returncode == 1 and "not an exithand filesystem" in r.stderr, r.stderr
    finally:
        subprocess.run(["umount", str(mnt)], check=False, timeout=30)
    assert mount_fstype(str(mnt)) is None
