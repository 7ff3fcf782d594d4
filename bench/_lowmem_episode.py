"""One low-memory episode, run as pid 1 of a private pid namespace (see lowmem_scenarios.py).

SPEC (JSON, argv[1]): ``mem_dir`` (memory cgroup with a limit; we and our children join it),
``home_dir`` (where the killer goes, outside that cgroup), ``v2_dir`` (optional v2 twin, for
PSI), ``freezer_dir`` (optional), ``scenario``, ``killer`` (argv with ``{T}``, ``{T_KIB}``,
``{T_MIB}``, ``{PSI}`` placeholders), ``victim_mib``, ``bystanders`` (list of MiB), ``margin_mib``,
``observe`` (seconds after the first kill), ``deadline`` (seconds to wait for a first kill).

Timeline: bystanders and the victim (largest, so every killer's badness picks it) allocate; the
scenario is set up (busy: two CPU burners while the victim runs at nice 19; frozen: the victim's
v1 freezer cgroup is frozen); the floor T is set ``margin_mib`` above what is available now, so
the machine is "low" by exactly that much and killing the victim alone lifts it back over T
(by victim size - margin); then the killer starts.  We sample every 5 ms: the first moment any
of our processes has a signal pending or is dead is ``t_kill``; ``freed`` is when the cgroup's
usage dropped by 90% of the victim's size; ``relief`` is when MemAvailable is back >= T.  The
psi scenario instead runs a thrasher (page cache of a sparse file that does not fit next to the
victim) after a quiet phase, and counts kills in each phase.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import subprocess
import sys
import time

spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
MIB = 1 << 20


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def mem_available() -> int:
    for line in read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable")


def usage() -> int:
    d = spec["mem_dir"]
    name = "memory.usage_in_bytes" if os.path.exists(os.path.join(d, "memory.usage_in_bytes")) \
        else "memory.current"
    return int(read(os.path.join(d, name)))


def status(pid: int) -> tuple[str, bool]:
    """(state, a signal is pending)."""
    try:
        st = read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0]
        pend = False
        for line in read(f"/proc/{pid}/status").splitlines():
            if line.startswith(("SigPnd:", "ShdPnd:")):
                pend |= int(line.split()[1], 16) != 0
        return st, pend
    except (OSError, IndexError):
        return "gone", False


def child(name: str, body) -> int:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            libc.prctl(15, name.encode(), 0, 0, 0)
            body(w)
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"r", name
    os.close(r)
    return pid


def hog(mib: int, nice: int = 0):
    def body(w: int) -> None:
        if nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        m = mmap.mmap(-1, mib * MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for off in range(0, len(m), 4096):
            m[off] = 1
        os.write(w, b"r")
        while True:
            signal.pause()
    return body


def burner(w: int) -> None:
    os.write(w, b"r")
    while True:
        pass


def thrasher(path: str):
    def body(w: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        os.write(w, b"r")
        while True:
            os.lseek(fd, 0, 0)
            while os.read(fd, 1 << 20):
                pass
    return body


write(os.path.join(spec["mem_dir"], "cgroup.procs"), "0")
if spec.get("v2_dir"):
    write(os.path.join(spec["v2_dir"], "cgroup.procs"), "0")
scenario = spec["scenario"]
procs: dict[str, int] = {}
for i, mib in enumerate(spec["bystanders"]):
    procs[f"bystander{i}"] = child(f"bystander{i}", hog(mib))
procs["victim"] = child("victim", hog(spec["victim_mib"], 19 if scenario == "busy" else 0))
if scenario == "busy":
    for i in range(os.cpu_count() or 1):
        procs[f"burner{i}"] = child(f"burner{i}", burner)
if scenario == "frozen":
    fz = spec["freezer_dir"]
    write(os.path.join(fz, "cgroup.procs"), str(procs["victim"]))
    write(os.path.join(fz, "freezer.state"), "FROZEN")
    while read(os.path.join(fz, "freezer.state")).strip() != "FROZEN":
        time.sleep(0.005)

avail0 = mem_available()
T = avail0 + spec["margin_mib"] * MIB
if scenario == "psi":
    T = 0
subst = {"{T}": str(T), "{T_KIB}": str(T // 1024), "{T_MIB}": str(T // MIB),
         "{PSI}": os.path.join(spec.get("v2_dir") or "", "memory.pressure")}


def fill(a: str) -> str:
    for k, v in subst.items():
        a = a.replace(k, v)
    return a


home = spec["home_dir"]
log = open(spec["killer_log"], "w")  # noqa: SIM115 - closed at exit
killer = subprocess.Popen([fill(a) for a in spec["killer"]], stdout=log, stderr=log,
                          preexec_fn=lambda: write(os.path.join(home, "cgroup.procs"), "0"),
                          env=dict(os.environ, **spec.get("env", {})))
t_start = time.monotonic()
usage0 = usage()
res: dict = {"scenario": scenario, "avail0": avail0, "T": T}


def killed_names() -> list[str]:
    return sorted(n for n, p in procs.items() if status(p)[0] in ("Z", "X", "gone")
                  or status(p)[1])


if scenario == "psi":
    # quiet phase: no stall at all; then the thrasher
    quiet = spec["quiet"]
    while time.monotonic() < t_start + quiet:
        time.sleep(0.05)
    res["kills_before_stall"] = killed_names()
    procs["thrasher"] = child("thrasher", thrasher(spec["thrash_file"]))
    t_thrash = time.monotonic()
    t_kill = None
    while time.monotonic() < t_thrash + spec["deadline"]:
        if status(procs["victim"])[0] in ("Z", "X", "gone") or status(procs["victim"])[1]:
            t_kill = time.monotonic()
            break
        time.sleep(0.005)
    res["kill_after_thrash"] = None if t_kill is None else round(t_kill - t_thrash, 3)
    end = (t_kill or time.monotonic()) + spec["observe"]
    while time.monotonic() < end:
        time.sleep(0.05)
    res["killed"] = killed_names()
else:
    t_kill = freed = relief = None
    deadline = t_start + spec["deadline"]
    end = None
    seen: list[str] = []
    trace = []  # (name, seconds after the first kill, MemAvailable then, its peak so far)
    peak = 0
    while True:
        now = time.monotonic()
        names = killed_names()
        if t_kill is not None:
            peak = max(peak, mem_available())
        for n in names:
            if n not in seen:
                seen.append(n)
                trace.append((n, 0.0 if t_kill is None else round(now - t_kill, 3),
                              mem_available(), peak))
        if t_kill is None:
            if names:
                t_kill = now
                end = now + spec["observe"]
            elif now > deadline:
                break
        else:
            if freed is None and usage() <= usage0 - 0.9 * spec["victim_mib"] * MIB:
                freed = now - t_kill
            if relief is None and mem_available() >= T:
                relief = now - t_kill
            if now > end:
                break
        time.sleep(0.005)
    res.update(t_kill=None if t_kill is None else round(t_kill - t_start, 3),
               freed=None if freed is None else round(freed, 4),
               relief=None if relief is None else round(relief, 4),
               killed=killed_names(), trace=trace)
res["victim_state"] = status(procs["victim"])[0]
killer.send_signal(signal.SIGTERM)
try:
    killer.wait(5)
except subprocess.TimeoutExpired:
    killer.kill()
    killer.wait()
if spec.get("freezer_dir"):
    write(os.path.join(spec["freezer_dir"], "freezer.state"), "THAWED")
print(json.dumps(res), flush=True)
