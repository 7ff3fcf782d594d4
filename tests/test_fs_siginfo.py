"""exithand_full: the 128-byte siginfo_t, decoded with ctypes, against waitid's own answer."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess

import pytest
from fshelp import fsmount, needs_fuse, procs  # noqa: F401

from conftest import NOBODY

pytestmark = [needs_fuse, pytest.mark.timeout(60)]


class SigInfo(ctypes.Structure):
    """``siginfo_t`` for SIGCHLD on 64-bit Linux (x86_64, aarch64)."""

    _fields_ = [
        ("si_signo", ctypes.c_int), ("si_errno", ctypes.c_int), ("si_code", ctypes.c_int),
        ("_pad", ctypes.c_int), ("si_pid", ctypes.c_int), ("si_uid", ctypes.c_uint32),
        ("si_status", ctypes.c_int), ("_pad2", ctypes.c_int), ("si_utime", ctypes.c_long),
        ("si_stime", ctypes.c_long), ("_rest", ctypes.c_char * (128 - 48)),
    ]


assert ctypes.sizeof(SigInfo) == 128



def _run(fs, procs, action: str, **kw):  # noqa: F811
    t = procs.start(["sh", "-c", f"read x; {action}"], stdin=subprocess.PIPE, **kw)
    cat = procs.start(["cat", fs.path(t.pid, "exithand_full")], stdout=subprocess.PIPE)
    fs.wait_blocked(t.pid)
    t.stdin.write(b"go\n")
    t.stdin.flush()
    out, _ = cat.communicate(timeout=20)
    assert cat.returncode == 0 and len(out) == 128, out
    si = SigInfo.from_buffer_copy(out)
    truth = os.waitid(os.P_PID, t.pid, os.WEXITED | os.WNOWAIT)  # we are the parent
    assert si.si_signo == signal.SIGCHLD and si.si_errno == 0 and si.si_pid == t.pid
    assert (si.si_code, si.si_status) == (truth.si_code, truth.si_status)
    assert out[48:] == bytes(80)
    return si, t


def test_exit_7_as_nobody(fsmount, procs, tmp_path):  # noqa: F811
    fs = fsmount()
    si, _ = _run(fs, procs, "exit 7", preexec_fn=lambda: os.setresuid(NOBODY, NOBODY, NOBODY))
    assert (si.si_code, si.si_status, si.si_uid) == (os.CLD_EXITED, 7, NOBODY)


def test_sigkill(fsmount, procs):  # noqa: F811
    fs = fsmount()
    si, _ = _run(fs, procs, "kill -9 $$")
    assert (si.si_code, si.si_status, si.si_uid) == (os.CLD_KILLED, signal.SIGKILL, 0)


def test_core_dump(fsmount, procs, tmp_path):  # noqa: F811
    fs = fsmount()

    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)

    si, _ = _run(fs, procs, "kill -ABRT $$",
                 cwd=str(tmp_path), preexec_fn=pre)
    if si.si_code != os.CLD_DUMPED:
        with open("/proc/sys/kernel/core_pattern") as f:
            pytest.skip(f"the kernel wrote no core here (core_pattern {f.read().strip()!r})")
    assert si.si_status == signal.SIGABRT
