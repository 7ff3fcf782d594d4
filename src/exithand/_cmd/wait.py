"""``exithand wait``: wait for processes, in FreeBSD pwait(1)'s words (its exact peers are the
``pwait``, ``waitpid`` and ``pidwait`` faces).

Every target is opened (identity pinned) *before* any waiting starts, then all are waited on
with one :class:`exithand.WaitSet` (one epoll).
"""

from __future__ import annotations

import time

import exithand

from . import _common
from ._common import UsageError, debug, emit, emit_json, warn

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Any, Optional

HELP = "wait until processes (not only your children) are dead"

DESCRIPTION = """\
Wait until the given processes are dead (a zombie counts as dead). TARGET is a PID, /proc/PID,
or PID:INODE to pin one exact process (the pidfs inode, as util-linux waitpid(1) accepts and
'exithand id' prints); a PID:INODE whose number now names another process counts as already
gone. Every target is opened before waiting starts, so PID reuse during the wait cannot confuse
it. Processes need not be your children.
"""

EPILOG = """\
examples:
  exithand wait 1234                      wait for 1234 to die
  exithand wait -v -t 10 1234 5678        report each exit, give up after 10 s (exit 124)
  exithand wait -t 1.5m /proc/1234        durations take ms, s, m, h, d; -t 0: no timeout
  exithand wait --any 1234 5678           return when the first one dies
  exithand wait -c 2 -p -t 1.5 1 2 3      wait for two of three; then print the living
  exithand wait --json 1234:81234         one JSON object per exit, pinned to inode 81234
  exithand wait -e 1234 && echo gone      no error if 1234 has already exited
  exithand wait --thread -v 1234/1240     wait for thread 1240 of process 1234 to exit

-v prints FreeBSD pwait's words:
  1234: exited with status 7.
  1234: killed by signal 9.
  1234: exited (status unknown: REASON).
  1240: thread of process 1234 exited.   (--thread: a thread has no exit status)
  timeout                                 (-v, when -t runs out)
A death by signal says whether a core was dumped: "(core dumped)" from the wait status, or
"(core dumped as user)" / "(... as root)" where the kernel recorded the dump (Linux 6.16+,
PIDFD_INFO_COREDUMP); --json has it as "coredump" (dumped, skipped, written_as, signal,
source). The status is known for your own children (read without reaping them), for zombies you may
ptrace, and on Linux 6.15+ for any process once its parent has reaped it.

Each target holds one file descriptor while waiting; with more targets than the soft open-file
limit (ulimit -n) allows, it is raised to the hard limit (ulimit -Hn); beyond that the wait
fails with exit 1 and a message naming the limit.

""" + _common.EXIT_CODES_HELP


def register(sub: Any) -> None:
    from ._argparse import HelpFormatter  # argparse only when the parser is needed

    p = sub.add_parser("wait", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("targets", nargs="+", metavar="TARGET", help="PID, /proc/PID or PID:INODE")
    p.add_argument("-t", "--timeout", type=_common.timeout_arg, metavar="DURATION",
                   help="give up after DURATION (seconds, or 500ms, 2s, 1.5m, 1h, 1d; 0: "
                        "never); exit 124")
    p.add_argument("-o", "--any", action="store_true",
                   help="return when any one target is dead (same as -c 1)")
    p.add_argument("-c", "--count", type=_common.positive_int_arg, metavar="N",
                   help="return when N targets are dead")
    p.add_argument("-e", "--exited", action="store_true",
                   help="a target that is already gone (or above pid_max) is not an error: "
                        "it counts as exited")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print each exit as it happens, and 'timeout' if -t runs out")
    p.add_argument("--json", action="store_true",
                   help="print each exit as one JSON object per line")
    p.add_argument("--thread", action="store_true",
                   help="the targets are thread ids (TID, PID/TID or /proc/PID/task/TID): "
                        "wait until those threads exit (Linux 6.9 PIDFD_THREAD)")
    p.add_argument("-p", "--print-remaining", action="store_true",
                   help="on the way out (timeout, -o, -c), print the targets still alive "
                        "(one per line)")
    p.set_defaults(func=run)


_FLAGS = {"-o": "any", "--any": "any", "-e": "exited", "--exited": "exited",
          "-v": "verbose", "--verbose": "verbose", "--json": "json",
          "-p": "print_remaining", "--print-remaining": "print_remaining",
          "--thread": "thread"}
_VALUED = {"-t": ("timeout", _common.timeout_arg), "--timeout": ("timeout", _common.timeout_arg),
           "-c": ("count", _common.positive_int_arg),
           "--count": ("count", _common.positive_int_arg)}


def fast_parse(argv: list[str]) -> Optional[Any]:
    """The arguments of a plain, valid command line without argparse (whose import and parser
    cost a quarter of the command's start), or None: then the argparse parser built by
    :func:`register` parses it, with its help and its error messages.  Only exact option
    spellings are taken here; anything else (abbreviations, bundles, ``--opt=value``, ``--``,
    ``-h``, ``--version``, a bad value, no TARGET) falls back to argparse."""
    from types import SimpleNamespace

    ns = SimpleNamespace(targets=[], timeout=None, any=False, count=None, exited=False,
                         verbose=False, json=False, print_remaining=False, thread=False,
                         func=run)
    it = iter(argv)
    for a in it:
        if a in _FLAGS:
            setattr(ns, _FLAGS[a], True)
        elif a in _VALUED:
            dest, conv = _VALUED[a]
            value = next(it, None)
            if value is None or value.startswith("-"):
                return None
            try:
                setattr(ns, dest, conv(value))
            except Exception:  # argparse.ArgumentTypeError: let argparse word it
                return None
        elif a.startswith("-"):
            return None
        else:
            ns.targets.append(a)
    return ns if ns.targets else None


def _report(args: argparse.Namespace, st: exithand.ExitStatus, inode: Optional[int],
            waited: float, tgid: Optional[int] = None) -> None:
    if args.json:
        d: dict[str, Any] = {"pid": st.pid, "inode": inode}
        d.update(st.as_dict())
        if getattr(args, "thread", False):
            d.update(thread=True, tgid=tgid)
        d["seconds"] = round(waited, 6)
        emit_json(d)
    elif args.verbose:
        if getattr(args, "thread", False) and tgid is not None:
            emit(f"{st.pid}: thread of process {tgid} exited.")
        else:
            emit(st.describe())


def run(args: argparse.Namespace) -> int:
    thread = getattr(args, "thread", False)
    owners: list[Optional[int]] = []
    if thread:
        from .threadargs import parse_thread_targets

        targets, owners = parse_thread_targets(args.targets)
    else:
        targets = _common.parse_targets(args.targets, args.exited)
    count: Optional[int] = 1 if args.any else args.count
    if args.any and args.count not in (None, 1):
        raise UsageError("--any and --count N disagree; give one of them")
    if count is not None and count > len(targets):
        raise UsageError(f"--count {count} is more than the {len(targets)} target(s) given")

    # Opening through the WaitSet raises the soft open-file limit to the hard one when many
    # targets need it (one fd each), and names the limit if even that is not enough.
    with exithand.WaitSet() as ws:
        if thread:
            pending = iter(owners)  # open_targets opens in order: one owner per target

            def open_thread(pid: int, _inode: Optional[int]) -> exithand.ExitHandle:
                h = exithand.open(pid, thread=True, tgid=next(pending))
                ws.add(h)
                return h
        opened, gone_targets = _common.open_targets(
            targets, open_thread if thread else (lambda pid, inode: ws.open(pid, inode=inode)),
            args.exited)
        try:
            gone = [(exithand.ExitStatus.unknown(t.pid, why if t.gone else
                                                 "not running when the wait started"),
                     t.inode) for t, why in gone_targets]
            seen: dict[tuple[int, Optional[int]], str] = {}
            for t, h in opened:
                key = (h.pid, h.identity.inode)
                if key in seen:
                    warn(f"{t.text}: same process as {seen[key]}; waiting for it once")
                    ws.remove(h)
                else:
                    seen[key] = t.text
            rc = _wait(args, ws, gone, count)
            if args.print_remaining:  # on every way out, as FreeBSD pwait -p
                _print_remaining(args, ws)
            return rc
        finally:
            for _t, h in opened:
                h.close()


def _print_remaining(args: argparse.Namespace, ws: exithand.WaitSet) -> None:
    for h in sorted(ws.handles(), key=lambda h: h.pid):
        if not h.is_alive():
            continue  # died after the wait ended: it is not "remaining" any more
        if args.json:
            emit_json({"pid": h.pid, "inode": h.identity.inode, "running": True})
        else:
            emit(str(h.pid))


def _wait(args: argparse.Namespace, ws: exithand.WaitSet,
          gone: list[tuple[exithand.ExitStatus, Optional[int]]],
          count: Optional[int]) -> int:
    total = len(ws) + len(gone)
    want = total if count is None else min(count, total)
    start = time.monotonic()
    done = 0
    for g, inode in gone:
        if done >= want:
            break
        _report(args, g, inode, 0.0)
        done += 1
    if done >= want:
        return _common.EXIT_OK
    debug(f"waiting for {len(ws)} process(es)")
    for h in ws.as_exited(args.timeout):
        st = h.status()
        assert st is not None
        _report(args, st, h.identity.inode, time.monotonic() - start, h.tgid)
        done += 1
        if done >= want:
            return _common.EXIT_OK
    if args.verbose and not args.json:
        emit("timeout")
    return _common.EXIT_TIMEOUT
