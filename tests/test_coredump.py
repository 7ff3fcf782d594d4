"""Coredump details at death: ``ExitStatus.coredump`` and where it shows.

Real crashing processes that are not our children (conftest's ``Victim``: a grandchild that
kills itself with SIGSEGV / SIGABRT), with RLIMIT_CORE 0 and with dumps allowed, on every
backend; the kernel's own record (``PIDFD_INFO_COREDUMP``, 6.16) through a coredump socket; and
the forced fallback without it (``EXITHAND_DISABLE=pidfd_coredump``), where the wait status'
core bit is the only source and says so.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import struct
from pathlib import Path

import pytest
from corehelp import core_pattern_writable, core_rlimit, coredump_socket

import exithand
from conftest import env_with_src, require, wait_holds_pidfd
from exithand._kernel import syscalls as _sys

pytestmark = pytest.mark.timeout(60)

UNLIMITED = resource.RLIM_INFINITY


def _crash(victim_factory, tmp_path: Path, sig: int, limit: int, reap: bool):
    v = victim_factory(reap=reap, preexec_fn=core_rlimit(limit, tmp_path))
    h = exithand.open(v.pid)
    v.die_by(sig)
    st = h.wait(timeout=30)
    return v, h, st


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT])
def test_no_core_with_rlimit_zero(backend, victim_factory, tmp_path, sig):
    """RLIMIT_CORE 0 and a file core_pattern: no dump; the status says so, from its source."""
    with open("/proc/sys/kernel/core_pattern") as f:
        if f.read().startswith(("|", "@")):
            pytest.skip("core_pattern pipes/sockets dump regardless of RLIMIT_CORE")
    _v, h, st = _crash(victim_factory, tmp_path, sig, 0, reap=False)
    with h:
        assert st.known and st.signal == sig, st
        assert st.core_dumped is False
        assert st.coredump is not None and st.coredump.dumped is False
        assert st.coredump.source == st.source  # the wait status' core bit
        assert "core" not in st.describe()
    assert not list(tmp_path.glob("core*"))


@pytest.mark.parametrize("reap", [False, True])
def test_core_dumped_when_allowed(backend, victim_factory, tmp_path, reap):
    """Dumps allowed: the core bit says dumped (zombie field 52 / connector / PIDFD_INFO_EXIT),
    and the core file (default relative pattern) lands in tmp_path, never in the tree."""
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    _v, h, st = _crash(victim_factory, tmp_path, signal.SIGABRT, UNLIMITED, reap=reap)
    with h:
        if not st.known:
            # procpoll without the connector cannot learn a reaped non-child's status
            assert backend == "procpoll" and reap, st
            assert st.coredump is None
            return
        assert st.signal == signal.SIGABRT
        assert st.core_dumped is True and st.coredump is not None and st.coredump.dumped
        assert st.describe().endswith("(core dumped).") or "core dumped as" in st.describe()
        d = st.as_dict()
        assert d["coredump"]["dumped"] is True and d["core_dumped"] is True
    if pattern.startswith("core"):
        assert list(tmp_path.glob("core*")), "no core file in the victim's cwd"


def test_exit_has_no_coredump(backend, victim_factory):
    v = victim_factory(reap=False)
    with exithand.open(v.pid) as h:
        v.exit(3)
        st = h.wait(timeout=30)
        assert st.exit_code == 3 and st.coredump is None and st.as_dict()["coredump"] is None


def test_kernel_probe_fields():
    """Probe, never versions: what this kernel fills for a dead process's coredump fields."""
    require("pidfd_info_coredump")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    fd = os.pidfd_open(pid)
    try:
        os.waitpid(pid, 0)
        info = _sys.pidfd_get_info(fd, _sys.PIDFD_INFO_EXIT | _sys.PIDFD_INFO_COREDUMP
                                   | _sys.PIDFD_INFO_COREDUMP_SIGNAL
                                   | _sys.PIDFD_INFO_SUPPORTED_MASK)
    finally:
        os.close(fd)
    assert info.mask & _sys.PIDFD_INFO_COREDUMP and info.coredump_mask == 0
    # 6.19 adds COREDUMP_SIGNAL and SUPPORTED_MASK: the wrapper reports them only if set
    assert (info.coredump_signal is None) == (not info.mask & _sys.PIDFD_INFO_COREDUMP_SIGNAL)
    assert (info.supported_mask is None) == (not info.mask & _sys.PIDFD_INFO_SUPPORTED_MASK)
    # the raw 88-byte answer agrees with the wrapper (what the kernel says it filled)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    fd = os.pidfd_open(pid)
    try:
        os.waitpid(pid, 0)
        buf = bytearray(88)
        struct.pack_into("=Q", buf, 0, 0xFF)
        fcntl.ioctl(fd, _sys.PIDFD_GET_INFO, buf)
        raw_mask, = struct.unpack_from("=Q", buf, 0)
        assert raw_mask & 0xF8 == info.mask & 0xF8
    finally:
        os.close(fd)


@pytest.fixture
def core_socket(tmp_path):
    require("pidfd_info_coredump")
    why = core_pattern_writable()
    if why:
        pytest.skip(why)
    with coredump_socket(tmp_path) as sizes:
        yield sizes


@pytest.mark.parametrize("reap", [False, True])
def test_kernel_record_through_coredump_socket(core_socket, victim_factory, tmp_path,
                                               monkeypatch, reap):
    """A dump into a coredump socket: the kernel records COREDUMPED|USER (6.16), exithand
    reports it with source pidfd_info and 'as user', in the zombie phase and after the reap;
    RLIMIT_CORE 0 does not stop a socket dump."""
    monkeypatch.setenv("EXITHAND_BACKEND", "pidfd")
    v, h, st = _crash(victim_factory, tmp_path, signal.SIGSEGV, 0, reap=reap)
    with h:
        assert st.signal == signal.SIGSEGV and st.core_dumped
        cd = st.coredump
        assert cd is not None and cd.dumped and cd.source == "pidfd_info", st
        assert cd.written_as == "user" and not cd.skipped
        asked = _sys.PIDFD_INFO_COREDUMP_SIGNAL | _sys.PIDFD_INFO_EXIT
        if not _sys.pidfd_get_info(h.fileno(), asked).mask & _sys.PIDFD_INFO_COREDUMP_SIGNAL:
            assert cd.signal is None  # 6.18: the signal is not reported (6.19 adds it)
        else:
            assert cd.signal == signal.SIGSEGV
        assert st.describe() == f"{v.pid}: killed by signal 11 (core dumped as user)."
    assert core_socket.got.wait(10), "the socket server got no dump"


def test_forced_without_pidfd_coredump(core_socket, victim_factory, tmp_path, monkeypatch):
    """EXITHAND_DISABLE=pidfd_coredump: the same dump is known only from the core bit, and the
    coredump says that source (no 'as user')."""
    monkeypatch.setenv("EXITHAND_BACKEND", "pidfd")
    monkeypatch.setenv("EXITHAND_DISABLE", "pidfd_coredump")
    v, h, st = _crash(victim_factory, tmp_path, signal.SIGSEGV, 0, reap=False)
    with h:
        assert st.source == "zombie" and st.core_dumped
        cd = st.coredump
        assert cd is not None and cd.dumped and cd.source == "zombie" and cd.written_as is None
        assert st.describe() == f"{v.pid}: killed by signal 11 (core dumped)."


def test_cli_wait_reports_coredump(core_socket, victim_factory, tmp_path):
    """``exithand wait -v`` and ``--json`` carry the kernel's coredump record."""
    v = victim_factory(reap=False, preexec_fn=core_rlimit(0, tmp_path))
    w = victim_factory(reap=False, preexec_fn=core_rlimit(0, tmp_path))
    import subprocess
    import sys
    env = env_with_src(EXITHAND_BACKEND="pidfd")
    p1 = subprocess.Popen([sys.executable, "-m", "exithand", "wait", "-v", str(v.pid)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    p2 = subprocess.Popen([sys.executable, "-m", "exithand", "wait", "--json", str(w.pid)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # the CLIs open their targets before waiting; the victims die only on command, so
        # wait until each CLI holds a pidfd on its victim
        for p, pid in ((p1, v.pid), (p2, w.pid)):
            wait_holds_pidfd(p.pid, pid)
        v.die_by(signal.SIGSEGV)
        w.die_by(signal.SIGSEGV)
        out1, err1 = p1.communicate(timeout=30)
        out2, err2 = p2.communicate(timeout=30)
    finally:
        for p in (p1, p2):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p1.returncode == 0, err1
    assert out1 == f"{v.pid}: killed by signal 11 (core dumped as user).\n"
    assert p2.returncode == 0, err2
    d = json.loads(out2)
    assert d["core_dumped"] is True
    assert d["coredump"] == {"dumped": True, "skipped": False, "written_as": "user",
                             "signal": d["coredump"]["signal"], "source": "pidfd_info"}

