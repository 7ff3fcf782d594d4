"""Driver for the lowmem daemon tests: run as pid 1 of a private pid namespace.

``unshare --pid --fork --mount-proc python3 lowmem_ns.py SPEC`` where SPEC is JSON:

* ``mem_dir`` a memory cgroup with a limit; this driver and the victims join it, the daemon
  does not (it goes back to ``home_dir``), so the daemon's own memory never moves the figures;
* ``victims``: ``{"name", "mib", "adj", "freeze", "prekill", "slow_term", "log"}``: each a
  forked child that names itself (comm), sets oom_score_adj, forks ``children`` (named
  NAME-kid), joins ``v2_dir`` with ``v2``, touches ``mib`` MiB of anonymous
  memory and blocks; ``freeze`` moves it into ``freezer_dir`` and freezes it (v1 freezer),
  ``prekill`` then sends it SIGKILL (it stays frozen with SIGKILL pending), ``slow_term`` makes
  it take that long to exit after SIGTERM, appending a line to ``log`` per SIGTERM;
* ``daemon``: arguments after ``exithand lowmem``; ``{plus}`` in one is replaced by the
  cgroup's available memory in MiB, measured once every victim is ready, plus ``plus_mib``;
  ``{rss+8}`` by our RSS + 8 MiB (a forked victim's RSS starts with the pages it shares with us);
  ``{limit-1}`` by the cgroup's limit less 1 MiB (a floor never reached, yet below the total,
  which the daemon refuses to reach or pass);

``stdout`` (see :func:`sink`), ``crash_after`` (an event name: the daemon is SIGKILLed when it
prints it) and ``restart`` (extra arguments: the daemon runs a second time, after the first
ended) test the daemon's way out; each victim's ``nice`` is reported too, and ``kids`` are the
children victims forked on SIGTERM (``fork_on_term``; ``ignore_term`` ignores SIGTERM; ``uid``
makes the victim another user's process once set up).

Killed victims stay zombies (state Z: dead) until we exit.  Prints one JSON object: the victims
(name, ns pid, state), the daemon's events, exit code and stderr, and the available memory
measured before the daemon started.  Everything in the namespace dies with us.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
mem_dir = spec["mem_dir"]


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def limit_bytes() -> int:
    v1 = os.path.exists(os.path.join(mem_dir, "memory.limit_in_bytes"))
    return int(read(os.path.join(mem_dir, "memory.limit_in_bytes" if v1 else "memory.max")))


def available() -> int:
    v1 = os.path.exists(os.path.join(mem_dir, "memory.limit_in_bytes"))
    limit = limit_bytes()
    usage = int(read(os.path.join(mem_dir, "memory.usage_in_bytes" if v1 else "memory.current")))
    key = "total_inactive_file" if v1 else "inactive_file"
    inactive = next(int(v) for k, v in (line.split() for line in
                                        read(os.path.join(mem_dir, "memory.stat")).splitlines())
                    if k == key)
    return limit - usage + inactive


def state(pid: int) -> str:
    try:
        return read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


write(os.path.join(mem_dir, "cgroup.procs"), "0")

def victim(v: dict, ready_w: int) -> None:
    libc.prctl(15, v["name"].encode(), 0, 0, 0)  # PR_SET_NAME
    if v.get("v2"):  # its own cgroup v2 (with its children): for kill-mode cgroup
        write(os.path.join(spec["v2_dir"], "cgroup.procs"), "0")
    write("/proc/self/oom_score_adj", str(v.get("adj", 0)))
    if v.get("fork_on_term"):  # a child escapes the kill: it execs sleep (keeps its nice)
        def on_fork(_s: int, _f: object) -> None:
            if os.fork() == 0:
                with open(v["log"], "a") as f:
                    f.write(f"KID {os.getpid()}\n")
                os.execv("/bin/sleep", ["sleep", "60"])
            os._exit(0)
        signal.signal(signal.SIGTERM, on_fork)
    if v.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if v.get("slow_term"):
        def on_term(_s: int, _f: object) -> None:
            with open(v["log"], "a") as f:
                f.write("TERM\n")
            time.sleep(v["slow_term"])
            os._exit(0)
        signal.signal(signal.SIGTERM, on_term)
    for _ in range(v.get("children", 0)):  # forked before the allocation: small
        if os.fork() == 0:
            libc.prctl(15, (v["name"] + "-kid").encode(), 0, 0, 0)
            r, _w = os.pipe()
            os.read(r, 1)
            os._exit(0)
    import mmap
    m = mmap.mmap(-1, v["mib"] << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, len(m), 4096):
        m[off] = 1
    if v.get("uid"):  # another user's process (after the root-only set-up above)
        os.setresgid(v["uid"], v["uid"], v["uid"])
        os.setresuid(v["uid"], v["uid"], v["uid"])
    os.write(ready_w, b"r")
    r, _w = os.pipe()
    while True:
        os.read(r, 1)


pids = {}
for v in spec["victims"]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            victim(v, w)
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"r", v
    os.close(r)
    pids[v["name"]] = pid
    if v.get("freeze"):
        fz = spec["freezer_dir"]
        write(os.path.join(fz, "cgroup.procs"), str(pid))
        write(os.path.join(fz, "freezer.state"), "FROZEN")
        while read(os.path.join(fz, "freezer.state")).strip() != "FROZEN":
            time.sleep(0.01)
        if v.get("prekill"):
            os.kill(pid, signal.SIGKILL)

avail_mib = available() >> 20
rss_mib = next(int(line.split()[1]) for line in read("/proc/self/status").splitlines()
               if line.startswith("VmRSS:")) >> 10
args = [a.replace("{plus}", f"{avail_mib + spec.get('plus_mib', 0)}M")
        .replace("{rss+8}", f"{rss_mib + 8}M")
        .replace("{limit-1}", f"{(limit_bytes() >> 20) - 1}M") for a in spec["daemon"]]
home = spec["home_dir"]


def sink() -> tuple[object, list[int]]:
    """The daemon's stdout: a pipe we read (default), or a hostile one (``stdout``):
    ``unread`` a pipe filled up and never read, ``closed`` a pipe whose reader is gone,
    ``file:PATH`` a file (on a full filesystem)."""
    how = spec.get("stdout")
    if how is None:
        return subprocess.PIPE, []
    if how.startswith("file:"):
        return os.open(how[5:], os.O_WRONLY | os.O_APPEND | os.O_CREAT), []
    r, w = os.pipe()
    if how == "closed":
        os.close(r)
        return w, [w]
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)  # the daemon's writes block, as on a stuck reader
    return w, [w, r]


def run_daemon(argv: list[str], crash: bool) -> tuple[int, str, str, float]:
    stdout, keep = sink()
    t0 = time.monotonic()
    d = subprocess.Popen([sys.executable, "-m", "exithand", "lowmem", *argv],
                         stdout=stdout, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: write(os.path.join(home, "cgroup.procs"), "0"))
    if stdout != subprocess.PIPE:  # (PIPE is -1: an int too)
        os.close(stdout)
    out = ""
    if crash and d.stdout is not None:
        for line in d.stdout:  # SIGKILL the daemon right after this event: a crash mid-kill
            out += line
            if json.loads(line)["event"] == spec["crash_after"]:
                d.kill()
                break
    try:
        rest, err = d.communicate(timeout=spec.get("timeout", 30))
    except subprocess.TimeoutExpired:
        d.kill()
        rest, err = d.communicate()
    for fd in keep:
        if fd != stdout:
            os.close(fd)
    return d.returncode, out + (rest or ""), err, time.monotonic() - t0


def parse(out: str) -> list[dict]:
    events = []
    for line in out.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"event": "text", "line": line})
    return events


def nice(pid: int) -> object:
    try:
        return os.getpriority(os.PRIO_PROCESS, pid) if state(pid) not in ("Z", "X") else None
    except OSError:
        return None


def kids() -> dict[str, object]:
    """The pids our victims' children logged (``KID pid``), with their nice and state."""
    out: dict[str, object] = {}
    for v in spec["victims"]:
        if v.get("log") and os.path.exists(v["log"]):
            for line in read(v["log"]).splitlines():
                if line.startswith("KID "):
                    pid = int(line.split()[1])
                    out[str(pid)] = {"nice": nice(pid), "state": state(pid)}
    return out


rc, out, err, secs = run_daemon(args, bool(spec.get("crash_after")))
events = parse(out)
result = {"rc": rc, "stderr": err, "events": events, "available_mib": avail_mib,
          "seconds": secs, "kids": kids(),
          "victims": {name: {"pid": pid, "state": state(pid), "nice": nice(pid)}
                      for name, pid in pids.items()}}
if spec.get("restart"):  # the daemon again, after the crash
    spec.pop("stdout", None)
    rc2, out2, err2, _secs = run_daemon(args + spec["restart"], False)
    result["restarted"] = {
        "rc": rc2, "stderr": err2, "events": parse(out2),
        "victims": {name: {"pid": pid, "state": state(pid), "nice": nice(pid)}
                    for name, pid in pids.items()}}
if spec.get("freezer_dir"):
    write(os.path.join(spec["freezer_dir"], "freezer.state"), "THAWED")
print(json.dumps(result), flush=True)
