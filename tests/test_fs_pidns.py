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


HIDEPID_INSIDE = r'''
import errno, json, os, sys
mnt = sys.argv[1]
def pids(d):
    return {int(p) for p in os.listdir(d) if p.isdigit()}
before = pids("/proc")
listed = pids(mnt)
after = pids("/proc")
try:
    os.open(os.path.join(mnt, "1", "exithand"), os.O_RDONLY)
    one = "opened"
except OSError as e:
    one = errno.errorcode[e.errno]
print(json.dumps({"extra": sorted(listed - (before | after)), "has_1": 1 in listed,
                  "has_me": os.getpid() in listed, "one": one, "n": len(listed)}))
'''


def test_reader_with_hidepid_proc_sees_no_more_in_the_mount(fsmount):  # noqa: F811
    """nobody, whose /proc is mounted hidepid=invisible (a private mount namespace), sees in
    ``ls MNT`` only what its own /proc shows: its own processes, not root's pid 1."""
    py = "/usr/bin/python3"
    script = 'mount -t proc -o hidepid=invisible proc /proc && exec "$@"'
    cmd = ["unshare", "-m", "sh", "-c", script, "sh", "setpriv", "--reuid=65534",
           "--regid=65534", "--clear-groups", py]
    probe = subprocess.run([*cmd, "-c", "import os; print(os.path.exists('/proc/1'))"],
                           capture_output=True, text=True, timeout=30)
    if probe.stdout.strip() != "False":
        pytest.skip(f"cannot mount a hidepid=invisible /proc here: {probe.stderr.strip()}")
    fs = fsmount()
    r = subprocess.run([*cmd, "-c", HIDEPID_INSIDE, fs.mnt], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["extra"] == [] and out["has_me"] and not out["has_1"], out
    assert out["one"] == "ENOENT", out
    assert 1 in {int(p) for p in os.listdir(fs.mnt)}  # root's view is unchanged
