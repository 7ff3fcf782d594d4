"""``/proc`` mounted ``hidepid=invisible``: a process we cannot see is not a dead process.

The no-pidfd backends read ``/proc``; with ``hidepid=2`` another user's live process has no
entry there, exactly like a process that is gone.  Real mounts: a private mount namespace
(``unshare -m``) with its own proc instance, the reader a real unprivileged user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import NOBODY, SRC

pytestmark = pytest.mark.timeout(60)

#: an interpreter every user may run (the test's own may live under /root); probed below
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _as_nobody_with_hidepid(*args: str) -> subprocess.CompletedProcess[str]:
    script = 'mount -t proc -o hidepid=invisible proc /proc && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", "setpriv", f"--reuid={NOBODY}",
         f"--regid={NOBODY}", "--clear-groups", "env", f"PYTHONPATH={SRC}",
         "EXITHAND_DISABLE=pidfd", *args], capture_output=True, text=True, timeout=30)


def _probe() -> str:
    """'' if this user may mount a hidepid=invisible /proc in a new mount namespace and it
    hides root's processes from nobody; else why not."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None:
        return "needs root, unshare(1) and setpriv(1)"
    r = _as_nobody_with_hidepid(PY, "-c", "import os; print('visible' if os.path.exists("
                                "'/proc/1') else 'hidden')")
    if r.returncode != 0 or r.stdout.strip() != "hidden":
        return f"cannot mount a hidepid=invisible /proc here: {r.stderr.strip() or r.stdout}"
    return ""


def test_hidden_live_process_is_not_reported_dead(procs_cleanup):
    why = _probe()
    if why:
        pytest.skip(why)
    root_proc = procs_cleanup(["sleep", "60"])
    r = _as_nobody_with_hidepid(PY, "-m", "exithand", "wait", "-v", "-e", "-t",
                                "0.5", str(root_proc.pid))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "exited" not in r.stdout + r.stderr
    assert "hides it" in r.stderr and "hidepid" in r.stderr, r.stderr
    # a process that really is gone is still "gone" (-e: not an error)
    dead = procs_cleanup(["true"])
    dead.wait(timeout=10)
    r = _as_nobody_with_hidepid(PY, "-m", "exithand", "wait", "-e", "-t", "0.5",
                                str(dead.pid))
    assert r.returncode == 0, r.stderr
    # nobody's own process stays visible and is waited for (timeout: it is alive)
    own = procs_cleanup(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                         "--clear-groups", "sleep", "60"])
    r = _as_nobody_with_hidepid(PY, "-m", "exithand", "wait", "-t", "0.3",
                                str(own.pid))
    assert r.returncode == 124, (r.returncode, r.stderr)
    assert root_proc.poll() is None


@pytest.fixture
def procs_cleanup():
    made: list[subprocess.Popen[bytes]] = []

    def start(args: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        made.append(p)
        return p

    yield start
    for p in made:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
