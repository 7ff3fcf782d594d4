"""``exithand lowmem`` choosing from its process table (proc connector) or, without one, by scan.

These run in the initial pid namespace (the connector works only there), so the daemon sees
every process on the machine: always ``--dry-run`` (nobody is signalled), with a trigger that
always fires (``--mem-min`` one page under the total, ``--swap-min 100%``) and a target that
must win: a copy of ``sleep`` under a unique name, ``--prefer``-ed (+300, by its executable's
path) with ``oom_score_adj`` 1000.
The daemon's JSON events are the synchronisation: its ``start`` event comes after its table
exists, so a target spawned after it can reach the table only by its fork event.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest

from conftest import env_with_src, require, stop_process

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: oom_score_adj 1000 "
                                "on a target, and the proc connector")


def _target(tmp_path: Path) -> tuple[str, str]:
    name = "ehpt" + uuid.uuid4().hex[:8]
    exe = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    return name, str(exe)


def _always() -> str:
    """A floor that always fires: one page under the total (100% is refused at start)."""
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return str(total * 1024 - 4096)


def _daemon(name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["python3", "-m", "exithand", "lowmem", "--json", "--dry-run", "--mem-min", _always(),
         "--swap-min", "100%", "--prefer", f"/{name}$", "--interval", "50ms", "--hold-off",
         "100ms", "--no-protect-self", "--duration", "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _until(d: subprocess.Popen[str], seen: list[dict[str, Any]], kind: str,
           pid: Optional[int] = None) -> dict[str, Any]:
    """Read events (blocking; bounded by the test's timeout) until one of ``kind`` (for pid)."""
    assert d.stdout is not None
    for line in d.stdout:
        ev = json.loads(line)
        seen.append(ev)
        if ev["event"] == kind and (pid is None or ev.get("pid") == pid):
            return ev
    raise AssertionError(f"daemon ended before a {kind} event: {seen[-5:]} "
                         f"{d.stderr.read() if d.stderr else ''}")


def _run(tmp_path: Path, env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any],
                                                       list[dict[str, Any]]]:
    name, exe = _target(tmp_path)
    d = _daemon(name, env)
    seen: list[dict[str, Any]] = []
    target: Optional[subprocess.Popen[bytes]] = None
    try:
        start = _until(d, seen, "start")
        target = subprocess.Popen([exe, "60"])
        with open(f"/proc/{target.pid}/oom_score_adj", "w") as f:
            f.write("1000")
        would = _until(d, seen, "would_kill", target.pid)
        assert target.poll() is None  # a dry run: alive
    finally:
        if target is not None:
            target.kill()
            target.wait()
        stop_process(d)
    return start, would, seen


@pytest.mark.timeout(60)
def test_a_process_started_after_the_daemon_is_a_candidate_from_the_table(
        tmp_path: Path) -> None:
    require("proc_connector")
    start, would, seen = _run(tmp_path, env_with_src())
    assert start["candidates_from"] == "table"
    assert not [e for e in seen if e["event"] == "warning"], seen
    assert would["candidates_from"] == "table" and would["comm"].startswith("ehpt")
    assert not [e for e in seen if e["event"] == "rescan"]  # no overflow, no listing


@pytest.mark.timeout(60)
def test_without_the_connector_every_decision_lists_proc(tmp_path: Path) -> None:
    start, would, seen = _run(tmp_path, env_with_src(EXITHAND_DISABLE="connector"))
    (warning,) = [e for e in seen if e["event"] == "warning"]
    assert "no process table" in warning["message"] and "EXITHAND_DISABLE" in warning["message"]
    assert start["candidates_from"] == "scan"
    assert would["candidates_from"] == "scan" and would["comm"].startswith("ehpt")


@pytest.mark.timeout(60)
def test_after_an_overflow_the_next_decision_lists_proc_and_says_so(tmp_path: Path) -> None:
    """In-process: the daemon's own table socket overflows for real (smallest buffer, a burst of
    forks never read); the next decision emits ``rescan`` and still finds a process whose fork
    event was lost."""
    require("proc_connector")
    from exithand.lowmem._config import build_config
    from exithand.lowmem._daemon import Daemon
    from exithand.lowmem._events import Emitter

    name, exe = _target(tmp_path)
    cfg = build_config({}, {"dry_run": True, "mem_min": _always(), "swap_min": "100%",
                            "prefer": f"/{name}$", "protect_self": False})
    out = io.StringIO()
    d = Daemon(cfg, Emitter(True, False, None, out))
    d.setup()
    late: Optional[subprocess.Popen[bytes]] = None
    try:
        assert d.table is not None
        with socket.socket(fileno=os.dup(d.table.fileno())) as s:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1)
            true = shutil.which("true") or "/bin/true"
            for _ in range(300):
                os.waitpid(os.posix_spawn(true, [true], {}), 0)
            late = subprocess.Popen([exe, "60"])
            # roomy again, so that forks elsewhere on the machine cannot overflow it twice
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        found, source = d._candidates(frozenset())
        assert source == "rescan"
        assert late.pid in [c.pid for c in found]
        events = [json.loads(line) for line in out.getvalue().splitlines()]
        (rescan,) = [e for e in events if e["event"] == "rescan"]
        assert rescan["overflows"] >= 1
        _found, source = d._candidates(frozenset())
        assert source == "table"  # listed once, then the table again
    finally:
        if late is not None:
            late.kill()
            late.wait()
        d.close()
