"""``exithand lowmem``: the daemon against real processes in a memory cgroup and a pid namespace.

Each scenario runs ``tests/lowmem_ns.py`` as pid 1 of a private pid namespace (``unshare --pid
--fork --mount-proc``): the daemon sees only the processes of that namespace, so it cannot hit
anything else on the machine whatever it decides, and everything in the namespace dies with it.
The victims and the driver sit in a memory cgroup limited to 256 MiB (v1 here, v2 elsewhere);
the daemon measures that cgroup (``--memory-cgroup``) but lives outside it.  The floor is set
relative to what is available once the victims are ready (``{plus}``), so the number of kills a
scenario needs is known exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from kill_helpers import memory_cgroup, remove_cgroup
from reuse_prelude import PRELUDE

from conftest import env_with_src

DRIVER = Path(__file__).resolve().parent / "lowmem_ns.py"
FAST = ["--json", "--hold-off", "300ms", "--interval", "50ms", "--no-protect-self"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: memory cgroups, "
                                "pid namespaces")


def _unshare_reason() -> Optional[str]:
    if shutil.which("unshare") is None:
        return "unshare(1) not installed"
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                       capture_output=True, text=True, timeout=30)
    return None if r.returncode == 0 else f"cannot make a pid namespace: {r.stderr.strip()}"


@contextlib.contextmanager
def freezer() -> Iterator[str]:
    root = "/sys/fs/cgroup/freezer"
    if not os.path.isfile(os.path.join(root, "cgroup.procs")):
        pytest.skip("no v1 freezer hierarchy at /sys/fs/cgroup/freezer")
    path = os.path.join(root, f"exithand-lowmem-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError), open(os.path.join(path, "freezer.state"), "w") as f:
            f.write("THAWED")
        remove_cgroup(path)


def scenario(victims: list[dict[str, Any]], daemon: list[str], plus_mib: int,
             freezer_dir: Optional[str] = None, extra: Optional[dict[str, Any]] = None,
             rc: Optional[int] = 0, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the driver; ``extra``: more of its spec (see ``lowmem_ns.py``); ``rc``: the
    daemon's exit status expected (None: any); ``prefix``: e.g. ``nsenter -t PID -m`` to join
    a test journald's mount namespace."""
    why = _unshare_reason()
    if why:
        pytest.skip(why)
    with memory_cgroup("lowmem", 256 << 20) as cg:
        if any(v.get("v2") for v in victims) and not cg.v2_dir:
            pytest.skip("no cgroup v2 to put the victim in")
        spec = {"mem_dir": cg.mem_dir, "home_dir": os.path.dirname(cg.mem_dir),
                "v2_dir": cg.v2_dir,
                "victims": victims, "plus_mib": plus_mib, "freezer_dir": freezer_dir,
                "daemon": ["--memory-cgroup", cg.mem_dir, "--mem-min", "{plus}", *daemon],
                **(extra or {})}
        r = subprocess.run([*prefix, "unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                            str(DRIVER), json.dumps(spec)], capture_output=True, text=True,
                           env=env_with_src(), timeout=60)
        assert r.returncode == 0, r.stderr
        res: dict[str, Any] = json.loads(r.stdout.splitlines()[-1])
        assert rc is None or res["rc"] == rc, res
        return res


def kinds(res: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in res["events"] if e["event"] == kind]


def dead(res: dict[str, Any], name: str) -> bool:
    return bool(res["victims"][name]["state"] in ("Z", "X", "gone"))


@pytest.mark.timeout(90)
def test_victim_order_prefer_ignore_min_size_and_one_kill_at_a_time(tmp_path: Path) -> None:
    hook_log = tmp_path / "hook.log"
    victims = [
        {"name": "bigignored", "mib": 64},      # largest, but --ignore
        {"name": "middle", "mib": 32},
        {"name": "preferred", "mib": 16},       # smallest real victim, but --prefer: +300
        {"name": "tiny", "mib": 2, "adj": 900},  # highest oom_score, but below --min-size
        {"name": "other", "mib": 30},
    ]
    # 40 MiB short: killing 'preferred' (16) is not enough, 'middle' (32) then is; 'other'
    # and the rest must survive
    res = scenario(victims, [*FAST, "--ignore-comm", "^bigignored$",
                             "--prefer-comm", "^preferred$",
                             "--min-size", "{rss+8}", "--duration", "4",
                             "--hook", f"sh -c 'echo $EXITHAND_COMM $EXITHAND_HOW >> {hook_log}'"],
                   plus_mib=40)
    kills = kinds(res, "kill")
    assert [k["comm"] for k in kills] == ["preferred", "middle"], res["events"]
    assert kills[0]["score"] == kills[0]["oom_score"] + 300  # the --prefer bonus
    assert kills[1]["score"] == kills[1]["oom_score"]
    for k in kills:
        assert k["signal"] == "SIGKILL"
    # each kill followed the previous victim's freeing plus the hold-off, not a stale figure
    freed = kinds(res, "freed")
    assert [f["comm"] for f in freed] == ["preferred", "middle"]
    assert kills[1]["time"] >= freed[0]["time"] + 0.3 - 1e-3
    assert dead(res, "preferred") and dead(res, "middle")
    assert not any(dead(res, n) for n in ("bigignored", "tiny", "other")), res["victims"]
    # the hook ran once per victim, after its memory was back
    # (dead: the pidfd said so first; released: process_mrelease returned first)
    lines = sorted(line.split() for line in hook_log.read_text().splitlines())
    assert [c for c, _how in lines] == ["middle", "preferred"], lines
    assert all(how in ("dead", "released") for _c, how in lines), lines
    start = kinds(res, "start")[0]
    assert start["pid"] != 1 and start["dry_run"] is False


def _can_set_adj_min() -> Optional[str]:
    pid = os.fork()
    if pid == 0:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("-1000")
            os._exit(0)
        except OSError:
            os._exit(1)
    _, st = os.waitpid(pid, 0)
    return None if os.waitstatus_to_exitcode(st) == 0 else (
        "cannot set oom_score_adj -1000 here (needs CAP_SYS_RESOURCE)")


@pytest.mark.timeout(90)
def test_oom_score_adj_minus_1000_is_never_a_victim() -> None:
    why = _can_set_adj_min()
    if why:
        pytest.skip(why)
    victims = [{"name": "protected", "mib": 96, "adj": -1000},
               {"name": "victim", "mib": 24, "adj": 0}]
    res = scenario(victims, [*FAST, "--duration", "3", "--mem-min", "{limit-1}"],
                   plus_mib=0)  # never satisfied
    assert [k["comm"] for k in kinds(res, "kill")] == ["victim"]
    assert kinds(res, "no_candidate"), res["events"]
    assert not dead(res, "protected") and dead(res, "victim")


@pytest.mark.timeout(90)
def test_frozen_victim_is_released_by_mrelease_and_never_killed_again() -> None:
    with freezer() as fz:
        victims = [{"name": "frozen", "mib": 96, "freeze": True},
                   {"name": "small", "mib": 4}]
        # the floor stays out of reach after the kill: the trigger keeps firing, the frozen
        # victim (alive, SIGKILL pending) must never be chosen again; 'small' is ignored, so
        # there is nobody else
        res = scenario(victims, [*FAST, "--ignore-comm", "^small$", "--duration", "3",
                                 "--mem-min", "{limit-1}"], plus_mib=0, freezer_dir=fz)
    kills = kinds(res, "kill")
    assert [k["comm"] for k in kills] == ["frozen"], res["events"]
    (mr,) = kinds(res, "mrelease")
    assert mr["mrelease"] == "released", mr
    (freed,) = kinds(res, "freed")
    assert freed["how"] == "released" and freed["seconds"] < 5
    assert kinds(res, "no_candidate")
    assert res["victims"]["frozen"]["state"] not in ("Z", "X", "gone")  # still frozen, alive
    assert not dead(res, "small")


@pytest.mark.timeout(90)
def test_a_process_already_dying_is_not_chosen() -> None:
    with freezer() as fz:
        victims = [{"name": "dying", "mib": 96, "freeze": True, "prekill": True},
                   {"name": "healthy", "mib": 32}]
        res = scenario(victims, [*FAST, "--duration", "2"], plus_mib=16, freezer_dir=fz)
    assert [k["comm"] for k in kinds(res, "kill")] == ["healthy"], res["events"]


@pytest.mark.timeout(90)
def test_slowly_dying_victim_gets_one_sigterm_and_no_second_kill(tmp_path: Path) -> None:
    log = tmp_path / "signals.log"
    victims = [{"name": "slow", "mib": 64, "slow_term": 1.0, "log": str(log)},
               {"name": "bystander", "mib": 16}]
    res = scenario(victims, [*FAST, "--grace", "3s", "--kill-timeout", "200ms",
                             "--duration", "4"], plus_mib=32)
    kills = kinds(res, "kill")
    assert [k["comm"] for k in kills] == ["slow"], res["events"]
    assert kills[0]["signal"] == "SIGTERM"
    assert not kinds(res, "escalate")
    assert log.read_text() == "TERM\n"
    (freed,) = kinds(res, "freed")
    assert freed["seconds"] >= 1.0  # it took its time; nobody was killed meanwhile
    assert dead(res, "slow") and not dead(res, "bystander")


@pytest.mark.timeout(90)
def test_dry_run_kills_nothing() -> None:
    victims = [{"name": "a", "mib": 32}, {"name": "b", "mib": 16}]
    res = scenario(victims, [*FAST, "--dry-run", "--duration", "2", "--mem-min", "{limit-1}"],
                   plus_mib=0)
    would = kinds(res, "would_kill")
    assert would and all(w["comm"] == "a" for w in would)
    assert not kinds(res, "kill") and not kinds(res, "mrelease")
    assert not dead(res, "a") and not dead(res, "b")


REUSE = PRELUDE + r"""
from exithand.lowmem._victims import Policy, evaluate, pin
a, a_ctl = pid0, w0
cand, why = evaluate(a, Policy())
out = {"candidate": cand is not None}
os.kill(a, signal.SIGKILL)
os.waitpid(a, 0)
os.close(a_ctl)
ticks = os.sysconf("SC_CLK_TCK")  # the reuser must be born in a later clock tick
while time.clock_gettime(time.CLOCK_BOOTTIME) * ticks < cand.start_time + 2:
    pass
b, b_ctl = reuse_number(a)
out["reused"] = True
out["stale_pin"] = pin(cand, Policy()) is not None       # must be refused
fresh, _ = evaluate(b, Policy())
got = pin(fresh, Policy())                               # the reuser itself: a new candidate
out["fresh_pin"] = got is not None
if got:
    got[0].close()
out["reuser_alive"] = os.waitpid(b, os.WNOHANG) == (0, 0)
os.close(b_ctl)
os.waitpid(b, 0)
print(json.dumps(out))
"""


@pytest.mark.timeout(60)
def test_a_reused_pid_is_never_pinned_or_signalled() -> None:
    why = _unshare_reason()
    if why:
        pytest.skip(why)
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                        REUSE], capture_output=True, text=True, env=env_with_src(), timeout=50)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out == {"candidate": True, "reused": True, "stale_pin": False, "fresh_pin": True,
                   "reuser_alive": True}, out


@pytest.mark.timeout(90)
def test_kill_mode_tree_takes_the_victims_descendants() -> None:
    victims = [{"name": "parent", "mib": 64, "children": 2}, {"name": "other", "mib": 16}]
    res = scenario(victims, [*FAST, "--kill-mode", "tree", "--ignore-comm=-kid$",
                             "--duration", "3"], plus_mib=32)
    kills = kinds(res, "kill")
    assert [k["comm"] for k in kills] == ["parent"], res["events"]
    (done,) = kinds(res, "killed")
    assert done["kill_mode"] == "tree" and len(done["processes"]) == 3, done
    assert all(p["outcome"] == "killed" for p in done["processes"]), done
    assert dead(res, "parent") and not dead(res, "other")


@pytest.mark.timeout(90)
def test_kill_mode_cgroup_takes_the_victims_whole_cgroup() -> None:
    victims = [{"name": "grouped", "mib": 64, "children": 2, "v2": True},
               {"name": "other", "mib": 16}]
    res = scenario(victims, [*FAST, "--kill-mode", "cgroup", "--ignore-comm=-kid$",
                             "--duration", "3"], plus_mib=32)
    kills = kinds(res, "kill")
    assert [k["comm"] for k in kills] == ["grouped"], res["events"]
    assert kills[0]["cgroup_killed"], kills[0]
    (done,) = kinds(res, "killed")
    assert done["kill_mode"] == "cgroup" and len(done["processes"]) == 3, done
    assert dead(res, "grouped") and not dead(res, "other")
