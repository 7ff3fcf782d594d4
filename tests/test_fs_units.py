"""The filesystem's pure parts: name parsing, policy decisions, siginfo layout, signal scan."""

from __future__ import annotations

import os
import signal
import struct
import threading

import pytest

import exithand
from exithand.fs import access as policy
from exithand.fs import names, siginfo


@pytest.mark.parametrize("name,want", [
    (b"1", (1, None)), (b"1234", (1234, None)), (b"1234:81", (1234, 81)),
    (b"0", None), (b"-1", None), (b"007", None), (b"+5", None), (b" 5", None), (b"5 ", None),
    ("\uff11\uff12".encode(), None), (b"12:", None), (b":12", None), (b"12:0", None),
    (b"12:x", None),
    (b"12:3:4", None), (b"99999999999999999999999", None), (str(2**22 + 1).encode(), None),
    (b"\xff", None), (b"", None), (b"exithand", None),
])
def test_parse_dir_name(name, want):
    assert names.parse_dir_name(name) == want


def test_file_kind():
    assert [names.file_kind(n.encode()) for n in names.FILES] == [1, 2, 3]
    assert names.file_kind(b"EXITHAND") is None and names.file_kind(b"\xff") is None


def _kernel(ans):
    """A stand-in for asking the kernel (the real question is tested through real mounts in
    test_fs_leaks.py); records that it was asked."""
    asked = []

    def ask():
        asked.append(1)
        return ans
    ask.asked = asked
    return ask


YES, NO, CANNOT = (True, ""), (False, ""), (None, "reaped first")


@pytest.mark.parametrize("pol,caller,ppid,kernel,want,asks", [
    ("same-user", policy.Caller(1000, 1000, 5, False), 100, YES, True, True),
    ("same-user", policy.Caller(1000, 1000, 5, False), 100, NO, False, True),
    ("same-user", policy.Caller(1000, 1000, 5, False), 100, CANNOT, False, True),
    ("same-user", policy.Caller(1000, 1000, 100, False), 100, NO, True, False),  # parent
    ("same-user", policy.Caller(1000, 1000, 5, True), 100, NO, True, False),  # CAP_SYS_PTRACE
    ("same-user", policy.Caller(0, 0, 5, False), 100, NO, False, True),  # uid 0, no caps
    ("same-user", policy.Caller(1000, 1000, 5, False), None, YES, True, True),
    ("public", policy.Caller(1000, 1000, 5, False), None, NO, True, False),
    ("parent", policy.Caller(1000, 1000, 5, False), 100, YES, False, False),
    ("parent", policy.Caller(1000, 1000, 100, False), 100, NO, True, False),
    ("root", policy.Caller(1000, 1000, 100, False), 100, YES, False, False),
    ("root", policy.Caller(0, 0, 5, False), 100, NO, True, False),
    ("root", policy.Caller(1000, 1000, 5, True), 100, NO, True, False),
])
def test_policy_decide(pol, caller, ppid, kernel, want, asks):
    ask = _kernel(kernel)
    ok, why = policy.decide(pol, caller, ppid, ask)
    assert ok is want and (ok or why)
    assert bool(ask.asked) is asks


def test_caller_from_real_status():
    with open(f"/proc/{os.getpid()}/status", "rb") as f:
        c = policy.caller_from_status(os.getuid(), os.getgid(), os.getpid(), f.read())
    assert c.tgid == os.getpid() and c.privileged == (os.getuid() == 0)
    c = policy.caller_from_status(1000, 100, 5, b"Tgid:\t9\nCapEff:\t0000000000080000\n")
    assert c == policy.Caller(1000, 100, 9, True)  # CAP_SYS_PTRACE
    assert policy.caller_from_status(1000, 100, 5, None) == policy.Caller(1000, 100, -1, False)
    c = policy.caller_from_status(0, 0, 5, b"Tgid:\t9\nCapEff:\t0000000000000000\n")
    assert c == policy.Caller(0, 0, 9, False)  # root without CAP_SYS_PTRACE: not privileged


def test_signal_pending_parsing():
    kill = 1 << (signal.SIGKILL - 1)
    usr1 = 1 << (signal.SIGUSR1 - 1)
    text = "SigPnd:\t{:016x}\nShdPnd:\t{:016x}\nSigBlk:\t{:016x}\n"
    assert policy.signal_pending(text.format(kill, 0, 0).encode())
    assert policy.signal_pending(text.format(0, usr1, 0).encode())
    assert not policy.signal_pending(text.format(usr1, 0, usr1).encode())  # blocked
    assert not policy.signal_pending(text.format(0, 0, 0).encode())
    assert policy.signal_pending(text.format(kill, 0, ~0 & (2**64 - 1)).encode())


def test_signal_pending_on_a_real_thread():
    """A real blocked-then-pending signal in our own thread, read through /proc."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    tid = threading.get_native_id()
    try:
        assert not policy.signal_pending(policy.read_thread_status(tid) or b"")
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
        text = policy.read_thread_status(tid) or b""
        assert int(policy.parse_status(text)[b"SigPnd"], 16) & (1 << (signal.SIGUSR2 - 1))
        assert not policy.signal_pending(text)  # pending but blocked: not for us
    finally:
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # discard it, then restore
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)


def test_siginfo_pack():
    st = exithand.ExitStatus.from_wait_status(1234, 7 << 8, "child")
    b = siginfo.pack(st, 65534)
    assert len(b) == 128 and b[28:] == bytes(100)
    assert struct.unpack_from("=iiiiiIi", b) == (signal.SIGCHLD, 0, os.CLD_EXITED, 0, 1234,
                                                 65534, 7)
    st = exithand.ExitStatus.from_wait_status(9, signal.SIGSEGV | 0x80, "child")
    assert struct.unpack_from("=iiiiiIi", siginfo.pack(st, 0))[2:] == (
        os.CLD_DUMPED, 0, 9, 0, signal.SIGSEGV)
    with pytest.raises(ValueError):
        siginfo.pack(exithand.ExitStatus.unknown(5, "no source"), 0)


def test_scanner_period_bounded_cost():
    from exithand.fs.scanner import Scanner

    s = Scanner(list, 0.2)
    assert s.period(1) == 0.2 and s.period(1000) == 0.2
    assert s.period(10_000) == 2.0
