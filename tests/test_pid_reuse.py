"""PID reuse: a handle names a process, never a number.

Reuse is forced for real inside a new pid namespace (``unshare --pid --fork --mount-proc``)
whose ``pid_max`` is made tiny (per-namespace since Linux 6.14).  Inside, pids wrap around to
300 (RESERVED_PIDS) once the counter has passed it, so the script first walks the counter past
300, creates the victim, kills it, then forks until the number comes back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from reuse_prelude import PRELUDE

from conftest import env_with_src

SCRIPT = PRELUDE + textwrap.dedent("""
    import exithand

    out = {}
    a, a_ctl = pid0, w0
    h = exithand.open(a)
    ident = h.identity
    out["backend"] = h.backend
    os.kill(a, signal.SIGKILL)
    os.waitpid(a, 0)
    os.close(a_ctl)
    out["old_dead"] = not h.is_alive()
    # start times have clock-tick resolution: make sure the reuser is born in a later tick
    ticks = os.sysconf("SC_CLK_TCK")
    while time.clock_gettime(time.CLOCK_BOOTTIME) * ticks < ident.start_time + 2:
        pass
    c, c_ctl = reuse_number(a)
    out["reused"] = True

    def attempt(**kw):
        try:
            exithand.open(a, **kw).close()
            return "opened"
        except exithand.NoSuchProcess as e:
            return "NoSuchProcess: " + str(e)

    if ident.inode is not None:
        out["by_inode"] = attempt(inode=ident.inode)
    out["by_start_time"] = attempt(start_time=ident.start_time)
    try:
        h.send_signal(signal.SIGKILL)
        out["old_signal"] = "sent"
    except exithand.NoSuchProcess:
        out["old_signal"] = "NoSuchProcess"
    out["reuser_alive"] = os.waitpid(c, os.WNOHANG) == (0, 0)
    with exithand.open(a) as h2:
        out["new_identity_differs"] = (h2.identity.start_time != ident.start_time
                                       and (ident.inode is None  # no-pidfd backends
                                            or h2.identity.inode != ident.inode))
    h.close()
    os.close(c_ctl)
    os.waitpid(c, 0)
    print(json.dumps(out))
""")


@pytest.mark.timeout(60)
def test_pid_reuse_is_detected(backend: str) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) not installed")
    if backend == "connector":
        pytest.skip("the kernel ignores proc connector subscriptions from a child pid "
                    "namespace (tests/test_connector.py checks that it is refused there)")
    res = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", SCRIPT],
        capture_output=True, text=True, timeout=50,
        env=env_with_src(EXITHAND_BACKEND=backend))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["backend"] == backend
    assert out["old_dead"] is True and out["reused"] is True
    if "by_inode" in out:
        assert out["by_inode"].startswith("NoSuchProcess"), out
        assert "another process" in out["by_inode"]
    assert out["by_start_time"].startswith("NoSuchProcess"), out
    assert out["old_signal"] == "NoSuchProcess", "a stale handle must never signal the reuser"
    assert out["reuser_alive"] is True
    assert out["new_identity_differs"] is True
