"""exithand.procfs, the one /proc reader, on real entries of real processes.

Each parser is checked against a process made to show the case: a comm with spaces and ``)``,
a zombie's field 52 read as root and as nobody, a thread's ``Tgid``, ``NSpid`` of a process in
a child pid namespace, mountinfo's escapes, and the cgroup v1 option list shared by
``watch(cgroup=...)`` and the cgroup helper.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import pytest

import exithand
from exithand import procfs
from exithand._kernel import cgroup as _cgroup

pytestmark = pytest.mark.timeout(60)


def _child(code: str) -> tuple[subprocess.Popen[bytes], bytes]:
    """A python child running ``code``; returns it and the first line it prints (its 'ready')."""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert p.stdout is not None
    return p, p.stdout.readline()


def _reap(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()
    if p.stdout is not None:
        p.stdout.close()


def test_stat_comm_with_spaces_and_parens() -> None:
    name = "a b) (c) x"
    p, line = _child(f"open('/proc/self/comm','w').write({name!r})\n"
                     "print('ready', flush=True)\n__import__('time').sleep(60)")
    try:
        assert line.strip() == b"ready"
        st = procfs.stat(p.pid)
        assert st.comm == name[:15]
        assert st.pid == p.pid and st.ppid == os.getpid()
        assert st.state in ("S", "R")
        assert st.num_threads == 1 and st.start_time > 0
        assert st.pgrp == os.getpgrp()
        assert procfs.comm(p.pid) == name[:15]
        assert procfs.cmdline(p.pid)[0] == sys.executable
        assert procfs.parse_stat(p.pid, procfs.read(p.pid, "stat").decode()) == st
    finally:
        _reap(p)


def test_gone_process_raises_nosuchprocess_with_pid() -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(exithand.NoSuchProcess) as ei:
        procfs.stat(p.pid)
    assert ei.value.pid == p.pid
    assert procfs.try_stat(p.pid) is None
    assert procfs.tgid(p.pid) is None
    with pytest.raises(exithand.NoSuchProcess):
        procfs.status(p.pid)


def _zombie() -> int:
    """A child that exited 7 and is not reaped (the caller reaps it)."""
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # returns once it is a zombie
    return pid


def test_zombie_exit_code_as_root_and_as_nobody() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to read another user's zombie as nobody, and field 52 as root")
    z = _zombie()
    try:
        st = procfs.stat(z)
        assert st.state == "Z"
        assert st.exit_code == 7 << 8  # raw wait status, shown with ptrace read access
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(r)
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                s = procfs.stat(z)
                os.write(w, f"{s.state} {s.exit_code}".encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            seen = f.read().decode()
        os.waitpid(pid, 0)
        assert seen == "Z 0"  # no ptrace access: the kernel prints 0
    finally:
        os.waitpid(z, 0)


def test_thread_tgid_and_task_reads() -> None:
    started, stop = threading.Event(), threading.Event()
    tids: list[int] = []

    def run() -> None:
        tids.append(threading.get_native_id())
        started.set()
        stop.wait(30)

    t = threading.Thread(target=run)
    t.start()
    try:
        assert started.wait(10)
        tid = tids[0]
        assert tid != os.getpid()
        assert procfs.tgid(tid) == os.getpid()
        assert procfs.tgid(os.getpid()) == os.getpid()
        assert procfs.status(os.getpid(), tid=tid)["Tgid"] == str(os.getpid())
        assert procfs.status("self", tid=tid)["Pid"] == str(tid)
        assert tid in procfs.tasks("self")
        assert procfs.stat(os.getpid(), tid=tid).pid == tid
        assert tid not in procfs.pids()  # threads are not listed
        assert procfs.exists(tid)
    finally:
        stop.set()
        t.join()


def test_status_ids_and_masks_of_self() -> None:
    f = procfs.status("self")
    uids = procfs.id_list(f["Uid"])
    assert uids[:3] == os.getresuid()
    assert procfs.id_list(f["Gid"])[:3] == os.getresgid()
    assert procfs.parse_hex_mask("0000000000000400") == 1 << 10
    assert procfs.has_cap(procfs.CAP_KILL) == bool(
        procfs.parse_hex_mask(f["CapEff"]) >> procfs.CAP_KILL & 1)


def test_sigpnd_of_a_blocked_signal() -> None:
    p, line = _child("import signal,time\nsignal.pthread_sigmask(signal.SIG_BLOCK,"
                     "[signal.SIGUSR1])\nprint('ready', flush=True)\ntime.sleep(60)")
    try:
        assert line.strip() == b"ready"
        os.kill(p.pid, signal.SIGUSR1)
        mask = procfs.parse_hex_mask(procfs.status(p.pid)["ShdPnd"])
        assert mask & (1 << (signal.SIGUSR1 - 1))
    finally:
        _reap(p)


def test_nspid_in_child_pid_namespace() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    u = subprocess.Popen(["unshare", "--pid", "--fork", "sh", "-c", "echo ready; exec sleep 60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert u.stdout is not None and u.stderr is not None
    try:
        line = u.stdout.readline()
        if line.strip() != b"ready":
            u.wait()
            pytest.skip(f"unshare --pid refused: {u.stderr.read().decode().strip()}")
        kids = [k for t in procfs.tasks(u.pid) for k in procfs.children(u.pid, t)]
        assert len(kids) == 1
        assert procfs.id_list(procfs.status(kids[0])["NSpid"]) == (kids[0], 1)
        assert procfs.stat(kids[0]).ppid == u.pid
    finally:
        u.kill()
        u.wait()
        u.stdout.close()
        u.stderr.close()


def test_oom_score_statm_smaps_rollup_cgroup_of_self() -> None:
    assert 0 <= procfs.oom_score("self") <= 2000
    assert -1000 <= procfs.oom_score_adj("self") <= 1000
    m = procfs.statm("self")
    assert len(m) == 7 and m[1] > 0
    r = procfs.smaps_rollup("self")
    assert r["Rss"] > 0 and "Pss" in r
    cg = procfs.cgroup("self")
    assert cg and all(isinstance(h, int) and p.startswith("/") for h, _, p in cg)
    assert procfs.fdinfo(0)["flags"]


def test_mountinfo_unescapes_real_mount() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    base = tempfile.mkdtemp()
    mnt = os.path.join(base, "a b\\c")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "exithand-t", mnt],
                       capture_output=True)
    if r.returncode:
        os.rmdir(mnt)
        os.rmdir(base)
        pytest.skip(f"mount refused: {r.stderr.decode().strip()}")
    try:
        ms = [m for m in procfs.mountinfo() if m.mount_point == mnt]
        assert len(ms) == 1
        assert ms[0].fstype == "tmpfs" and ms[0].source == "exithand-t"
        assert "\\040" in procfs.read("self", "mountinfo").decode()
    finally:
        subprocess.run(["umount", mnt], check=True)
        os.rmdir(mnt)
        os.rmdir(base)


def test_unescape_and_parse_mountinfo_line() -> None:
    line = ("36 25 0:32 /sub\\040dir /mnt/a\\011b rw,nosuid shared:7 master:1 - cgroup "
            "cgroup rw,xattr,name=systemd\n")
    (m,) = procfs.parse_mountinfo(line)
    assert (m.mount_id, m.parent_id, m.device) == (36, 25, "0:32")
    assert m.root == "/sub dir" and m.mount_point == "/mnt/a\tb"
    assert m.optional == ("shared:7", "master:1")
    assert (m.fstype, m.source, m.super_options) == ("cgroup", "cgroup", "rw,xattr,name=systemd")
    assert procfs.unescape("a\\134b\\012") == "a\\b\n"


# The options cgroup1_parse_param() (kernel/cgroup/cgroup-v1.c) accepts besides controllers,
# as a v1 mount line shows them; the old watch(cgroup=) list lacked xattr, noprefix and
# cpuset_v2_mode, so e.g. systemd's "rw,xattr,name=systemd" hierarchy matched nothing.
_V1_NON_CONTROLLERS = ["none", "noprefix", "clone_children", "cpuset_v2_mode", "xattr",
                       "favordynmods", "release_agent=/bin/x", "rw", "ro"]


@pytest.mark.parametrize("opt", _V1_NON_CONTROLLERS)
def test_v1_option_is_not_a_controller(opt: str) -> None:
    line = (f"40 31 0:37 / /sys/fs/cgroup/x rw,nosuid,nodev,noexec,relatime shared:9 - cgroup "
            f"cgroup rw,{opt},cpu,cpuacct")
    (m,) = _cgroup.parse_mountinfo(line)
    # what /proc/<pid>/cgroup prints for that hierarchy: "N:cpu,cpuacct:/path"
    (entry,) = procfs.parse_cgroup("3:cpu,cpuacct:/job\n")
    assert m.controllers == tuple(entry[1].split(","))
    assert _cgroup.v1_controllers(f"rw,{opt},name=systemd") == ("name=systemd",)


def test_v1_hierarchy_watch_target_agrees_with_cgroup_file() -> None:
    """A real named v1 hierarchy mounted with xattr: the key watch(cgroup=) derives from the
    mount must find the child's line of /proc/<pid>/cgroup, and agree with the cgroup helper."""
    from exithand import _stream

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a cgroup v1 hierarchy")
    mnt = tempfile.mkdtemp()
    r = subprocess.run(["mount", "-t", "cgroup", "-o", "none,name=exithandt,xattr", "cgroup",
                        mnt], capture_output=True)
    if r.returncode:
        os.rmdir(mnt)
        pytest.skip(f"cgroup v1 mount refused: {r.stderr.decode().strip()}")
    sub = os.path.join(mnt, "job")
    p = None
    try:
        os.mkdir(sub)
        p, line = _child("import time\nprint('ready', flush=True)\ntime.sleep(60)")
        assert line.strip() == b"ready"
        with open(os.path.join(sub, "cgroup.procs"), "w") as f:
            f.write(str(p.pid))
        key, rel = _stream._cgroup_target(sub)
        assert rel == "/job"
        assert key == frozenset({"name=exithandt"})
        (helper,) = [m for m in _cgroup.cgroup_mounts() if m.mount_point == mnt]
        assert frozenset(helper.controllers) == key
        have = _stream._read_cgroup(p.pid)
        assert have is not None and have.get(key) == "/job"
    finally:
        if p is not None:
            _reap(p)
        if os.path.isdir(sub):
            os.rmdir(sub)
        subprocess.run(["umount", mnt], check=True)
        os.rmdir(mnt)


def test_write_oom_score_adj_of_a_child_and_refusal() -> None:
    p, line = _child("import time\nprint('ready', flush=True)\ntime.sleep(60)")
    try:
        assert line.strip() == b"ready"
        procfs.write(p.pid, "oom_score_adj", b"500")
        assert procfs.oom_score_adj(p.pid) == 500
        with pytest.raises(exithand.Error) as ei:
            procfs.write(p.pid, "oom_score_adj", b"5000")  # EINVAL: out of range
        assert ei.value.pid == p.pid
    finally:
        _reap(p)
