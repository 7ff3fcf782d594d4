"""Open-file limits: a WaitSet raises the soft RLIMIT_NOFILE to the hard one, then fails clearly.

Each scenario runs in a subprocess with lowered limits (soft 64, hard 128), so the test process
keeps its own.  Handles are opened on one live non-child process, over and over (each open is
one more pidfd).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap

import pytest
from _herd import herd

from conftest import env_with_src, run_cli

_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import exithand
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 128))
    mode, pid = sys.argv[1], int(sys.argv[2])
    out = {}
    hs = []
    ws = exithand.WaitSet()
    try:
        while len(hs) < 1000:
            if mode == "open":
                hs.append(exithand.open(pid))
            elif mode == "ws_open":
                hs.append(ws.open(pid))
            else:  # "add": open outside the set, then add
                h = exithand.open(pid)
                hs.append(h)
                ws.add(h)
    except exithand.FdLimitError as e:
        out["error"] = str(e)
        out["is_exithand_error"] = isinstance(e, exithand.Error)
    out["opened"] = len(hs)
    out["in_set"] = len(ws)
    out["limits"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    out["all_distinct_and_open"] = len({h.fileno() for h in hs}) == len(hs)
    for h in hs:
        h.close()
    ws.close()
    print(json.dumps(out))
""")


def _run(mode: str, pid: int) -> dict:
    p = subprocess.run([sys.executable, "-c", _SCRIPT, mode, str(pid)], capture_output=True,
                       text=True, timeout=60, env=env_with_src())
    assert p.returncode == 0, p.stderr  # no traceback, no bare EMFILE
    return json.loads(p.stdout)


@pytest.mark.timeout(60)
def test_plain_open_fails_at_the_soft_limit_with_a_clear_error():
    with herd(1) as hd:
        out = _run("open", hd.pids[0])
    assert out["is_exithand_error"]
    assert out["limits"] == [64, 128]  # plain open never changes process-wide limits
    assert 50 < out["opened"] < 64
    msg = out["error"]
    assert "RLIMIT_NOFILE is 64" in msg and "hard limit 128" in msg and "WaitSet" in msg


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["ws_open", "add"])
def test_waitset_raises_soft_limit_then_fails_naming_the_hard_limit(mode):
    with herd(1) as hd:
        out = _run(mode, hd.pids[0])
    assert out["is_exithand_error"]
    assert out["limits"] == [128, 128]  # soft raised to hard
    assert 100 < out["opened"] < 128  # went past the old soft limit of 64
    # never a silent drop: every handle opened is in the set (the failing one was never opened)
    assert out["in_set"] == out["opened"] and out["all_distinct_and_open"]
    msg = out["error"]
    assert "RLIMIT_NOFILE is 128" in msg and "also the hard limit" in msg


def _limit(soft: int, hard: int):
    def fn() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return fn


@pytest.mark.timeout(60)
def test_cli_wait_many_targets_raises_the_soft_limit():
    with herd(100) as hd:
        args = ["wait", "-t", "0.1", "-p", *map(str, hd.pids)]
        ok = run_cli(*args, preexec_fn=_limit(32, 256))
        assert ok.returncode == 124, ok.stderr
        assert sorted(map(int, ok.stdout.split())) == sorted(hd.pids)
        bad = run_cli(*args, preexec_fn=_limit(32, 64))
        assert bad.returncode == 1
        assert "RLIMIT_NOFILE is 64" in bad.stderr and "Traceback" not in bad.stderr
