"""1,000 concurrent blocked readers (separate cat processes), and the mount stays usable."""

from __future__ import annotations

import os
import re
import select
import subprocess
import tempfile

import pytest
from fshelp import fsmount, needs_fuse, procs  # noqa: F401

pytestmark = [needs_fuse, pytest.mark.timeout(300)]

TARGETS = 20
PER_TARGET = 50  # 45 on exithand, 5 on exitstatus


def test_1000_blocked_readers(fsmount, procs):  # noqa: F811
    fs = fsmount(extra=("--linger", "0"))  # every pidfd is closed with its last file
    targets = [procs.start(["sleep", "1000"]) for _ in range(TARGETS)]
    # warm up (first use allocates a few fds for good), then count the daemon's fds
    os.listdir(fs.mnt)
    with open(fs.path(targets[0].pid, "exithand"), "rb"):
        pass
    fs.wait_log(r"file-closed ", 1)
    daemon_fds = len(os.listdir(f"/proc/{fs.proc.pid}/fd"))
    with tempfile.TemporaryFile() as eof_out:
        readers: list[tuple[subprocess.Popen[bytes], int, str]] = []
        for t in targets:
            for j in range(PER_TARGET):
                kind = "exitstatus" if j < 5 else "exithand"
                out = subprocess.PIPE if kind == "exitstatus" else eof_out
                readers.append((procs.start(["cat", fs.path(t.pid, kind)], stdout=out),
                                t.pid, kind))
        assert len(readers) == 1000
        fs.wait_log(r"read-blocked ", 1000, timeout=180)
        assert all(r.poll() is None for r, _, _ in readers)
        # responsive while 1000 reads block: ls, stat, a new open
        ls = subprocess.run(["ls", fs.mnt], capture_output=True, text=True, timeout=20)
        assert ls.returncode == 0 and str(targets[0].pid) in ls.stdout.split()
        assert sorted(os.listdir(fs.path(targets[-1].pid)))[0] == "exithand"
        with open(fs.path(targets[-1].pid, "exithand"), "rb", buffering=0) as f:
            assert not select.select([f], [], [], 0)[0]
        for t in targets:
            t.kill()
        for r, pid, kind in readers:
            out = r.stdout.read() if r.stdout is not None else b""
            assert r.wait(timeout=60) == 0, (pid, kind)
            if kind == "exitstatus":
                assert out == f"{pid}: killed by signal 9.\n".encode()
        eof_out.seek(0)
        assert eof_out.read() == b""  # 950 readers saw EOF and nothing else
    assert fs.alive()
    # one line per death, naming how many blocked readers it released in one pass
    fs.wait_log(r"read-released pid=\d+ readers=\d+", TARGETS, timeout=30)
    released = [re.search(r"read-released pid=(\d+) readers=(\d+)", line) for line in fs.lines]
    assert sorted(int(m[1]) for m in released if m) == sorted(t.pid for t in targets)
    assert sum(int(m[2]) for m in released if m) == 1000
    fs.wait_log(r"file-closed ", 1002, timeout=30)
    # every pidfd and /proc status fd the daemon opened for these readers is closed again
    assert len(os.listdir(f"/proc/{fs.proc.pid}/fd")) == daemon_fds
