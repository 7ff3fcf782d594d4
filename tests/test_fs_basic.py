"""The filesystem from a real shell: cat returns at death (not before), ls, names, pinning."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading

import pytest
from fshelp import fsmount, needs_fuse, pidfs_inode, procs, stays_blocked  # noqa: F401

from conftest import env_with_src, run_cli, wait_dead

pytestmark = [needs_fuse, pytest.mark.timeout(60)]


def shell_cat(procs, path: str):  # noqa: F811
    return procs.start(["sh", "-c", f"cat {path} && echo gone"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)


def test_cat_returns_at_death_of_nonchild(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount()
    v = victim_factory(reap=True)
    p = shell_cat(procs, fs.path(v.pid, "exithand"))
    fs.wait_blocked(v.pid)
    assert stays_blocked(p), "cat returned while the process was alive"
    v.exit(3)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert out == b"gone\n"  # EOF: cat printed nothing


def test_cat_on_zombie_returns_at_once(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount()
    v = victim_factory(reap=False)
    v.exit(0)
    wait_dead(v.pid)
    with open(f"/proc/{v.pid}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
    p = shell_cat(procs, fs.path(v.pid, "exithand"))
    out, err = p.communicate(timeout=10)
    assert (p.returncode, out) == (0, b"gone\n"), err
    assert fs.count(rf"read-blocked fh=\d+ pid={v.pid} ") == 0
    with open(fs.path(v.pid, "exitstatus")) as f:
        assert f.read() == f"{v.pid}: exited with status 0.\n"


def test_pid_inode_path(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount()
    v = victim_factory(reap=True)
    ino = pidfs_inode(v.pid)
    p = shell_cat(procs, fs.path(f"{v.pid}:{ino}", "exithand"))
    fs.wait_blocked(v.pid)
    assert stays_blocked(p)
    # the same number with another inode is another process: it does not exist here
    with pytest.raises(FileNotFoundError):
        os.stat(fs.path(f"{v.pid}:{ino + 1}"))
    with pytest.raises(FileNotFoundError):
        os.open(fs.path(f"{v.pid}:{ino + 1}", "exithand"), os.O_RDONLY)
    v.die_by(signal.SIGKILL)
    out, err = p.communicate(timeout=10)
    assert (p.returncode, out) == (0, b"gone\n"), err
    assert v.keeper.stdout.readline() == b"reaped\n"
    # reaped now: the number names nothing; the pinned name lingers (tests/test_fs_linger.py)
    with pytest.raises(FileNotFoundError):
        os.stat(fs.path(v.pid))
    assert os.path.isdir(fs.path(f"{v.pid}:{ino}"))


def test_exitstatus_line_and_reopen_after_death(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount()
    v = victim_factory(reap=False)
    p = procs.start(["cat", fs.path(v.pid, "exitstatus")], stdout=subprocess.PIPE)
    fs.wait_blocked(v.pid)
    v.die_by(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert out == f"{v.pid}: killed by signal 15.\n".encode()


def test_ls_lists_live_pids_and_files(fsmount, victim_factory):  # noqa: F811
    fs = fsmount()
    v = victim_factory()
    listed = set(os.listdir(fs.mnt))
    assert str(v.pid) in listed and str(os.getpid()) in listed and "1" in listed
    assert all(n.isdigit() for n in listed)
    assert sorted(os.listdir(fs.path(v.pid))) == ["exithand", "exithand_full", "exitstatus"]
    st = os.stat(fs.path(v.pid, "exithand"))
    assert st.st_size == 0 and oct(st.st_mode & 0o777) == "0o444"
    r = subprocess.run(["ls", "-l", fs.path(v.pid)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "exitstatus" in r.stdout


def test_bad_names_and_threads_are_enoent(fsmount):  # noqa: F811
    fs = fsmount()
    ready = threading.Event()
    stop = threading.Event()
    t = threading.Thread(target=lambda: (ready.set(), stop.wait(30)))
    t.start()
    try:
        ready.wait()
        tid = t.native_id
        assert tid != os.getpid()
        for name in ["0", "-1", "abc", "007", "1 ", "+1", "\uff11", "99999999999999999999",
                     str(2**22 + 1), f"{os.getpid()}:0", f"{os.getpid()}:", ":1", str(tid),
                     f"{os.getpid()}:x"]:
            with pytest.raises(FileNotFoundError):
                os.stat(fs.path(name))
            with pytest.raises(FileNotFoundError):
                os.open(fs.path(name, "exithand"), os.O_RDONLY)
        with pytest.raises(FileNotFoundError):
            os.open(fs.path(os.getpid(), "nothere"), os.O_RDONLY)
    finally:
        stop.set()
        t.join()
    assert fs.alive()


def test_writes_are_refused(fsmount, victim_factory):  # noqa: F811
    fs = fsmount()
    v = victim_factory()
    f = fs.path(v.pid, "exithand")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_CREAT):
        with pytest.raises(OSError) as e:
            os.open(f, flags)
        assert e.value.errno in (errno.EROFS, errno.EACCES)
    for op in (lambda: os.mkdir(fs.path("x")), lambda: os.rename(f, fs.path(v.pid, "y")),
               lambda: os.truncate(f, 0), lambda: os.unlink(f), lambda: os.chmod(f, 0o777),
               lambda: os.symlink("x", fs.path("z"))):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno in (errno.EROFS, errno.EACCES), e.value
    assert fs.alive()


def test_nonblocking_read_and_max_readers(fsmount, victim_factory, procs):  # noqa: F811
    fs = fsmount(max_readers=2)
    v = victim_factory()
    fd = os.open(fs.path(v.pid, "exithand"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 10)
        readers = [procs.start(["cat", fs.path(v.pid, "exithand")]) for _ in range(2)]
        fs.wait_blocked(v.pid, 2)
        third = procs.start(["cat", fs.path(v.pid, "exithand")], stderr=subprocess.PIPE)
        _, err = third.communicate(timeout=10)
        assert third.returncode == 1 and b"Resource temporarily unavailable" in err
        v.exit(0)
        for r in readers:
            assert r.wait(timeout=10) == 0
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)


def test_mount_refuses_bad_mountpoints(fsmount, tmp_path):  # noqa: F811
    r = run_cli("mount", str(tmp_path / "missing"))
    assert r.returncode == 1 and "does not exist" in r.stderr
    (tmp_path / "file").write_text("")
    r = run_cli("mount", str(tmp_path / "file"))
    assert r.returncode == 1 and "not a directory" in r.stderr
    fs = fsmount()
    r = run_cli("mount", fs.mnt)
    assert r.returncode == 1 and "already a mount point" in r.stderr
    r = run_cli("mount", "--max-readers", "0", fs.mnt)
    assert r.returncode == 2
    r = run_cli("umount", str(tmp_path))
    assert r.returncode == 1 and "not a mount point" in r.stderr


@pytest.mark.timeout(30)
def test_mount_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "kept").write_text("x")
    r = run_cli("mount", "--foreground", str(tmp_path))
    assert r.returncode == 2, r.stderr
    assert "not empty" in r.stderr and "'kept'" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "kept").read_text() == "x"  # nothing was mounted over it
    assert "empty directory" in run_cli("mount", "--help").stdout


@pytest.mark.timeout(30)
def test_non_root_mount_problem_names_the_real_cause(tmp_path):
    from conftest import NOBODY, run_as
    from exithand.fs.mounts import allow_other_problem, fuse_device_problem

    mode = os.stat("/dev/fuse").st_mode & 0o777
    why = run_as(NOBODY, fuse_device_problem)
    if mode & 0o006 == 0o006:  # others may open it read-write: not the obstacle
        assert why is None
    else:
        assert why is not None and "/dev/fuse" in why and f"{mode:04o}" in why, why
    assert fuse_device_problem() is None  # root opens it
    conf = tmp_path / "fuse.conf"
    conf.write_text("# user_allow_other\nmount_max = 1000\n")
    assert "user_allow_other" in (allow_other_problem(str(conf)) or "")
    conf.write_text("mount_max = 1000\n  user_allow_other  # on\n")
    assert allow_other_problem(str(conf)) is None


def test_background_mount_and_umount(tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    os.chmod(tmp_path, 0o755)
    r = run_cli("mount", str(mnt))
    try:
        assert r.returncode == 0, r.stderr
        assert str(os.getpid()) in os.listdir(mnt)
    finally:
        u = run_cli("umount", str(mnt))
    assert u.returncode == 0, u.stderr
    assert os.listdir(mnt) == []


def test_missing_pyfuse3_gives_clear_message(tmp_path):
    code = ("import sys; sys.modules['pyfuse3'] = None\n"
            "from exithand.cli import main; sys.exit(main(['mount', sys.argv[1]]))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                       text=True, timeout=30, env=env_with_src())
    assert r.returncode == 1
    assert "pip install 'exithand[fs]'" in r.stderr and "Traceback" not in r.stderr
    # the rest of the CLI does not need it
    r = subprocess.run([sys.executable, "-c", code.replace("'mount', sys.argv[1]", "'--help'")],
                       capture_output=True, text=True, timeout=30, env=env_with_src())
    assert r.returncode == 0 and "wait" in r.stdout


def test_older_kernel_paths(fsmount, victim_factory, procs):  # noqa: F811
    """No pidfs inodes (< 6.9) and no PIDFD_GET_INFO (< 6.13), forced: the filesystem still
    blocks until death, reads a zombie's status, and refuses PID:INODE names it cannot check."""
    fs = fsmount(env={"EXITHAND_DISABLE": "pidfs,pidfd_info"})
    v = victim_factory(reap=False)
    p = shell_cat(procs, fs.path(v.pid, "exithand"))
    fs.wait_blocked(v.pid)
    assert stays_blocked(p)
    with pytest.raises(FileNotFoundError):
        os.stat(fs.path(f"{v.pid}:{pidfs_inode(v.pid)}"))
    v.exit(9)
    out, err = p.communicate(timeout=10)
    assert (p.returncode, out) == (0, b"gone\n"), err
    with open(fs.path(v.pid, "exitstatus")) as f:
        assert f.read() == f"{v.pid}: exited with status 9.\n"


def test_journald_log_format(fsmount, victim_factory, procs):  # noqa: F811
    """Under systemd (JOURNAL_STREAM set) every log line carries a <N> syslog priority."""
    fs = fsmount(env={"JOURNAL_STREAM": "8:12345"})
    v = victim_factory()
    procs.start(["cat", fs.path(v.pid, "exithand")])
    fs.wait_blocked(v.pid)
    lines = fs.log_text().splitlines()
    assert any(line.startswith("<6>mounted ") for line in lines), lines
    assert any(line.startswith("<7>read-blocked ") for line in lines), lines
    assert all(line[:1] == "<" and line[2:3] == ">" for line in lines), lines
