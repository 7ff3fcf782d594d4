"""``exithand lowmem`` driven by PSI, against real memory hogs in a limited cgroup.

Everything runs inside a memory cgroup limited to 256 MiB (v1 ``memory.limit_in_bytes`` on a
hybrid machine, v2 ``memory.max`` on a pure-v2 one), so nothing here can push the machine itself
into memory pressure, and the trigger watches that cgroup's own v2 ``memory.pressure`` (on a
hybrid machine the v2 twin of the memory cgroup: PSI is accounted per v2 cgroup whatever
controller limits the memory), so other load on the machine cannot fire it:

* three hogs hold 48, 32 and 16 MiB of anonymous memory, with ``oom_score_adj`` 300, 200 and
  100 so the kernel's badness order is fixed;
* without a thrasher there is no stall: the daemon must not kill anything (PSI fires only
  under real pressure, however early after registering the trigger);
* with a thrasher reading a 384 MiB sparse file in a loop (its page cache cannot fit in what is
  left of the limit, and tasks stalled in reclaim are what PSI counts) the pressure lasts until
  the test ends, so the daemon (``--max-kills 3``) kills all three hogs, one after the other,
  each after its predecessor's memory was back and the stall was seen again.  The thrasher's
  oom_score stays near the hogs' floor (page cache read with read(2) is not in its RSS, its adj
  is 0) and it survives.

The daemon is scoped to the cgroup (``--scope``) so it can never pick another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
from kill_helpers import MemoryCgroup, is_alive, memory_cgroup, start_keeper

from conftest import env_with_src

TRIGGER = "some 10ms 2s"  # a 2 s window: accepted without CAP_SYS_RESOURCE


def _pressure_file(cg: MemoryCgroup) -> str:
    d = cg.v2_dir
    path = os.path.join(d, "memory.pressure") if d else ""
    if not d or not os.path.exists(path):
        pytest.skip("no v2 twin cgroup with memory.pressure (needs cgroup v2 and CONFIG_PSI)")
    return path


def _psi_usable(path: str) -> Optional[str]:
    """Can we register the trigger on ``path``?  Raw syscalls, not the daemon's code."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as e:
        return f"PSI not available: {path}: {e.strerror}"
    try:
        os.write(fd, b"some 10000 2000000\0")
    except OSError as e:
        return f"PSI triggers not usable here: {e.strerror}"
    finally:
        os.close(fd)
    return None


def _hog(mib: int, adj: int, join: str) -> str:
    return join + f"""
open("/proc/self/oom_score_adj", "w").write("{adj}")
import mmap
m = mmap.mmap(-1, {mib} << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in range(0, len(m), 4096):
    m[off] = 1
ready(); block()
"""


def _daemon(cg: MemoryCgroup, pressure: str, *extra: str) -> list[dict[str, Any]]:
    p = subprocess.run(
        [sys.executable, "-m", "exithand", "lowmem", "--scope", cg.mem_dir, "--psi",
         f"{TRIGGER} {pressure}", "--json", "--no-protect-self", *extra],
        capture_output=True, text=True, env=env_with_src(), timeout=120)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()]


@pytest.mark.timeout(150)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create memory cgroups")
def test_psi_kills_hogs_in_oom_score_order_only_under_stall(no_fd_leak, tmp_path):
    keepers = []
    with memory_cgroup("lowmem", 256 << 20) as cg:
        pressure = _pressure_file(cg)
        why = _psi_usable(pressure)
        if why:
            pytest.skip(why)
        try:
            join = cg.join_code()
            hogs = []
            for mib, adj in ((48, 300), (32, 200), (16, 100)):
                k = start_keeper(_hog(mib, adj, join))
                keepers.append(k)
                k.wait_ready()
                hogs.append((k.pid, mib))
            # no stall: idle hogs well under the limit.  Nothing may be killed.
            quiet = _daemon(cg, pressure, "--duration", "3")
            assert [e["event"] for e in quiet] == ["start", "stop"], quiet
            assert all(is_alive(pid) for pid, _ in hogs)

            sparse = tmp_path / "thrash.dat"
            with open(sparse, "wb") as f:
                f.truncate(384 << 20)  # sparse: reading it costs page cache, not disk
            thrasher = start_keeper(join + f"""
fd = os.open({str(sparse)!r}, os.O_RDONLY)
ready()
while True:
    os.lseek(fd, 0, 0)
    while os.read(fd, 1 << 20):
        pass
""")
            keepers.append(thrasher)
            thrasher.wait_ready()
            events = _daemon(cg, pressure, "--max-kills", "3", "--duration", "90")
            kills = [e for e in events if e["event"] == "kill"]
            assert [e["pid"] for e in kills] == [pid for pid, _ in hogs], events
            assert [e["oom_score"] for e in kills] == sorted(
                (e["oom_score"] for e in kills), reverse=True)
            for e, (_pid, mib) in zip(kills, hogs):
                assert e["signal"] == "SIGKILL" and "psi some 10ms/2s" in e["trigger"]
                assert e["memory_bytes"] >= mib << 20  # RSS read at selection
            freed = [e for e in events if e["event"] == "freed"]
            # one at a time: each kill after the previous victim's memory was back
            for f, nxt in zip(freed, kills[1:]):
                assert nxt["time"] >= f["time"]
            assert events[-1]["event"] == "stop" and events[-1]["kills"] == 3
            assert not any(is_alive(pid) for pid, _ in hogs)
            assert is_alive(thrasher.pid)  # lowest oom_score: its turn never came
        finally:
            for k in keepers:
                k.cleanup()


def test_old_example_is_a_thin_caller(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "lowmem_killer.py"
    r = subprocess.run([sys.executable, str(example), "--psi",
                        f"some 150ms 2s {tmp_path}/nope", "--duration", "1"],
                       capture_output=True, text=True, env=env_with_src(), timeout=30)
    assert r.returncode == 1 and "PSI not available" in r.stderr
    r = subprocess.run([sys.executable, str(example), "--scope", str(tmp_path)],
                       capture_output=True, text=True, env=env_with_src(), timeout=30)
    assert r.returncode == 2 and "not a cgroup directory" in r.stderr
