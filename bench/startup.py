"""Start-up time of the command-line faces, side by side with a bare interpreter.

A shell tool is judged by how long ``pwait -e GONE`` takes to say "done": here that is almost
all interpreter start-up plus imports.  This runs, in one interleaved loop (so machine load
hits every command alike), a bare ``python -c pass``, ``python -m json.tool --help`` (a stdlib
CLI, for scale), ``exithand wait``/``pwait``/``waitpid``/``pidwait``/``id`` on a process that
is already gone (or a name nothing has), and the C peers installed here, and prints the median
wall time of each and its ratio to the bare interpreter.

The interpreter is a plain venv (``python -m venv --without-pip``, no site-packages) with a
byte-compiled copy of this checkout's ``src`` on ``PYTHONPATH``, as ``pip install`` leaves
exithand in a venv (compiled: this environment sets ``PYTHONDONTWRITEBYTECODE=1``, and
compiling every module at every start would cost more than all the rest).

    python3 bench/startup.py [--rounds 40] [--python /path/to/venv/bin/python]
                             [--baseline-src /path/to/other/checkout/src]

``--baseline-src`` adds ``exithand wait -e GONE`` run from another checkout (e.g. before a
change), in the same interleaved loop.

Target (issue 10): every face within 2.5x of the bare interpreter.
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
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")


def gone_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def make_venv(base: str) -> str:
    d = tempfile.mkdtemp(prefix="exithand-startup-")
    subprocess.run([base, "-m", "venv", "--without-pip", d], check=True)
    return os.path.join(d, "bin", "python")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--python", help="interpreter to use (default: a fresh plain venv of "
                                     "this one)")
    ap.add_argument("--baseline-src", help="also time 'wait -e GONE' from this src directory")
    args = ap.parse_args()
    py = args.python or make_venv(os.path.realpath(sys.executable))
    src = os.path.join(tempfile.mkdtemp(prefix="exithand-startup-src-"), "src")
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([py, "-m", "compileall", "-q", src], check=True)
    gone = str(gone_pid())
    env = dict(os.environ, PYTHONPATH=src)
    env.pop("EXITHAND_DEBUG", None)
    m = [py, "-m", "exithand"]
    pidfile = os.path.join(tempfile.mkdtemp(prefix="exithand-startup-pf-"), "pid")
    with open(pidfile, "w") as f:
        f.write(f"{gone}\n")
    cmds: dict[str, list[str]] = {
        "python -c pass": [py, "-c", "pass"],
        "python -m json.tool --help": [py, "-m", "json.tool", "--help"],
        "exithand wait -e GONE": [*m, "wait", "-e", gone],
        "exithand pwait GONE": [*m, "pwait", gone],
        "exithand waitpid -e GONE": [*m, "waitpid", "-e", gone],
        "exithand pidwait -x NOMATCH": [*m, "pidwait", "-x", "no-such-name-eh"],
        "exithand pidwait -F PIDFILE(GONE)": [*m, "pidwait", "-F", pidfile],
        "exithand id 1": [*m, "id", "1"],
    }
    base_env = None
    if args.baseline_src:
        base = os.path.join(tempfile.mkdtemp(prefix="exithand-startup-base-"), "src")
        shutil.copytree(args.baseline_src, base, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([py, "-m", "compileall", "-q", base], check=True)
        base_env = dict(env, PYTHONPATH=base)
        cmds["baseline: exithand wait -e GONE"] = [*m, "wait", "-e", gone]
    for name, argv in (("waitpid (C, util-linux) -e GONE", ["waitpid", "-e", gone]),
                       ("pidwait (C, procps) -x NOMATCH", ["pidwait", "-x", "no-such-name-eh"]),
                       ("pidwait (C, procps) -F PIDFILE(GONE)", ["pidwait", "-F", pidfile])):
        if shutil.which(argv[0]):
            cmds[name] = argv
    wall: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    for name, argv in cmds.items():  # warm the page cache once
        run_once(argv, base_env if name.startswith("baseline") and base_env else env)
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, argv in cmds.items():
            w, c = run_once(argv, base_env if name.startswith("baseline") and base_env
                            else env)
            wall[name].append(w)
            cpu[name].append(c)
    load = max(load, os.getloadavg()[0])
    bare_w = statistics.median(wall["python -c pass"])
    bare_c = statistics.median(cpu["python -c pass"])
    print(f"interpreter: {py} (Python {sys.version.split()[0]}), {args.rounds} rounds, "
          f"load average up to {load:.2f} on {os.cpu_count()} CPUs")
    nprocs = sum(1 for n in os.listdir("/proc") if n.isdigit())
    print(f"{nprocs} processes on the machine (a pidwait pattern scans them all)")
    print(f"{'command':<38} {'wall ms':>8} {'vs bare':>8} {'CPU ms':>8} {'vs bare':>8}")
    for name in cmds:
        mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:<38} {mw * 1000:>8.1f} {mw / bare_w:>7.2f}x {mc * 1000:>8.1f} "
              f"{mc / bare_c:>7.2f}x")
    return 0


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, from wait4's rusage) of one run.  CPU time is
    what the command costs whatever else runs on the machine; wall time is what a user waits
    (under load, both are inflated alike for every command of the same round)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        t = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2)])
        _pid, _status, ru = os.wait4(pid, 0)
        return time.perf_counter() - t, ru.ru_utime + ru.ru_stime
    finally:
        os.close(devnull)


if __name__ == "__main__":
    raise SystemExit(main())
