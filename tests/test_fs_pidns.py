"""Readers in a child pid namespace see their own numbers, and only the processes they contain.

Real namespaces: ``unshare --pid --fork --mount-proc`` (root may make them), with the reader's
script run inside; the daemon runs outside, in the initial pid namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from fshelp import fsmount, needs_fuse  # noqa: F401

pytestmark = [needs_fuse, pytest.mark.timeout(120)]

INSIDE = r'''
import errno, json, os, select, sys
mnt, host_only = sys.argv[1], int(sys.argv[2])
out = {}
procs = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
listed = sorted(int(p) for p in os.listdir(mnt))
out["proc"], out["mnt"] = procs, listed
try:
    os.stat(os.path.join(mnt, str(host_only)))
    out["host_only"] = "exists"
except OSError as e:
    out["host_only"] = errno.errorcode[e.errno]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.read(r, 1)
    os._exit(3)
fd = os.open(os.path.join(mnt, str(pid), "exitstatus"), os.O_RDONLY)
os.write(w, b"x")
ready = select.select([fd], [], [], 10)[0]
out["child"] = pid
out["status"] = os.read(fd, 200).decode() if ready else "blocked"
os.close(fd)
os.waitpid(pid, 0)
print(json.dumps(out))
'''


def _probe_unshare() -> str:
    """Can we make a pid namespace with its own /proc here?  '' if yes, else why not."""
    if shutil.which("unshare") is None:
        return "unshare(1) is missing"
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", "echo $$"],
                       capture_output=True, text=True, timeout=30)
    return "" if r.stdout.strip() == "1" else f"unshare --pid refused: {r.stderr.strip()}"


def test_reader_in_child_pid_namespace(fsmount):  # noqa: F811
    why = _probe_unshare()
    if why:
        pytest.skip(why)
    fs = fsmount()
    host_only = fs.proc.pid  # the daemon: a host pid no child namespace contains
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                        INSIDE, fs.mnt, str(host_only)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # ls MNT is the namespace's own process list (its /proc), not the host's
    assert out["mnt"] == out["proc"] and 1 in out["mnt"] and len(out["mnt"]) < 10, out
    if host_only not in out["proc"]:
        assert out["host_only"] == "ENOENT", out
    # its child's number is its own: the status is the child's, not a host process's
    assert out["status"] == f"{out['child']}: exited with status 3.\n", out
    # and the host view is unchanged
    assert str(os.getpid()) in os.listdir(fs.mnt)
