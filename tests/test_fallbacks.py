"""Older kernels, forced: ``EXITHAND_DISABLE`` switches off pidfs inodes (< 6.9), PIDFD_INFO_EXIT
(< 6.15) and pidfd itself (< 5.3 / seccomp), and the library must degrade honestly.

Each case runs in a fresh interpreter (the probes are memoized per process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import env_with_src, run_cli, wait_dead

pytestmark = pytest.mark.timeout(60)


def run_py(code: str, **env: str) -> dict[str, object]:
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=50, env=env_with_src(**env))
    assert res.returncode == 0, res.stderr
    out: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_without_pidfs_identity_uses_start_time(victim_factory) -> None:
    v = victim_factory(reap=True)
    out = run_py(f"""
        import json, exithand
        with exithand.open({v.pid}) as h:
            ident = h.identity
            out = {{"inode": ident.inode, "str": str(ident), "start": ident.start_time}}
        try:
            exithand.open({v.pid}, inode=12345)
            out["by_inode"] = "opened"
        except exithand.NoSuchProcess as e:
            out["by_inode"] = "NoSuchProcess"
        except exithand.Error as e:
            out["by_inode"] = str(e)
        try:
            exithand.open({v.pid}, start_time=ident.start_time + 1)
        except exithand.NoSuchProcess as e:
            out["by_start"] = "NoSuchProcess"
        exithand.open({v.pid}, start_time=ident.start_time).close()
        print(json.dumps(out))
    """, EXITHAND_DISABLE="pidfs")
    assert out["inode"] is None and out["str"] == str(v.pid)
    assert isinstance(out["start"], int)
    assert "needs Linux 6.9" in str(out["by_inode"])
    assert out["by_start"] == "NoSuchProcess"


def test_without_pidfd_info_a_reaped_nonchild_is_unknown_with_reason(victim_factory) -> None:
    v = victim_factory(reap=False)
    ctl = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import json, sys, exithand
            h = exithand.open({v.pid})
            print("open", flush=True)
            sys.stdin.readline()          # the victim is dead and reaped now
            st = h.status()
            print(json.dumps({{"known": st.known, "reason": st.reason,
                               "dead": not h.is_alive()}}), flush=True)
            h.close()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env_with_src(EXITHAND_DISABLE="pidfd_info,pidfs"))
    assert ctl.stdin is not None and ctl.stdout is not None
    try:
        assert ctl.stdout.readline() == "open\n"
        v.exit(6)
        wait_dead(v.pid)
        v.reap()
        ctl.stdin.write("\n")
        ctl.stdin.flush()
        reaped = json.loads(ctl.stdout.readline())
        assert reaped["dead"] is True and reaped["known"] is False
        assert "6.15" in reaped["reason"]
        assert ctl.wait(timeout=10) == 0
    finally:
        ctl.kill()
        ctl.wait()
        ctl.stdin.close()
        ctl.stdout.close()


def test_without_pidfd_and_no_fallback_the_error_is_clear(victim_factory) -> None:
    v = victim_factory(reap=True)
    res = run_cli("wait", str(v.pid),
                  env=env_with_src(EXITHAND_DISABLE="pidfd", EXITHAND_BACKEND="pidfd"))
    assert res.returncode == 1
    assert "backend unavailable" in res.stderr and "EXITHAND_DISABLE=pidfd" in res.stderr
    assert "Traceback" not in res.stderr
    out = run_py(f"""
        import json, exithand
        try:
            exithand.open({v.pid}, backend="pidfd")
        except exithand.BackendUnavailable as e:
            print(json.dumps({{"error": str(e)}}))
    """, EXITHAND_DISABLE="pidfd", EXITHAND_BACKEND="pidfd")
    assert "unavailable" in str(out["error"])


def test_unknown_backend_name_is_refused() -> None:
    res = run_cli("wait", "1", env=env_with_src(EXITHAND_BACKEND="bogus"))
    assert res.returncode == 1 and "unknown backend 'bogus'" in res.stderr
