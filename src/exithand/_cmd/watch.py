"""``exithand watch``: a system-wide stream of process exits, like bcc's exitsnoop, no BPF."""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

import exithand

from . import _common
from ._argparse import HelpFormatter
from ._common import CommandError, UsageError, emit, emit_json, warn

HELP = "print every process exit on the system as it happens (like exitsnoop, without BPF)"

DESCRIPTION = """\
Print one line per process exit, system-wide, from the kernel's proc connector: time, pid,
parent pid, uid, command name, age, and the exit code or killing signal (and core dump).
The command name, uid and age are tracked while processes live (from fork/exec/comm/uid
events), so they are known even for processes reaped at once; a process that exec'ed and died
before its new name could be read shows '?' (JSON null).

Events the kernel drops when this program cannot keep up (receive buffer overflow) are never
lost silently: a gap line gives their count (of all process events, not only exits).

Needs root or CAP_NET_ADMIN.  From Linux 6.6 some kernels also let other users in the initial
user and pid namespace listen (never inside a container's pid namespace); others refuse the
bind to the proc connector group (EPERM).  Run 'exithand info' as that user to see which.
"""

EPILOG = """\
examples:
  exithand watch                          every exit, until Ctrl-C
  exithand watch --nonzero                only failures (exit code != 0, or killed)
  exithand watch -p 1234 -p 5678          only these pids
  exithand watch --uid 1000 --comm '^python'
  exithand watch --cgroup /sys/fs/cgroup/system.slice/nginx.service
  exithand watch --json -t 10             one JSON object per line for 10 seconds
  exithand watch --count 1 -p 1234        wait for 1234's exit and print how it ended
  exithand watch --json --metrics 9900    and serve exithand_process_exits_total on :9900
  exithand watch --journal > /dev/null    structured records in the journal (MESSAGE_ID=
                                          f67cdc8f1bd848a0800c6102cf6be62f for exits)

output:
  TIME         PID    PPID   UID COMM            AGE(s) EXIT
  12:00:01.234 4242   4100     0 make             0.512 code 2
  12:00:01.300 4250   4100  1000 python3          3.001 signal 11 (SIGSEGV), core dumped
  # gap: 37 process events lost (kernel buffer overflow)
JSON objects have "event": "exit" (pid, ppid, uid, comm, age, exit_code, signal, signal_name,
core_dumped, time) or "event": "gap" (lost: a count, or null if unknown).

exit status:
  0    done: Ctrl-C, -t elapsed (without --count), or --count exits seen
  1    error: the proc connector is not usable here; the metrics port is in use or the
       address cannot be bound; the textfile cannot be written; no journald socket
  2    usage error: bad option, pid, uid, regular expression or --metrics address
  124  timeout: -t elapsed before --count exits were seen
  130  interrupted (Ctrl-C) before --count exits were seen
"""


def _pid_arg(text: str) -> int:
    try:
        pid, inode = exithand.parse_target(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if inode is not None:
        raise argparse.ArgumentTypeError(f"invalid pid {text!r}: PID:INODE is not accepted here")
    return pid


_UID_MAX = 2**32 - 2  # (uid_t)-1 means "no uid" to the kernel


def _uid_arg(text: str) -> int:
    t = text.strip()
    if not _common.is_ascii_decimal(t) or int(t) > _UID_MAX:
        raise argparse.ArgumentTypeError(
            f"invalid uid {text!r}: must be a number from 0 to {_UID_MAX}")
    return int(t)


def _regex_arg(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {e}") from None


def register(sub: Any) -> None:
    p = sub.add_parser("watch", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--nonzero", action="store_true",
                   help="only failed exits: exit code != 0 or killed by a signal")
    p.add_argument("-p", "--pid", action="append", type=_pid_arg, metavar="PID", dest="pids",
                   help="only exits of this pid (repeatable)")
    p.add_argument("--uid", type=_uid_arg, help="only processes of this real uid")
    p.add_argument("--comm", type=_regex_arg, metavar="REGEX",
                   help="only command names matching REGEX (searched, Python syntax)")
    p.add_argument("--cgroup", metavar="PATH",
                   help="only processes in this cgroup v2 (or below it)")
    p.add_argument("-t", "--timeout", type=_common.timeout_arg, metavar="DURATION",
                   help="stop after DURATION (seconds, or 500ms, 2m, 1h, 1d; 0: never)")
    p.add_argument("-c", "--count", type=_common.positive_int_arg, metavar="N",
                   help="stop after N matching exits")
    p.add_argument("--metrics", metavar="[HOST:]PORT",
                   help="serve Prometheus metrics of what is seen (a port alone: 127.0.0.1; "
                   "needs exithand[metrics])")
    p.add_argument("--metrics-textfile", metavar="PATH",
                   help="write the metrics to PATH every second, atomically (node_exporter)")
    p.add_argument("--journal", action="store_true",
                   help="also send each exit to journald as a structured record")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no 'listening' notice on stderr and no header")
    p.set_defaults(func=run)


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}"


def _how(e: exithand.ProcessExit) -> str:
    if e.signal is not None:
        core = ", core dumped" if e.core_dumped else ""
        return f"signal {e.signal} ({e.as_dict()['signal_name']}){core}"
    return f"code {e.exit_code}"


def run(args: argparse.Namespace) -> int:
    if args.cgroup is not None and not args.cgroup.strip():
        raise UsageError("--cgroup needs a non-empty path")
    observers = _observers(args)
    try:
        w = exithand.watch(pids=args.pids, uid=args.uid, comm=args.comm, cgroup=args.cgroup,
                           nonzero=args.nonzero, timeout=args.timeout, count=args.count)
    except (exithand.BackendUnavailable, exithand.CgroupError) as e:
        if observers is not None:
            observers.close()
        warn(str(e))
        return _common.EXIT_ERROR
    seen = 0
    try:
        if not args.quiet:
            warn("watch: listening for process exits (Ctrl-C to stop)")
            if not args.json:
                emit(f"{'TIME':<12} {'PID':<7}{'PPID':<7}{'UID':>5} {'COMM':<16}{'AGE(s)':>8} "
                     "EXIT")
        for ev in w:
            if observers is not None:
                observers.observe(ev)
            if isinstance(ev, exithand.ExitGap):
                if args.json:
                    emit_json(ev.as_dict())
                else:
                    n = "an unknown number of" if ev.lost is None else str(ev.lost)
                    emit(f"# gap: {n} process events lost (kernel buffer overflow)")
                continue
            seen += 1
            if args.json:
                emit_json(ev.as_dict())
            else:
                uid = "?" if ev.uid is None else str(ev.uid)
                age = "?" if ev.age is None else f"{ev.age:.3f}"
                emit(f"{_clock(ev.time):<12} {ev.pid:<7}{ev.ppid:<7}{uid:>5} "
                     f"{(ev.comm or '?'):<16}{age:>8} {_how(ev)}")
    except KeyboardInterrupt:
        if args.count is not None and seen < args.count:
            return _common.EXIT_INTERRUPTED
        return _common.EXIT_OK
    finally:
        w.close()
        if observers is not None:
            observers.close()
    if args.count is not None and seen < args.count:
        return _common.EXIT_TIMEOUT
    return _common.EXIT_OK


def _observers(args: argparse.Namespace) -> Any:
    """--metrics/--metrics-textfile/--journal (exithand.obs), started: bad value 2, else 1."""
    if args.metrics is None and args.metrics_textfile is None and not args.journal:
        return None
    from exithand.obs.exporter import MetricsError
    from exithand.obs.journal import JournalError
    from exithand.obs.watchers import WatchObservers
    try:
        obs = WatchObservers(args.metrics, args.metrics_textfile, args.journal)
        obs.start()
    except MetricsError as e:
        if e.exit_code == 2:
            raise UsageError(str(e)) from None
        raise CommandError(str(e)) from None
    except JournalError as e:
        raise CommandError(str(e)) from None
    return obs
