"""``exithand kill``: signal, escalate, release memory, and wait until the processes are dead.

Built on the public library only (:func:`exithand.kill_and_wait`, :func:`exithand.kill_cgroup`).
Every target is opened (identity pinned) before anything is signalled; a missing target (without
``-e``) or a refused permission stops the command before the first signal.
"""

from __future__ import annotations

import argparse
import signal as _signal

import exithand

from . import _common
from ._argparse import HelpFormatter
from ._common import UsageError, emit, emit_json, warn

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

HELP = "signal processes (a tree, a cgroup), escalate, and wait until they are dead"

DESCRIPTION = """\
Send SIGNAL (default TERM) to each TARGET, send KILL to the survivors after --grace seconds, and
wait until every one is really dead (a zombie counts as dead). TARGET is a PID, or PID:INODE to
pin one exact process (the pidfs inode); a PID:INODE whose number now names another process is
already gone and is never signalled. All targets are opened before the first signal, and every
signal goes through a pidfd, so PID reuse cannot redirect it. A stopped target is continued
(SIGCONT) right after a catchable SIGNAL, or it could never act on it.

--mrelease calls process_mrelease(2) right after each KILL, so the victim's memory is freed on
this CPU at once instead of when the victim gets to run its exit (Linux 5.15; what Android's lmkd
and pkill --mrelease do).

--tree also kills every descendant: the tree is frozen with SIGSTOP before its children are read
(a stopped process cannot fork), then signalled, then continued. With a catchable signal,
children forked by handlers are re-scanned until the tree is empty; with -s KILL the kill is
exact. --cgroup PATH kills a cgroup v2 (and its sub-cgroups) with cgroup.kill and waits until
cgroup.events says "populated 0"; PATH is a directory of the cgroup v2 mount or a path relative
to it, as /proc/PID/cgroup prints it.
"""

EPILOG = """\
examples:
  exithand kill 1234                      TERM, then wait until 1234 is dead
  exithand kill -9 1234                   kill(1)'s forms: -9, -KILL, -SIGKILL, -s KILL
  exithand kill -l                        list signal names (-l 9: KILL; -l KILL: 9; -L: table)
  exithand kill --grace 2 -v 1234 5678    TERM, KILL whatever lives after 2 s, print each end
  exithand kill -s KILL --mrelease 1234   KILL and free its memory on this CPU right away
  exithand kill --tree -t 10 1234         1234 and all its descendants; give up after 10 s
  exithand kill --cgroup /sys/fs/cgroup/job.scope --json
  exithand kill -e 1234:81234             the process with pidfs inode 81234, if still there

-v prints one line per process:
  1234: killed by signal 15 (after 0.002 s, 12.1 MiB released).
  1234: killed by signal 9 (escalated, after 2.001 s, 512.0 MiB released,
        process_mrelease: released).
  1234: exited with status 0 (after 0.013 s, 3.2 MiB released).
  1234: already gone: REASON.
"MiB released" is RSS + swap read just before the first signal. --json prints one object per
process (fields: pid, inode, outcome, parent, exit_code, signal, signal_name, core_dumped, known,
source, reason, signals_sent, seconds, memory_bytes, mrelease, mrelease_error) and, with
--cgroup, a last object {"cgroup", "empty", "seconds", "processes", "remaining"}. outcome is one
of killed, escalated, exited, died, already_gone, timed_out.

On timeout (exit 124) the processes still alive are always listed: one line
"PID: still running." each (or JSON objects with outcome timed_out).

Without --grace or -t a target that ignores SIGNAL would be waited for in silence for ever:
after 3 seconds, and every 10 seconds after that, a note on stderr says which processes are
still alive and how to escalate (exithand kill -s KILL PID, or --grace).

""" + _common.EXIT_CODES_HELP.replace(
    "0    done: the processes waited for are dead",
    "0    done: every target (and descendant) is dead").replace(
    "(listed with -p)", "(always listed)").replace(
    "or access was denied", "access was denied,\n       or --cgroup PATH is not a usable cgroup v2")


def signal_arg(text: str) -> int:
    """argparse type for ``-s``: ``TERM``, ``SIGTERM``, ``term``, ``15``, ``RTMIN+2``."""
    t = text.strip().upper()
    if _common.is_ascii_decimal(t):
        num = int(t)
    else:
        if t.startswith("SIG"):
            t = t[3:]
        num = -1
        # kill(1)'s forms: RTMIN, RTMIN+N, RTMAX, RTMAX-N (RTMIN-N would name a signal the C
        # library reserves for itself, RTMAX+N none at all)
        for base, sign in (("RTMIN", "+"), ("RTMAX", "-")):
            if t.startswith(base):
                off = t[len(base):]
                b = int(getattr(_signal, "SIG" + base))
                if not off:
                    num = b
                elif off[0] == sign and _common.is_ascii_decimal(off[1:]):
                    num = b + int(off)
                    if not int(_signal.SIGRTMIN) <= num <= int(_signal.SIGRTMAX):
                        raise argparse.ArgumentTypeError(f"invalid signal {text!r}")
        if num < 0 and t in _LINUX_SIGNALS:  # also STKFLT and POLL, which Python may lack
            num = _LINUX_SIGNALS.index(t) + 1
        if num < 0:
            sig = getattr(_signal, "SIG" + t, None)
            if not isinstance(sig, _signal.Signals):
                raise argparse.ArgumentTypeError(f"unknown signal {text!r}")
            num = int(sig)
    if not 1 <= num <= _signal.SIGRTMAX:
        raise argparse.ArgumentTypeError(f"invalid signal {text!r}")
    return num


def preprocess_argv(argv: list[str]) -> list[str]:
    """kill(1)'s signal forms, ``-9``, ``-KILL``, ``-SIGKILL``, ``-RTMIN+2``, become ``-s N``
    (argparse would read ``-9`` as a negative TARGET and ``-KILL`` as bundled short options).
    Only words before ``--`` that name a signal are rewritten: ``-L``, ``-e``, ``-v`` stay
    options (no signal has those names)."""
    out: list[str] = []
    for i, a in enumerate(argv):
        if a == "--":
            return out + argv[i:]
        body = a[1:]
        if (a.startswith("-") and not a.startswith("--")
                and (_common.is_ascii_decimal(body) or (body[:1].isupper() and len(body) > 1))):
            try:
                signal_arg(body)
            except argparse.ArgumentTypeError:
                out.append(a)
                continue
            prev = out[-1] if out else ""
            if prev in ("-s", "--signal", "-t", "--timeout", "--grace", "--cgroup", "-l",
                        "--list"):
                out.append(a)  # the value of the option before it, not a signal form
                continue
            out += ["-s", body]
        else:
            out.append(a)
    return out


#: Linux's standard signals 1-31 as procps kill(1) -l names them (the generic numbering used by
#: x86, arm and most architectures).  A table rather than Python's ``signal.Signals``: before
#: 3.11 Python has no SIGSTKFLT (16), and it calls 29 IO where kill(1) says POLL.
_LINUX_SIGNALS = (
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
    "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
    "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "POLL", "PWR", "SYS",
)


def _signal_names() -> list[tuple[int, str]]:
    """(number, name) of the standard signals, named as procps kill(1) -l names them."""
    return list(enumerate(_LINUX_SIGNALS, start=1))


def _list_signals(which: Any) -> int:
    """``-l``: names like kill(1) (wrapped at 80 columns); ``-l N`` a name (N > 128: the
    signal of a shell's exit status 128+N); ``-l NAME`` its number."""
    if which is True:
        line = ""
        for _n, name in _signal_names():
            if line and len(line) + 1 + len(name) > 79:
                emit(line)
                line = ""
            line = f"{line} {name}" if line else name
        emit(line)
        return _common.EXIT_OK
    text = str(which)
    if _common.is_ascii_decimal(text):
        n = int(text)
        n = n - 128 if n > 128 else n
        for num, name in _signal_names():
            if num == n:
                emit(name)
                return _common.EXIT_OK
        raise UsageError(f"unknown signal {text!r}")
    try:
        emit(str(signal_arg(text)))
    except argparse.ArgumentTypeError as e:
        raise UsageError(str(e)) from None
    return _common.EXIT_OK


def _table() -> int:
    """``-L``: the table of kill(1) -L, seven signals a row."""
    cells = [f"{n:2d} {name:<7s}" for n, name in _signal_names()]
    for i in range(0, len(cells), 7):
        emit(" ".join(cells[i:i + 7]).rstrip())
    return _common.EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("kill", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("targets", nargs="*", metavar="TARGET", help="PID or PID:INODE")
    p.add_argument("-l", "--list", nargs="?", const=True, metavar="SIGNAL",
                   help="list signal names (with SIGNAL: its name or number) and exit")
    p.add_argument("-L", "--table", action="store_true",
                   help="list signal numbers and names as a table and exit")
    p.add_argument("-s", "--signal", type=signal_arg, metavar="SIGNAL",
                   help="signal to send first: name or number (default TERM; KILL with --cgroup)")
    p.add_argument("--grace", type=_common.duration_arg, metavar="DURATION",
                   help="send KILL to whatever is still alive DURATION after SIGNAL "
                        "(seconds, or with a unit: 500ms, 2s, 1m, 1h, 1d)")
    p.add_argument("--mrelease", action="store_true",
                   help="call process_mrelease right after each KILL (Linux 5.15)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tree", action="store_true",
                       help="also kill every descendant of each TARGET")
    group.add_argument("--cgroup", metavar="PATH",
                       help="kill every process of the cgroup v2 PATH (no TARGET); default "
                            "signal KILL via cgroup.kill")
    p.add_argument("-t", "--timeout", type=_common.timeout_arg, metavar="DURATION",
                   help="give up after DURATION (0: never); list the survivors and exit 124")
    p.add_argument("-e", "--exited", action="store_true",
                   help="a target that is already gone is not an error")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-v", "--verbose", action="store_true", help="print one line per process")
    out.add_argument("--json", action="store_true", help="print one JSON object per process")
    p.set_defaults(func=run)


def _report(args: argparse.Namespace, r: exithand.KillResult) -> None:
    if args.json:
        emit_json(r.as_dict())
    elif r.outcome == "timed_out":
        emit(f"{r.pid}: still running.")
    elif args.verbose:
        emit(r.describe())


def run(args: argparse.Namespace) -> int:
    # SIGTERM/SIGHUP (e.g. from timeout(1)) must not leave a half-frozen tree behind: they
    # become an exception, so kill_and_wait resumes what it stopped, as for Ctrl-C.
    with _common.terminate_as_exception():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.list is not None or args.table:
        if args.targets:
            raise UsageError("-l/-L take no TARGET")
        return _list_signals(args.list) if args.list is not None else _table()
    if args.cgroup is not None:
        return _run_cgroup(args)
    if not args.targets:
        raise UsageError("give at least one TARGET (or --cgroup PATH)")
    opened, gone_targets = _common.open_targets(
        _common.parse_targets(args.targets, args.exited),
        lambda pid, inode: exithand.open(pid, inode=inode), args.exited,
        "; nothing was signalled")
    handles = [h for _t, h in opened]
    gone = [exithand.KillResult(t.pid, t.inode, "already_gone", reason=why)
            for t, why in gone_targets]
    sig = _signal.SIGTERM if args.signal is None else args.signal
    note = None
    if args.grace is None and args.timeout is None and handles:
        note = _StillWaiting(handles, sig)
        note.start()
    try:
        results = exithand.kill_and_wait(
            handles, signal=sig, grace=args.grace, release_memory=args.mrelease,
            timeout=args.timeout, tree=args.tree) if handles else []
    except exithand.AccessDenied as e:
        warn(f"{e}; nothing was signalled")
        return _common.EXIT_ERROR
    except ValueError as e:
        raise UsageError(str(e)) from None
    finally:
        if note is not None:
            note.stop()
        for h in handles:
            h.close()
    rc = _common.EXIT_OK
    for r in gone + results:
        _report(args, r)
        if r.outcome == "timed_out":
            rc = _common.EXIT_TIMEOUT
    return rc


class _StillWaiting:
    """Says on stderr, after :data:`FIRST` seconds and every :data:`EVERY` seconds after,
    which targets are still alive and how to escalate: ``exithand kill`` without --grace or
    -t never gives up, and a target that ignores the signal would otherwise keep it waiting
    in silence.  On a terminal the note rewrites one line; elsewhere it prints full lines."""

    FIRST = 3.0
    EVERY = 10.0

    def __init__(self, handles: list[exithand.ExitHandle], sig: int) -> None:
        import threading

        self._handles, self._sig = handles, sig
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exithand-kill-note",
                                        daemon=True)
        self._tty = False
        self._shown = False

    def start(self) -> None:
        import sys

        try:
            self._tty = sys.stderr is not None and sys.stderr.isatty()
        except (OSError, ValueError):
            self._tty = False
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._shown and self._tty:
            self._write("\n")

    def _write(self, text: str) -> None:
        import sys

        try:
            if sys.stderr is not None:
                sys.stderr.write(text)
                sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def _run(self) -> None:
        import time

        start = time.monotonic()
        delay = self.FIRST
        while not self._stop.wait(delay):
            delay = self.EVERY
            try:
                alive = [h.pid for h in self._handles if not h.closed and h.is_alive()]
            except (exithand.Error, ValueError, OSError):
                return
            if not alive:
                continue
            name = _signal.Signals(self._sig).name if self._sig in set(_signal.Signals) \
                else f"signal {self._sig}"
            pids = " ".join(map(str, alive))
            how = ("it may be stuck in the kernel (state D); nothing stronger exists"
                   if self._sig == _signal.SIGKILL else
                   f"escalate with: exithand kill -s KILL {pids} (or use --grace)")
            text = (f"exithand: still waiting for {pids} ({time.monotonic() - start:.0f} s "
                    f"after {name}); {how}")
            self._shown = True
            self._write(f"\r{text}\x1b[K" if self._tty else text + "\n")


def _run_cgroup(args: argparse.Namespace) -> int:
    if args.targets:
        raise UsageError("--cgroup takes no TARGET (it kills every process in the cgroup)")
    if args.tree:
        raise UsageError("--tree and --cgroup exclude each other")
    sig = int(_signal.SIGKILL) if args.signal is None else args.signal
    try:
        res = exithand.kill_cgroup(args.cgroup, signal=sig, grace=args.grace,
                                   release_memory=args.mrelease, timeout=args.timeout)
    except exithand.AccessDenied as e:
        warn(f"{e}; nothing was signalled")
        return _common.EXIT_ERROR
    except exithand.CgroupError as e:
        warn(str(e))
        return _common.EXIT_ERROR
    except ValueError as e:
        raise UsageError(str(e)) from None
    for r in res.processes:
        _report(args, r)
    if args.json:
        emit_json(res.as_dict())
    if res.empty:
        if args.verbose:
            emit(f"{res.path}: empty after {res.seconds:.3f} s.")
        return _common.EXIT_OK
    known = {r.pid for r in res.processes if r.outcome == "timed_out"}
    for pid in res.remaining:
        if pid not in known and not args.json:
            emit(f"{pid}: still running.")
    if args.verbose:
        emit(f"{res.path}: still populated at the timeout.")
    return _common.EXIT_TIMEOUT

