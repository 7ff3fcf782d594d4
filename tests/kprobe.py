"""Raw kernel probes for the test suite: what may *this user* do on *this kernel*?

A test that needs a permission or feature the kernel may refuse asks here, as the user it runs
as, and skips with the probe's own reason when refused.  Each probe is the smallest raw syscall
sequence that exercises the feature, written with :mod:`socket`, :mod:`os`, :mod:`fcntl` and
:mod:`ctypes` only: **never exithand's own code**, so a defect of ours can never turn into a
skip (a test that the library agrees with these probes lives in ``tests/test_kprobe.py``).

Why probe instead of comparing kernel versions: on Linux 6.18.44 here the proc connector's
socket opens for uid 65534 but ``bind()`` to its multicast group fails with EPERM, although 6.6
relaxed the subscription check for unprivileged users.  Distribution and stable builds, LSMs,
seccomp filters and sysctls all differ; the only rule is to try.

Probes (``NAMES``), each memoized per (name, uid):

``proc_connector``
    in the initial user and pid namespace (else the kernel ignores a subscription silently:
    ``/proc/self/ns/{user,pid}`` inodes ``0xEFFFFFFD``/``0xEFFFFFFC``), ``socket`` ->
    ``bind`` to ``CN_IDX_PROC`` -> ``PROC_CN_MCAST_LISTEN`` -> the exit event of a spawned
    ``true`` must arrive within 5 s.
``pidfd``
    ``pidfd_open(getpid())`` (5.3).
``pidfs``
    two pidfds of two processes have different inode numbers (pidfs, 6.9; before, every pidfd
    shares one anonymous inode).
``pidfd_info_exit``
    a child exits 7 and is reaped; ``PIDFD_GET_INFO`` with ``PIDFD_INFO_EXIT`` on its pidfd
    reports wait status ``7 << 8`` (6.15).
``pidfd_info_coredump``
    ``PIDFD_GET_INFO`` with ``PIDFD_INFO_COREDUMP`` (72-byte struct) on a living child sets that
    bit in the returned mask (6.16).
``pidfd_thread``
    ``pidfd_open(tid, PIDFD_THREAD)`` on a second thread of this process (6.9).
``process_mrelease``
    syscall 448 on a pidfd of a living child answers EINVAL (it exists and is not filtered;
    5.15).
``pid_max_per_ns``
    (root) ``unshare --pid --fork --mount-proc`` writes ``pid_max - 1`` inside; the host's value
    must be unchanged (pid_max is per pid namespace from 6.14; before, the write is global and
    is undone at once).
``cgroup_v2_writable``
    a cgroup v2 mount from ``/proc/self/mountinfo`` where a directory can be created and
    removed.

Run as another uid, a probe forks, drops all groups and sets real/effective/saved gid and uid,
then reports back over a pipe.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import pickle
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable, Optional

# <linux/connector.h>, <linux/cn_proc.h>
NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_EXIT = 0x80000000
PROC_USER_INIT_INO = 0xEFFFFFFD
PROC_PID_INIT_INO = 0xEFFFFFFC
# <linux/pidfd.h>: _IOWR(0xFF, 11, struct pidfd_info) with the 64-byte first version
PIDFD_INFO_EXIT = 1 << 3
PIDFD_GET_INFO = (3 << 30) | (64 << 16) | (0xFF << 8) | 11
PIDFD_INFO_COREDUMP = 1 << 4
PIDFD_GET_INFO_72 = (3 << 30) | (72 << 16) | (0xFF << 8) | 11
PIDFD_THREAD = os.O_EXCL
SYS_PROCESS_MRELEASE = 448  # x86_64, arm64 and every architecture using the generic table


@dataclass(frozen=True)
class Probe:
    """A probe's answer: ``ok``, or refused with ``reason`` (naming the refused step)."""

    name: str
    uid: int
    ok: bool
    reason: str

    def line(self) -> str:
        return f"{self.name:<18} uid {self.uid:<6} {'yes' if self.ok else 'no: ' + self.reason}"


def _proc_connector() -> tuple[bool, str]:
    try:
        if (os.stat("/proc/self/ns/user").st_ino != PROC_USER_INIT_INO
                or os.stat("/proc/self/ns/pid").st_ino != PROC_PID_INIT_INO):
            return False, ("not in the initial user and pid namespace: the kernel ignores "
                           "proc connector subscriptions from here")
    except OSError as e:
        return False, f"stat /proc/self/ns: {e.strerror}"
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as e:
        return False, f"socket(AF_NETLINK, NETLINK_CONNECTOR): {e.strerror}"
    with sock:
        try:
            sock.bind((0, CN_IDX_PROC))
        except OSError as e:
            return False, f"bind to the proc connector group: {e.strerror}"
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        msg = struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, os.getpid()) + cn  # NLMSG_DONE
        try:
            sock.send(msg)
        except OSError as e:
            return False, f"send PROC_CN_MCAST_LISTEN: {e.strerror}"
        child = os.posix_spawn("/bin/true", ["true"], {})
        os.waitpid(child, 0)
        deadline = time.monotonic() + 5
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data = sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                (ln,) = struct.unpack_from("=I", data, off)
                if ln < 16:
                    break
                body = off + 16 + 20  # nlmsghdr + cn_msg
                if body + 24 <= off + ln:
                    what, = struct.unpack_from("=I", data, body)
                    if what == PROC_EVENT_EXIT:
                        _pid, tgid = struct.unpack_from("=ii", data, body + 16)
                        if tgid == child:
                            return True, ""
                off += (ln + 3) & ~3
        return False, "subscribed, but the exit event of a spawned child never came (5 s)"


def _pidfd() -> tuple[bool, str]:
    if not hasattr(os, "pidfd_open"):
        return False, "this Python has no os.pidfd_open"
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as e:
        return False, f"pidfd_open: {e.strerror}"
    return True, ""


def _with_child(body: Callable[[int, int], tuple[bool, str]], code: str = "sleep 30"
                ) -> tuple[bool, str]:
    """Run ``body(pid, pidfd)`` on a child running ``sh -c CODE``; the child is killed/reaped."""
    ok, why = _pidfd()
    if not ok:
        return ok, why
    child = os.posix_spawn("/bin/sh", ["sh", "-c", code], {})
    fd = os.pidfd_open(child)
    try:
        return body(child, fd)
    finally:
        try:  # through the pidfd: never hits a reused number once reaped
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(child, 0)
        except ChildProcessError:
            pass
        os.close(fd)


def _pidfs() -> tuple[bool, str]:
    def body(_pid: int, fd: int) -> tuple[bool, str]:
        mine = os.pidfd_open(os.getpid())
        try:
            if os.fstat(mine).st_ino != os.fstat(fd).st_ino:
                return True, ""
            return False, "pidfds share one anonymous inode (no pidfs: Linux < 6.9)"
        finally:
            os.close(mine)
    return _with_child(body)


def _pidfd_info_exit() -> tuple[bool, str]:
    def body(pid: int, fd: int) -> tuple[bool, str]:
        os.waitpid(pid, 0)  # reap: PIDFD_INFO_EXIT is there only after the reap
        buf = bytearray(64)
        struct.pack_into("=Q", buf, 0, PIDFD_INFO_EXIT)
        try:
            fcntl.ioctl(fd, PIDFD_GET_INFO, buf)
        except OSError as e:
            return False, f"ioctl PIDFD_GET_INFO: {e.strerror} (Linux < 6.13?)"
        mask, = struct.unpack_from("=Q", buf, 0)
        status, = struct.unpack_from("=i", buf, 60)
        if not mask & PIDFD_INFO_EXIT:
            return False, "PIDFD_GET_INFO returns no PIDFD_INFO_EXIT (Linux < 6.15)"
        if status != 7 << 8:
            return False, f"PIDFD_INFO_EXIT said wait status {status:#x} for an exit 7"
        return True, ""
    return _with_child(body, "exit 7")


def _pidfd_info_coredump() -> tuple[bool, str]:
    def body(_pid: int, fd: int) -> tuple[bool, str]:
        buf = bytearray(72)
        struct.pack_into("=Q", buf, 0, PIDFD_INFO_COREDUMP)
        try:
            fcntl.ioctl(fd, PIDFD_GET_INFO_72, buf)
        except OSError as e:
            return False, f"ioctl PIDFD_GET_INFO (72 bytes): {e.strerror} (Linux < 6.13?)"
        mask, = struct.unpack_from("=Q", buf, 0)
        if not mask & PIDFD_INFO_COREDUMP:
            return False, "PIDFD_GET_INFO returns no PIDFD_INFO_COREDUMP (Linux < 6.16)"
        return True, ""
    return _with_child(body)


def _pidfd_thread() -> tuple[bool, str]:
    import threading

    ok, why = _pidfd()
    if not ok:
        return ok, why
    tids: list[int] = []
    ready, done = threading.Event(), threading.Event()

    def run() -> None:
        tids.append(threading.get_native_id())
        ready.set()
        done.wait(10)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(10)
    try:
        fd = os.pidfd_open(tids[0], PIDFD_THREAD)
    except OSError as e:
        return False, f"pidfd_open(tid, PIDFD_THREAD): {e.strerror} (Linux < 6.9)"
    finally:
        done.set()
        t.join(10)
    os.close(fd)
    return True, ""


def _process_mrelease() -> tuple[bool, str]:
    libc = ctypes.CDLL(None, use_errno=True)

    def body(_pid: int, fd: int) -> tuple[bool, str]:
        res = libc.syscall(ctypes.c_long(SYS_PROCESS_MRELEASE), ctypes.c_int(fd),
                           ctypes.c_uint(0))
        err = ctypes.get_errno()
        if res == -1 and err == errno.EINVAL:  # alive, not dying: the syscall is there
            return True, ""
        return False, f"process_mrelease: {os.strerror(err) if res else 'returned 0'}"
    return _with_child(body)


def _cgroup_v2_writable() -> tuple[bool, str]:
    root = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                root = left.split()[4]
                break
    if root is None:
        return False, "no cgroup2 mount in /proc/self/mountinfo"
    path = os.path.join(root, f"kprobe-{os.getpid()}")
    try:
        os.mkdir(path)
    except OSError as e:
        return False, f"mkdir in {root}: {e.strerror}"
    os.rmdir(path)
    return True, ""


def _pid_max_per_ns() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root (unshare --pid)"
    path = "/proc/sys/kernel/pid_max"
    with open(path) as f:
        host = f.read().strip()
    cmd = f"echo {int(host) - 1} > {path}"
    import subprocess
    try:
        res = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", cmd],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"unshare --pid: {e}"
    with open(path) as f:
        after = f.read().strip()
    if after != host:
        with open(path, "w") as f:
            f.write(host)
        return False, "pid_max is global on this kernel (per pid namespace from Linux 6.14)"
    if res.returncode != 0:
        return False, f"cannot set pid_max in a new pid namespace: {res.stderr.strip()}"
    return True, ""


PROBES: dict[str, Callable[[], tuple[bool, str]]] = {
    "proc_connector": _proc_connector,
    "pidfd": _pidfd,
    "pidfs": _pidfs,
    "pidfd_info_exit": _pidfd_info_exit,
    "pidfd_info_coredump": _pidfd_info_coredump,
    "pidfd_thread": _pidfd_thread,
    "process_mrelease": _process_mrelease,
    "pid_max_per_ns": _pid_max_per_ns,
    "cgroup_v2_writable": _cgroup_v2_writable,
}
NAMES = tuple(PROBES)


def _run_as(uid: int, fn: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop every id, then probe
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                out = fn()
            except BaseException as e:  # a probe that crashes reports it, never hangs
                out = (False, f"probe crashed: {e!r}")
            os.write(w, pickle.dumps(out))
        finally:
            os._exit(0)
    os.close(w)
    try:
        chunks = []
        deadline = time.monotonic() + 20
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([r], [], [], left)[0]:
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            os.kill(pid, 9)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if not chunks:
        return False, "probe child gave no answer"
    result: tuple[bool, str] = pickle.loads(b"".join(chunks))
    return result


@functools.cache
def probe(name: str, uid: Optional[int] = None) -> Probe:
    """Ask the kernel whether ``uid`` (default: this process's user) may use ``name``."""
    fn = PROBES[name]
    if uid is None or uid == os.geteuid():
        ok, why = fn()
        return Probe(name, os.geteuid(), ok, why)
    if os.geteuid() != 0:
        return Probe(name, uid, False, f"cannot become uid {uid} to probe (not root)")
    ok, why = _run_as(uid, fn)
    return Probe(name, uid, ok, why)


def skip_reason(p: Probe) -> Optional[str]:
    """The skip message for a refused probe, ``None`` when the test must run."""
    if p.ok:
        return None
    return f"kernel refuses {p.name} to uid {p.uid}: {p.reason}"


def report_lines() -> list[str]:
    """Every probe as this user and, when root, as nobody (65534): the suite's assumptions."""
    uids = [os.geteuid()] + ([65534] if os.geteuid() == 0 else [])
    lines = [f"kernel {os.uname().release}; raw kernel probes (tests/kprobe.py):"]
    for name in NAMES:
        for uid in uids:
            lines.append("  " + probe(name, uid).line())
    return lines


if __name__ == "__main__":  # scripts/test.sh prints this before the suite runs
    print("\n".join(report_lines()))
