"""The netlink proc connector, at the byte level: subscribe, parse, self-test.

Hand-written with :mod:`socket` and :mod:`struct` rather than taken from pyroute2 (whose
``pyroute2.netlink.connector.cn_proc.ProcEventSocket`` we evaluated): the core must stay
standard-library only, the whole protocol is four small structs, and pyroute2's control message
is always the 4-byte pre-6.6 form (no event filter), it has no way to detect a silently ignored
subscription and no overflow accounting, which are exactly the parts that matter here.

Wire format (``<linux/netlink.h>``, ``<linux/connector.h>``, ``<linux/cn_proc.h>``), all host
endian::

    struct nlmsghdr   { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }          16 bytes
    struct cn_msg     { u32 idx; u32 val; u32 seq; u32 ack; u16 len; u16 flags; }   20 bytes
    struct proc_event { u32 what; u32 cpu; u64 timestamp_ns; union event_data; }
    exit:  { pid_t pid, tgid; u32 exit_code, exit_signal; pid_t parent_pid, parent_tgid; }
    fork:  { pid_t parent_pid, parent_tgid, child_pid, child_tgid; }
    exec:  { pid_t pid, tgid; }        uid: { pid_t pid, tgid; u32 ruid, euid; }
    comm:  { pid_t pid, tgid; char comm[16]; }

Kernel facts relied upon (``drivers/connector/cn_proc.c``):

* Subscribing is a ``PROC_CN_MCAST_LISTEN`` message sent to the kernel on a socket bound to
  multicast group ``CN_IDX_PROC``.  Linux 6.6 added ``struct proc_input { op; event_type; }``
  (8 bytes) whose ``event_type`` bitmask filters events in the kernel; kernels before 6.6 ignore a
  message that is not exactly 4 bytes, so we fall back to the 4-byte form (all events).
* Before 6.6 the subscribe needs ``CAP_NET_ADMIN`` (an error ack otherwise).  6.6 relaxed the
  kernel's own check so that unprivileged users *may* subscribe, but this is kernel-dependent in
  practice: on 6.18.44 here the socket opens for uid 65534 and ``bind()`` to the group fails
  with ``EPERM`` (netlink's multicast-bind permission; distribution builds, LSMs and backports
  differ).  So nothing is assumed from the version: every step is tried, and a refusal names its
  step (:class:`SubscribeError`).  A request from outside the initial user *and* pid namespace
  is **silently ignored**.  So availability is decided by a self-test (:func:`self_test`):
  spawn a child that exits at once and see its exit event arrive within a bounded time.  This
  also rejects a listener in a child pid namespace, where events would carry pids of the
  initial namespace.
* A socket whose subscription was ignored still *receives* every event while some other
  process on the system is subscribed (the kernel generates events only while someone listens,
  and its 6.6+ filter passes sockets that never subscribed).  So a self-test alone could pass by
  riding on someone else's subscription, and silently stop when they leave.  We therefore also
  check the conditions the kernel checks (:func:`subscription_refused`): the initial user and
  pid namespaces (their ``/proc/self/ns/*`` inodes are the fixed ``PROC_USER_INIT_INO``
  ``0xEFFFFFFD`` and ``PROC_PID_INIT_INO`` ``0xEFFFFFFC``), and CAP_NET_ADMIN before 6.6.
* Events carry global pids and ``timestamp_ns`` from ``ktime_get_ns()`` (``CLOCK_MONOTONIC``).
  ``seq`` counts events per CPU, assigned and sent under a per-CPU lock, so a gap in one CPU's
  sequence is an exact count of events lost by an unfiltered listener.
* The exit event is sent from ``do_exit()`` *after* ``exit_notify()``: when it is read, the
  thread group is already a zombie (or reaped), and a pidfd for it is readable.  It is sent for
  every exiting *thread*; ``exit_code`` is the raw wait status (``group_exit_code`` for every
  thread of a group exit, so the last thread's event carries what ``waitpid`` will report).
* A full receive queue drops events; the next ``recv`` fails with ``ENOBUFS`` once.
"""

from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

from . import procfs
from . import syscalls as _sys
from .errors import Error

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3

PROC_EVENT_NONE = 0x0
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXEC = 0x2
PROC_EVENT_UID = 0x4
PROC_EVENT_COMM = 0x200
PROC_EVENT_EXIT = 0x80000000

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

_NLHDR = struct.Struct("=IHHII")
_CNHDR = struct.Struct("=IIIIHH")
_EVHDR = struct.Struct("=IIQ")
_EXIT = struct.Struct("=iiIIii")
_FORK = struct.Struct("=iiii")
_PIDS = struct.Struct("=ii")
_UID = struct.Struct("=iiII")
_HDRS = _NLHDR.size + _CNHDR.size  # 36
_DATA = _HDRS + _EVHDR.size  # 52: start of event_data

#: how long the self-test waits for its child's exit event (seconds)
SELF_TEST_TIMEOUT = 3.0
#: receive buffer during the self-test (bytes)
SELF_TEST_RCVBUF = 4 << 20


@dataclass(frozen=True)
class ProcEvent:
    """One decoded proc connector event.

    ``what`` is the ``PROC_EVENT_*`` type; ``pid``/``tgid`` the thread and process (for fork:
    the child); ``ppid`` the parent process (exit, fork); ``exit_code`` the raw wait status and
    ``exit_signal`` the signal the parent is sent (exit); ``ruid``/``euid`` (uid); ``comm`` (comm).
    """

    what: int
    cpu: int
    seq: int
    timestamp_ns: int
    pid: int = 0
    tgid: int = 0
    ppid: int = 0
    exit_code: int = 0
    exit_signal: int = 0
    ruid: int = -1
    euid: int = -1
    comm: Optional[str] = None


def parse(data: bytes) -> Iterator[ProcEvent]:
    """Decode every proc event in one datagram (normally one).  Malformed tails are skipped."""
    off = 0
    while off + _DATA <= len(data):
        nl_len = _NLHDR.unpack_from(data, off)[0]
        if nl_len < _DATA or off + nl_len > len(data):
            return
        idx, val, seq, _ack, cn_len, _fl = _CNHDR.unpack_from(data, off + _NLHDR.size)
        if idx == CN_IDX_PROC and val == CN_VAL_PROC and cn_len >= _EVHDR.size:
            what, cpu, ts = _EVHDR.unpack_from(data, off + _HDRS)
            d = off + _DATA
            end = off + nl_len
            if what == PROC_EVENT_EXIT and d + _EXIT.size <= end:
                pid, tgid, code, sig, _ppid, ptgid = _EXIT.unpack_from(data, d)
                yield ProcEvent(what, cpu, seq, ts, pid, tgid, ptgid, code, sig)
            elif what == PROC_EVENT_FORK and d + _FORK.size <= end:
                _pp, ptgid, cpid, ctgid = _FORK.unpack_from(data, d)
                yield ProcEvent(what, cpu, seq, ts, cpid, ctgid, ptgid)
            elif what == PROC_EVENT_UID and d + _UID.size <= end:
                pid, tgid, ruid, euid = _UID.unpack_from(data, d)
                yield ProcEvent(what, cpu, seq, ts, pid, tgid, ruid=ruid, euid=euid)
            elif what == PROC_EVENT_COMM and d + 24 <= end:
                pid, tgid = _PIDS.unpack_from(data, d)
                raw = data[d + 8 : d + 24].split(b"\0", 1)[0]
                yield ProcEvent(what, cpu, seq, ts, pid, tgid,
                                comm=raw.decode("utf-8", "replace"))
            elif d + _PIDS.size <= end:
                pid, tgid = _PIDS.unpack_from(data, d)
                yield ProcEvent(what, cpu, seq, ts, pid, tgid)
        off += (nl_len + 3) & ~3


def _control(op: int, events: Optional[int]) -> bytes:
    payload = struct.pack("=I", op) if events is None else struct.pack("=II", op, events)
    cn = _CNHDR.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLHDR.pack(_NLHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


class SubscribeError(OSError):
    """A step of opening or subscribing a proc connector socket was refused.

    ``step`` names it ("open a NETLINK_CONNECTOR socket", "bind to the proc connector group",
    "send the listen request"), so that errors say what the kernel refused rather than "cannot
    open a socket": on some 6.6+ kernels the socket opens for anyone but ``bind()`` to the
    group fails with ``EPERM`` for unprivileged users (measured on 6.18.44 here).
    """

    def __init__(self, step: str, err: OSError) -> None:
        super().__init__(err.errno, err.strerror)
        self.step = step

    def explain(self) -> str:
        """``"STEP: STRERROR"`` plus a hint where a refusal is a kernel permission decision."""
        text = f"{self.step}: {self.strerror or os.strerror(self.errno or 0)}"
        if self.errno in (errno.EPERM, errno.EACCES) and not _has_cap(CAP_NET_ADMIN):
            text += (" (this kernel does not let unprivileged users subscribe; run as root or "
                     "with CAP_NET_ADMIN)")
        return text


def open_socket(events: Optional[int], rcvbuf: Optional[int] = None) -> socket.socket:
    """A proc connector socket, subscribed (``events=None``: the 4-byte, unfiltered form).

    ``rcvbuf``: receive buffer in bytes (``SO_RCVBUFFORCE`` when privileged, else ``SO_RCVBUF``,
    which the kernel caps at ``net.core.rmem_max``).  Raises :class:`SubscribeError` naming the
    refused step.
    """
    step = "open a NETLINK_CONNECTOR socket"
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                             NETLINK_CONNECTOR)
    except OSError as e:
        raise SubscribeError(step, e) from e
    try:
        if rcvbuf is not None:
            step = "set the receive buffer"
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        step = "bind to the proc connector group"
        sock.bind((0, CN_IDX_PROC))
        step = "send the listen request"
        sock.send(_control(PROC_CN_MCAST_LISTEN, events))
    except OSError as e:
        sock.close()
        raise SubscribeError(step, e) from e
    except BaseException:
        sock.close()
        raise
    return sock


def _spawn_quick_exit() -> int:
    true = shutil.which("true") or "/bin/true"
    if os.path.exists(true):
        return os.posix_spawn(true, [true], {})
    return os.posix_spawn(sys.executable, [sys.executable, "-S", "-c", ""], {})


def self_test(sock: socket.socket, timeout: float = SELF_TEST_TIMEOUT) -> bool:
    """Does this subscribed socket really receive exit events with pids of our namespace?

    Spawns a child that exits at once and waits (bounded) for its exit event; the child is
    reaped here.  Other events read meanwhile are discarded (call before anyone relies on them).
    """
    try:
        child = _spawn_quick_exit()
    except OSError:
        return False
    deadline = time.monotonic() + timeout
    found = False
    try:
        while not found:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            try:
                data = sock.recv(65536)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    continue  # possibly lost ours; keep waiting, a miss only means "unavailable"
                raise
            found = any(ev.what == PROC_EVENT_EXIT and ev.tgid == child for ev in parse(data))
    finally:
        os.waitpid(child, 0)
    return found


PROC_USER_INIT_INO = 0xEFFFFFFD
PROC_PID_INIT_INO = 0xEFFFFFFC
CAP_NET_ADMIN = 12


def _kernel_version() -> tuple[int, int]:
    try:
        major, minor = os.uname().release.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


_has_cap = procfs.has_cap


def subscription_refused() -> Optional[str]:
    """Why the kernel would ignore or refuse our subscription, or None if it should not.

    ``EXITHAND_DISABLE=connector`` refuses it too (to test what other systems get).
    """
    if _sys.feature_disabled("connector"):
        return "disabled by EXITHAND_DISABLE=connector"
    try:
        user_ino = procfs.ns_stat("self", "user").st_ino
        pid_ino = procfs.ns_stat("self", "pid").st_ino
    except Error as e:
        return f"cannot read /proc/self/ns: {e}"
    if user_ino != PROC_USER_INIT_INO or pid_ino != PROC_PID_INIT_INO:
        return ("not in the initial user and pid namespace (e.g. inside a container): the "
                "kernel ignores proc connector subscriptions from there")
    if _kernel_version() < (6, 6) and not _has_cap(CAP_NET_ADMIN):
        return (f"kernel {os.uname().release} < 6.6 lets only CAP_NET_ADMIN (root) subscribe "
                "to the proc connector")
    return None


def subscribe_checked(events: Optional[int],
                      rcvbuf: Optional[int] = None
                      ) -> tuple[Optional[socket.socket], bool, str]:
    """Open, subscribe and self-test; ``(socket, filtered, "")`` or ``(None, False, reason)``.

    With ``events`` set, first tries the 6.6+ filtered subscription, then the unfiltered one
    (older kernels drop the 8-byte request without a word).
    """
    refused = subscription_refused()
    if refused:
        return None, False, refused
    attempts: list[Optional[int]] = [events, None] if events is not None else [None]
    reason = ""
    for ev in attempts:
        try:
            # the self-test runs with a roomy buffer, so that a busy system cannot make it fail
            sock = open_socket(ev, SELF_TEST_RCVBUF)
        except SubscribeError as e:
            return None, False, e.explain()
        try:
            ok = self_test(sock)
        except OSError as e:
            sock.close()
            why = os.strerror(e.errno or 0)
            return None, False, f"proc connector self-test failed: {why}"
        if ok:
            if rcvbuf is not None and rcvbuf != SELF_TEST_RCVBUF:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                except OSError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            return sock, ev is not None, ""
        sock.close()
        reason = ("subscription ignored by the kernel: a self-test exit was not reported "
                  "(needs root/CAP_NET_ADMIN before Linux 6.6; from 6.6 some kernels let "
                  "other users in the initial user and pid namespace subscribe; try "
                  "'exithand info' as that user)")
    return None, False, reason
