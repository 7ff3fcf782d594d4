"""Many readers of one process are released in one pass at its death.

One ``Event.set()`` per death, one ``read-released pid=P readers=N`` log line, the status and
the credentials read once per death (before the release when a status file is waiting, just
after it when only plain ``exithand`` readers were).  The daemon runs with the proc connector
and ``PIDFD_INFO_EXIT`` switched off, so a status can only come from the zombie's field 52:
what the daemon answers is what it read while the zombie was there.
"""

from __future__ import annotations

import os

import pytest
from fshelp import fsmount, needs_fuse, procs  # noqa: F401

pytestmark = [needs_fuse, pytest.mark.timeout(120)]

ZOMBIE_ONLY = {"EXITHAND_DISABLE": "connector,pidfd_info"}


def test_mixed_readers_released_in_one_pass(fsmount, procs):  # noqa: F811
    fs = fsmount(env=ZOMBIE_ONLY)
    t = procs.start(["sleep", "1000"])  # our child: a zombie until we reap it
    plain = [procs.start(["cat", fs.path(t.pid, "exithand")], stdout=-1) for _ in range(8)]
    status = [procs.start(["cat", fs.path(t.pid, "exitstatus")], stdout=-1) for _ in range(4)]
    fs.wait_blocked(t.pid, 12)
    assert all(r.poll() is None for r in plain + status)
    t.kill()
    for r in plain:
        assert r.communicate(timeout=30)[0] == b"" and r.returncode == 0
    for r in status:
        out = r.communicate(timeout=30)[0]
        assert r.returncode == 0 and out == f"{t.pid}: killed by signal 9.\n".encode()
    fs.wait_log(rf"read-released pid={t.pid} readers=12$", 1)
    assert fs.count(rf"read-released pid={t.pid} ") == 1
    assert fs.count(rf"dead pid={t.pid} status=") == 1  # read once for all 12
    t.wait()


def test_status_file_after_a_plain_fanout(fsmount, procs):  # noqa: F811
    """Only plain readers at the death: the status is read just after their release, once,
    and a status file opened afterwards (the zombie still there) is answered from it."""
    fs = fsmount(env=ZOMBIE_ONLY)
    t = procs.start(["sleep", "1000"])
    keep = os.open(fs.path(t.pid, "exithand"), os.O_RDONLY)  # keeps the watch after the death
    try:
        readers = [procs.start(["cat", fs.path(t.pid, "exithand")]) for _ in range(3)]
        fs.wait_blocked(t.pid, 3)
        t.kill()
        assert [r.wait(timeout=30) for r in readers] == [0, 0, 0]
        fs.wait_log(rf"read-released pid={t.pid} readers=3$", 1)
        fs.wait_log(rf"dead pid={t.pid} status='{t.pid}: killed by signal 9\.'", 1)
        with open(fs.path(t.pid, "exitstatus"), "rb") as f:
            assert f.read() == f"{t.pid}: killed by signal 9.\n".encode()
        assert os.read(keep, 10) == b""
        assert fs.count(rf"dead pid={t.pid} status=") == 1
    finally:
        os.close(keep)
        t.wait()
