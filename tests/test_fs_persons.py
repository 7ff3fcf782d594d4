"""One person, one share (issue 21, rows 1-4 of its table), against the real daemon.

The attacker is a real user made by the test (``useradd``, removed after) with subordinate
uids in /etc/subuid, mapped with the setuid ``newuidmap`` (``unshare --map-users``) into a user
namespace, acting as several of those uids at once.  The daemon's caps are scaled down so they
are reached in seconds.  Each test asserts that the *other* user (``nobody``) is still served,
and that the attacker got exactly one person's share; the same attacks gave the other user
EAGAIN/ENOENT when quotas were counted per uid number.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest
from _userns import end, person  # noqa: F401
from fshelp import Forked, fsmount, needs_fuse, pidfs_inode, procs  # noqa: F401

from conftest import NOBODY, OTHER_UID, drop_to, run_as

pytestmark = [needs_fuse, pytest.mark.timeout(120)]


def _holder(uid: int) -> Forked:
    """A child as ``uid`` that opens (``open PATH`` -> fd or -errno), reads (``read FD``) and
    closes (``close FD``) files on command, holding them in between."""
    def handler(line: str) -> str:
        cmd, arg = line.split(" ", 1)
        try:
            if cmd == "open":
                return str(os.open(arg, os.O_RDONLY))
            if cmd == "read":
                return repr(os.read(int(arg), 100))
            os.close(int(arg))
            return "ok"
        except OSError as e:
            return str(-(e.errno or 1))
    return Forked(drop_to(uid), handler)


@pytest.mark.timeout(90)
def test_subordinate_uids_share_one_open_file_quota(fsmount, person, procs):  # noqa: F811
    """5 subordinate uids x 400 opens: one person's 400 (quota) in all, not 2,000 (which
    exhausted the global cap of 1,224); the other user's open and read still work."""
    fs = fsmount(max_readers=200, extra=("--max-per-user", "200"))
    p, parts = person.in_userns(fs.path(1, "exithand"), 400, [1, 2, 3, 4, 5], "f")
    try:
        assert sum(done for _, done, _ in parts) == 400, parts
        assert all(err == errno.EAGAIN for _, _, err in parts[1:]), parts
        reader = procs.start(["cat", fs.path(1, "exithand")], preexec_fn=drop_to(NOBODY))
        fs.wait_blocked(1, 1)
        assert reader.poll() is None
        fs.wait_log(rf"refusing open of 1: uid {person.uid} holds 400 open files")
    finally:
        end(p)


@pytest.mark.timeout(90)
def test_subordinate_uids_share_one_blocked_read_quota(fsmount, person, procs):  # noqa: F811
    """4 subordinate uids x 12 threads each blocking in read(): 10 blocked reads (the quota)
    in all, the other 38 refused; the other user's read still blocks (cap 40 not reached)."""
    fs = fsmount(max_readers=40, extra=("--max-per-user", "10"))
    p, _ = person.in_userns(fs.path(1, "exithand"), 12, [1, 2, 3, 4], "r")
    try:
        fs.wait_log(r"refusing (read on pid 1|open of 1): uid \d+ holds", 38)
        fs.wait_blocked(1, 10)
        reader = procs.start(["cat", fs.path(1, "exithand")], preexec_fn=drop_to(NOBODY))
        fs.wait_blocked(1, 11)
        assert reader.poll() is None
        assert fs.count(r"read-blocked fh=\d+ pid=1 ") == 11
    finally:
        end(p)


@pytest.mark.timeout(90)
def test_subordinate_uids_share_one_directory_quota(fsmount, person):  # noqa: F811
    """8 subordinate uids x 128 directory handles: 8 (the quota) in all, not the cap of 64;
    the other user's ``ls`` still works."""
    fs = fsmount(max_readers=8, extra=("--max-dirs", "64"))
    p, parts = person.in_userns(fs.mnt, 128, list(range(1, 9)), "d")
    try:
        assert sum(done for _, done, _ in parts) == 8, parts
        listed: list[str] = run_as(NOBODY, lambda: os.listdir(fs.mnt))
        assert "1" in listed
    finally:
        end(p)


def _linger_victim(fs: Any, started: Any, closer_uid: int, also: int = -1) -> str:
    """A process of nobody, a file of it opened by ``closer_uid`` (and ``also``, closed
    first) while it lives, then killed, reaped and closed: a lingering entry.  Returns its
    pinned name."""
    v = started.start(["sleep", "60"], preexec_fn=drop_to(NOBODY))
    pinned = f"{v.pid}:{pidfs_inode(v.pid)}"
    path = fs.path(pinned, "exithand")
    holders = [_holder(u) for u in ([also] if also >= 0 else []) + [closer_uid]]
    try:
        fds = [h.ask(f"open {path}") for h in holders]
        assert all(int(fd) >= 0 for fd in fds), fds
        v.kill()
        v.wait(timeout=30)  # reaped
        for h, fd in zip(holders, fds):
            assert h.ask(f"read {fd}") == "b''"
            assert h.ask(f"close {fd}") == "ok"
    finally:
        for h in holders:
            h.close()
    fs.wait_log(rf"lingering pid={v.pid} ")
    return pinned


def _reopen_as(uid: int, path: str) -> int:
    def go() -> int:
        try:
            os.close(os.open(path, os.O_RDONLY))
            return 0
        except OSError as e:
            return e.errno or -1
    got: int = run_as(uid, go)
    return got


@pytest.mark.timeout(90)
def test_subordinate_uids_share_one_lingering_quota(fsmount, person, procs):  # noqa: F811
    """5 subordinate uids x 8 lingering entries of their own short-lived processes (cap 16,
    8 per person): the other user's lingering entry is not evicted."""
    fs = fsmount(max_readers=8, extra=("--linger", "60", "--max-lingering", "16"))
    pinned = _linger_victim(fs, procs, NOBODY)
    p, parts = person.in_userns(fs.mnt, 8, [1, 2, 3, 4, 5], "l")
    end(p)
    assert [done for _, done, _ in parts] == [8] * 5, parts
    assert fs.count(r"lingering pid=") >= 41
    assert _reopen_as(NOBODY, fs.path(pinned, "exithand")) == 0


@pytest.mark.timeout(90)
def test_lingering_entry_is_charged_to_the_dead_processs_owner(fsmount, procs):  # noqa: F811
    """Another user holds a file of nobody's process past its death and closes it last, then
    makes 8 lingering entries of its own (its quota): nobody's entry stays, since it is
    charged to nobody (the dead process's owner), not to the last closer."""
    fs = fsmount(max_readers=8, extra=("--linger", "60", "--max-lingering", "64"))
    pinned = _linger_victim(fs, procs, OTHER_UID, also=NOBODY)
    for _ in range(8):
        own = procs.start(["sleep", "60"], preexec_fn=drop_to(OTHER_UID))
        path = fs.path(f"{own.pid}:{pidfs_inode(own.pid)}", "exithand")
        h = _holder(OTHER_UID)
        try:
            fd = h.ask(f"open {path}")
            assert int(fd) >= 0, fd
            own.kill()
            own.wait(timeout=30)
            assert h.ask(f"close {fd}") == "ok"
        finally:
            h.close()
        fs.wait_log(rf"lingering pid={own.pid} ")
    assert _reopen_as(NOBODY, fs.path(pinned, "exithand")) == 0
