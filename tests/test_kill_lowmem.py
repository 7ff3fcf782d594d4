"""The worked example examples/lowmem_killer.py against real memory hogs in a limited cgroup.

Everything runs inside a memory cgroup limited to 256 MiB (v1 ``memory.limit_in_bytes`` on a
hybrid machine, v2 ``memory.max`` on a pure-v2 one), so nothing here can push the machine itself
into memory pressure:

* three hogs hold 48, 32 and 16 MiB of anonymous memory, with ``oom_score_adj`` 300, 200 and
  100 so the kernel's badness order is fixed;
* a thrasher reads a 384 MiB sparse file in a loop: its page cache cannot fit in what is left
  of the limit, so it keeps reclaiming, and tasks stalled in reclaim are what PSI counts.  The
  pressure lasts until the test ends, so the killer (``--max-kills 3``) must kill all three
  hogs, one after the other, each after a PSI event of its own.  The thrasher's oom_score stays
  near 0 (page cache read with read(2) is not in its RSS, and its adj is 0) and it survives.

The killer is scoped to the cgroup (``--cgroup``) so it can never pick another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kill_helpers import is_alive, memory_cgroup, start_keeper

from conftest import env_with_src

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "lowmem_killer.py"
PSI = "/proc/pressure/memory"
# 10 ms of stall in any 2 s window.  Windows that are not a multiple of 2 s need
# CAP_SYS_RESOURCE, which even root may lack (it does in this project's sandbox).
TRIGGER = "some 10000 2000000"


def _psi_usable() -> str | None:
    try:
        fd = os.open(PSI, os.O_RDWR | os.O_NONBLOCK)
    except OSError as e:
        return f"PSI not available: {PSI}: {e.strerror} (needs CONFIG_PSI, psi=1)"
    try:
        os.write(fd, TRIGGER.encode() + b"\0")
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


@pytest.mark.timeout(150)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create memory cgroups")
def test_lowmem_killer_kills_hogs_in_oom_score_order(no_fd_leak, tmp_path):
    why = _psi_usable()
    if why:
        pytest.skip(why)
    keepers = []
    killer = None
    with memory_cgroup("lowmem", 256 << 20) as cg:
        try:
            join = cg.join_code()
            hogs = []
            for mib, adj in ((48, 300), (32, 200), (16, 100)):
                k = start_keeper(_hog(mib, adj, join))
                keepers.append(k)
                k.wait_ready()
                hogs.append((k.pid, mib))
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
            killer = subprocess.Popen(
                [sys.executable, str(EXAMPLE), "--cgroup", cg.mem_dir, "--trigger", TRIGGER,
                 "--max-kills", "3", "--duration", "90", "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_src())
            out, err = killer.communicate(timeout=120)
            assert killer.returncode == 0, err
            events = [json.loads(line) for line in out.splitlines()]
            kills = [e for e in events if e["event"] == "kill"]
            assert len(kills) == 3, events
            # highest oom_score first: the order of oom_score_adj 300, 200, 100
            assert [e["pid"] for e in kills] == [pid for pid, _ in hogs], events
            assert [e["oom_score"] for e in kills] == sorted(
                (e["oom_score"] for e in kills), reverse=True)
            for e, (_pid, mib) in zip(kills, hogs):
                assert e["outcome"] == "killed"
                assert e["memory_bytes"] >= mib << 20  # RSS read just before the kill
                assert e["mrelease"] in ("released", "already_released"), e
            # one at a time: each kill completed before the next victim was even chosen, and
            # each followed its own pressure event
            for a, b in zip(kills, kills[1:]):
                assert b["t_start"] >= a["t_done"]
            seq = [e["event"] for e in events]
            for i in (j for j, ev in enumerate(seq) if ev == "kill"):
                assert seq[i - 1] == "pressure"
            assert events[-1] == {**events[-1], "event": "stop", "kills": 3}
            assert not any(is_alive(pid) for pid, _ in hogs)
            assert is_alive(thrasher.pid)  # lowest oom_score: its turn never came
        finally:
            if killer is not None and killer.poll() is None:
                killer.kill()
                killer.communicate()
            for k in keepers:
                k.cleanup()


def test_lowmem_killer_reports_missing_psi_and_bad_cgroup(tmp_path):
    r = subprocess.run([sys.executable, str(EXAMPLE), "--psi", str(tmp_path / "nope"),
                        "--duration", "1"], capture_output=True, text=True,
                       env=env_with_src(), timeout=30)
    assert r.returncode == 1 and "PSI not available" in r.stderr
    r = subprocess.run([sys.executable, str(EXAMPLE), "--cgroup", str(tmp_path)],
                       capture_output=True, text=True, env=env_with_src(), timeout=30)
    assert r.returncode == 2 and "not a cgroup directory" in r.stderr
