#!/usr/bin/env python3
"""Low-memory killers side by side: ``exithand lowmem`` vs earlyoom and nohang (Debian).

Every episode runs in its own pid namespace (``unshare --pid --fork --mount-proc``: a killer
sees and can kill only the episode's processes) and its own memory cgroup (v1 limit, so the
episode can never take more than ``--limit-mib`` of the machine).  The episode driver,
``_lowmem_episode.py``, sets the killer's floor just above what is available once the victim
(the largest process) has allocated, so "low memory" is a few hundred MiB of the real
``MemAvailable`` and not an exhausted machine.  Scenarios:

* ``idle``   a 1 GiB victim, two 128 MiB bystanders; the floor is 400 MiB above available;
* ``busy``   the same with two CPU burners and the victim at nice 19 (short of CPU);
* ``frozen`` the same with the victim's v1 freezer cgroup frozen (it cannot run its exit);
* ``pcp``    the floor 900 MiB above available: killing the victim lifts MemAvailable only
             ~100 MiB over the floor once *all* its memory shows, so a killer that re-reads
             MemAvailable while freed pages still sit on per-CPU free lists kills again;
* ``psi``    a 1 GiB cgroup: a 700 MiB victim, then (after a quiet phase with no stall) a
             thrasher whose 500 MiB of page cache fits only once the victim is gone: PSI
             killers only: ours on the cgroup's memory.pressure; earlyoom 1.7 has no PSI, and
             nohang 0.2 acts on PSI only while MemAvailable is under its floor, which alone
             triggers it anyway, so neither runs this scenario.

Measured from the moment a killer's signal is visible on the victim (pending, or dead), every
5 ms: ``freed`` (the cgroup's usage down by 90% of the victim), ``relief`` (MemAvailable back
over the floor), and which processes were killed within ``--observe`` seconds.  One kill
suffices in every scenario, so any second kill is an over-kill and any non-victim is a wrong
kill.  ``external`` counts extra kills taken while MemAvailable had fallen more than
(victim - margin) below its peak since the first kill: memory taken by something outside the
episode (the machine is shared), which any killer should answer.  nohang's check that a
floor is at most 50% of RAM is relaxed in a private copy (the
floor here is "available + margin", far above 50% on a 24 GiB machine); nothing else changes.

    sudo python3 bench/lowmem_scenarios.py --runs 3            # all scenarios, all killers
    sudo python3 bench/lowmem_scenarios.py --scenarios pcp --killers exithand,earlyoom
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from _common import RESULTS, env

HERE = Path(__file__).resolve().parent
EPISODE = HERE / "_lowmem_episode.py"
SCENARIOS = ["idle", "busy", "frozen", "pcp", "psi"]
KILLERS = ["exithand", "earlyoom", "nohang"]


def nohang_copy() -> Optional[Path]:
    src = shutil.which("nohang")
    if src is None:
        return None
    out = RESULTS / ".build" / "nohang-relaxed"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = Path(src).read_text()
    text = text.replace("mem_min_kb > mem_total * 0.5", "mem_min_kb > mem_total * 1.0")
    out.write_text(text)
    out.chmod(0o755)
    return out


def nohang_config(scenario: str) -> str:
    base = Path("/etc/nohang/nohang.conf").read_text().splitlines()
    sets = {"soft_threshold_min_mem": "@T_MIB@ M", "hard_threshold_min_mem": "@T_MIB@ M",
            "print_statistics": "False", "min_sleep": "0.1"}
    lines = []
    for line in base:
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key} = {sets[key]}" if key in sets and "=" in line
                     and not line.startswith("#") else line)
    return "\n".join(lines) + "\n"  # @T_MIB@ and @PSI@ are filled per episode


def killer_argv(name: str, scenario: str, tmp: Path) -> Optional[list[str]]:
    if name == "exithand":
        base = [sys.executable, "-m", "exithand", "lowmem", "--json", "--no-protect-self"]
        if scenario == "psi":
            return [*base, "--psi", "some 150ms 2s {PSI}"]
        return [*base, "--mem-min", "{T}", "--swap-min", "100%"]
    if name == "earlyoom":
        if scenario == "psi" or shutil.which("earlyoom") is None:
            return None
        return ["earlyoom", "-M", "{T_KIB},{T_KIB}", "-r", "0"]
    if name == "nohang":
        prog = nohang_copy()
        # nohang 0.2 acts on PSI only while MemAvailable is also under its floor, and that
        # floor alone already triggers it: PSI cannot be the trigger, so no psi episode
        if prog is None or scenario == "psi":
            return None
        conf_text = nohang_config(scenario)
        tmpl = tmp / f"nohang-{scenario}.tmpl"
        tmpl.write_text(conf_text)
        conf = tmp / f"nohang-{scenario}-{uuid.uuid4().hex[:6]}.conf"
        # placeholders are filled in the argv by the episode; sed puts them in the file
        return ["sh", "-c", "sed -e 's|@T_MIB@|'\"$1\"'|g' -e 's|@PSI@|'\"$2\"'|g' "
                f"{tmpl} > {conf} && exec {sys.executable} {prog} --monitor -c {conf}",
                "nohang", "{T_MIB}", "{PSI}"]
    raise ValueError(name)


@contextlib.contextmanager
def cgroups(limit: int, freezer: bool, v2: bool):
    made = []
    tag = f"exithand-lowmem-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    own = "/"
    with open("/proc/self/cgroup") as f:
        for line in f:
            parts = line.strip().split(":", 2)
            if "memory" in parts[1].split(","):
                own = parts[2]
    home = os.path.join("/sys/fs/cgroup/memory", own.lstrip("/"))
    mem = os.path.join(home, tag)
    os.mkdir(mem)
    made.append(mem)
    with open(os.path.join(mem, "memory.limit_in_bytes"), "w") as f:
        f.write(str(limit))
    fz = v2d = None
    if freezer:
        fz = os.path.join("/sys/fs/cgroup/freezer", tag)
        os.mkdir(fz)
        made.append(fz)
    if v2:
        v2d = os.path.join("/sys/fs/cgroup/unified", tag)
        os.mkdir(v2d)
        made.append(v2d)
    try:
        yield home, mem, fz, v2d
    finally:
        for d in reversed(made):
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def episode(scenario: str, killer: str, args: argparse.Namespace, tmp: Path
            ) -> Optional[dict[str, Any]]:
    argv = killer_argv(killer, scenario, tmp)
    if argv is None:
        return None
    psi = scenario == "psi"
    limit = (1 << 30) if psi else args.limit_mib << 20
    with cgroups(limit, scenario == "frozen", psi) as (home, mem, fz, v2d):
        spec: dict[str, Any] = {
            "mem_dir": mem, "home_dir": home, "freezer_dir": fz, "v2_dir": v2d,
            "scenario": scenario, "killer": argv, "killer_log": str(tmp / "killer.log"),
            "victim_mib": 700 if psi else 1024, "bystanders": [64] if psi else [128, 128],
            "margin_mib": 900 if scenario == "pcp" else 400,
            "observe": 12.0 if scenario == "frozen" else args.observe,
            "deadline": 20.0, "quiet": args.quiet, "thrash_file": str(tmp / "thrash.dat")}
        if psi:
            with open(tmp / "thrash.dat", "wb") as f:
                f.truncate(500 << 20)
        r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable,
                            str(EPISODE), json.dumps(spec)], capture_output=True, text=True,
                           env=env(), timeout=120)
        if r.returncode != 0 or not r.stdout.strip():
            return {"error": r.stderr[-2000:]}
        res: dict[str, Any] = json.loads(r.stdout.splitlines()[-1])
        res["killer_log"] = (tmp / "killer.log").read_text()[-3000:]
        return res


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(key: str) -> str:
        vals = [r[key] for r in rows if r.get(key) is not None]
        missing = sum(1 for r in rows if r.get(key) is None)
        if not vals:
            return "never"
        s = f"{statistics.median(vals):.3f} / {max(vals):.3f}"
        return s + (f" ({missing}x never)" if missing else "")
    kills = [len(r.get("killed", [])) for r in rows]
    wrong = sum(1 for r in rows if any(n != "victim" for n in r.get("killed", [])))
    over = sum(1 for k in kills if k > 1)
    # an extra kill taken while MemAvailable was more than (victim - margin) below its peak
    # since the first kill: memory taken by something outside the episode (a shared machine)
    external = 0
    for r in rows:
        gap = (r.get("victim_mib", 1024) - r.get("margin_mib", 400)) << 20
        external += sum(1 for _n, t, avail, peak in r.get("trace", [])[1:]
                        if t > 0 and peak - avail > gap)
    out = {"runs": len(rows), "freed": stats("freed"), "relief": stats("relief"),
           "external": external,
           "kills": f"{statistics.mean(kills):.2f} (max {max(kills)})" if kills else "-",
           "over_kill": f"{over} of {len(rows)}", "wrong_kill": f"{wrong} of {len(rows)}"}
    if rows and "kills_before_stall" in rows[0]:
        early = sum(1 for r in rows if r["kills_before_stall"])
        out["kills_before_stall"] = f"{early} of {len(rows)}"
        out["relief"] = "-"
        vals = [r["kill_after_thrash"] for r in rows if r.get("kill_after_thrash") is not None]
        out["freed"] = (f"kill {statistics.median(vals):.2f} s after thrash starts"
                        if vals else "never killed")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--killers", default=",".join(KILLERS))
    p.add_argument("--limit-mib", type=int, default=2048)
    p.add_argument("--observe", type=float, default=5.0)
    p.add_argument("--quiet", type=float, default=4.0, help="psi: seconds without stall")
    p.add_argument("--json", metavar="FILE", help="also write every episode here")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (cgroups, pid namespaces)")
    tmp = RESULTS / ".lowmem"
    tmp.mkdir(parents=True, exist_ok=True)
    table = []
    raw = []
    for scenario in args.scenarios.split(","):
        for run in range(args.runs):
            # killers interleaved run by run, so machine load affects them alike
            for killer in args.killers.split(","):
                res = episode(scenario, killer, args, tmp)
                if res is None:
                    continue
                res.update(killer=killer, run=run, victim_mib=700 if scenario == "psi" else 1024,
                           margin_mib=900 if scenario == "pcp" else 400)
                raw.append(res)
                print(json.dumps({k: v for k, v in res.items() if k != "killer_log"}),
                      file=sys.stderr, flush=True)
    for scenario in args.scenarios.split(","):
        for killer in args.killers.split(","):
            rows = [r for r in raw if r.get("scenario") == scenario and r["killer"] == killer
                    and "error" not in r]
            if rows:
                table.append({"scenario": scenario, "killer": killer, **summarize(rows)})
    errors = [r for r in raw if "error" in r]
    cols = ["scenario", "killer", "runs", "freed", "relief", "kills", "over_kill", "wrong_kill",
            "external", "kills_before_stall"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in table:
        print("| " + " | ".join(str(row.get(c, "-")) for c in cols) + " |")
    if errors:
        print(f"\n{len(errors)} episode(s) failed; first: {errors[0]['error'][-500:]}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
