"""CPU per exit of ``exithand watch --json`` with ``--metrics`` or ``--journal``, side by side.

Three watchers listen to the *same* exit storm at the same time (so machine load hits them
alike): ``--json``, ``--json --metrics PORT`` and ``--json --journal`` (the last one inside a
private mount namespace with its own ``systemd-journald``, as tests/test_obs_journal.py does).
Each round, a shell running as a uid of its own (65533) runs ``true`` ``--exits`` times (the
watchers filter on that uid: a comm filter would miss processes that exec and die before their
new name is read); once every watcher has printed every exit, the CPU time (user + system,
all threads, ``/proc/PID/stat``) each used during the round is divided by the exits.  A
Prometheus-like scraper (another process) fetches ``/metrics`` every second meanwhile.

    sudo python3 bench/obs_cost.py [--exits 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import env, machine, proc_cpu_ctx, table, write_json

JOURNALD = "/lib/systemd/systemd-journald"
UID = 65533  # no passwd entry needed
PRIVATE = ("mount --make-rprivate / && mount -t tmpfs tmpfs /run/systemd && "
           "mkdir /run/systemd/journal && mount -t tmpfs tmpfs /run/log && "
           "{ [ ! -d /var/log/journal ] || mount -t tmpfs tmpfs /var/log/journal; } && ")


def _port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exits", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="exithand-obs-bench-"))
    true = shutil.which("true") or "/bin/true"
    jd = subprocess.Popen(["unshare", "-m", "sh", "-c", PRIVATE + f"exec {JOURNALD}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    enter = ["nsenter", "-t", str(jd.pid), "-m"]
    for _ in range(100):
        if subprocess.run([*enter, "test", "-S", "/run/systemd/journal/socket"]).returncode == 0:
            break
        time.sleep(0.1)
    port = _port()
    base = [sys.executable, "-m", "exithand", "watch", "--json", "--uid", str(UID)]
    variants = {"--json": base, "--json --metrics": [*base, "--metrics", str(port)],
                "--json --journal": [*enter, *base, "--journal"]}
    procs, outs = {}, {}
    scraper = None
    try:
        for name, argv in variants.items():
            outs[name] = tmp / (name.replace(" ", "_") + ".out")
            with open(outs[name], "w") as out:
                procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE,
                                               text=True, env=env())
        for name, p in procs.items():
            line = p.stderr.readline()  # type: ignore[union-attr]
            assert "listening" in line, (name, line)
        scraper = subprocess.Popen([sys.executable, "-c", (
            "import time, urllib.request\n"
            "while True:\n"
            f"    urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read()\n"
            "    time.sleep(1)\n")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        per_exit: dict[str, list[float]] = {n: [] for n in variants}
        for r in range(a.rounds):
            before = {n: proc_cpu_ctx(p.pid)[0] for n, p in procs.items()}
            want = {n: _lines(o) + a.exits for n, o in outs.items()}
            subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
                            "sh", "-c", f'i=0; while [ $i -lt {a.exits} ]; do "{true}"; '
                            "i=$((i+1)); done"], check=True)
            deadline = time.monotonic() + 120
            while any(_lines(outs[n]) < want[n] for n in variants):
                if time.monotonic() > deadline:
                    sys.exit(f"round {r}: a watcher missed exits: "
                             f"{ {n: _lines(outs[n]) - want[n] for n in variants} }")
                time.sleep(0.05)
            for n, p in procs.items():
                per_exit[n].append((proc_cpu_ctx(p.pid)[0] - before[n]) / a.exits * 1e6)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        counted = sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines()
                      if x.startswith("exithand_process_exits_total{"))
        assert counted == _lines(outs["--json --metrics"]), (counted, "the counter disagrees")
    finally:
        for p in [*procs.values(), *([scraper] if scraper else []), jd]:
            p.terminate()
            p.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)
    ref = statistics.median(per_exit["--json"])
    rows = [[n, statistics.median(v), min(v), max(v), statistics.median(v) / ref]
            for n, v in per_exit.items()]
    print(f"{a.exits} exits x {a.rounds} rounds, the three watchers side by side "
          f"(load {os.getloadavg()[0]:.1f})")
    print(table(["watch", "CPU µs/exit (median)", "min", "max", "ratio"], rows))
    write_json("obs_cost", {"machine": machine(), "exits": a.exits, "rounds": a.rounds,
                            "per_exit_us": per_exit})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
