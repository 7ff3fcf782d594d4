"""``exithand pwait`` (or a symlink named ``pwait``): FreeBSD pwait(1), exactly.

Behaviour taken from FreeBSD ``bin/pwait/pwait.c`` (the version with ``-p``), ``pwait.1``
and the cases of ``bin/pwait/tests/pwait_test.sh`` and ``pwait_reap.c`` (2026, the ``-r``
cases; ported in ``tests/test_face_pwait.py``):

- ``usage: pwait [-t timeout] [-oprv] pid ...``: BSD getopt (the first pid ends the options),
  a bad option or no pid at all exits 64 (EX_USAGE).
- ``-t TIMEOUT``: a decimal number with an optional unit ``s``, ``m`` or ``h``; anything else
  is ``pwait: timeout unit`` and a negative, unreadable or too large (> 100000000 s) value
  ``pwait: timeout value``, both exit 65 (EX_DATAERR).  ``-t 0`` sets no timer at all.  On
  timeout exit 124, with ``timeout`` on stdout under ``-v``.
- A bad process id (``/proc/`` is stripped first, the undocumented Solaris form) is warned
  about (``pwait: X: bad process id``) and ignored; so is pwait's own pid (``skipping my own
  pid``) and a process that is already gone (``pwait: N: No such process``), which counts as
  one that exited: with ``-o`` pwait then returns at once.  Duplicates count once.
- ``-r``: wait until each process is *reaped*, not only dead: a zombie non-child makes plain
  ``pwait`` return at once, ``pwait -r`` only once its parent has reaped it (FreeBSD's
  kevent NOTE_EXIT vs. the reap).  Here :func:`exithand.wait_reaped`: a pidfd's POLLHUP at the
  reap on Linux 6.9+ (pidfs), else asking :meth:`exithand.ExitHandle.is_reaped` on a backoff.
- ``-v`` prints ``N: exited with status C.`` / ``N: killed by signal S.`` (``N: terminated.``
  when the status cannot be known); ``-p`` prints the pids still running, ascending, on
  every way out (timeout, ``-o``).

Beyond the peer (nothing it prints changes): the status under ``-v`` comes from exithand's
best source (pwait on FreeBSD gets it from kqueue for any process; Linux tells it when the
process is your child, a zombie you may ptrace, or on 6.15+ after the reap), a zombie counts
as dead, and every pid is pinned with a pidfd before the wait.
"""

from __future__ import annotations

import os

import exithand

from .._common import emit, read_pid_max
from . import common as _face
from . import getopt as _getopt
from .getopt import GetoptFailure, Opt

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Optional

HELP = "FreeBSD pwait(1), exactly: -t with s/m/h units, -o, -p, -r, -v; timeout exits 124"

EX_USAGE = 64
EX_DATAERR = 65
EXIT_TIMEOUT = 124
MAX_TIMEOUT = 100000000  # pwait.c: larger is "timeout value"
USAGE = "usage: {prog} [-t timeout] [-oprv] pid ..."


OPTIONS = [
    Opt("o", None, "any", None, "exit when any of the given processes has terminated"),
    Opt("p", None, "print_remaining", None,
        "on exit, print the pids of the processes that have not terminated"),
    Opt("r", None, "reap", None,
        "wait until each process has been reaped by its parent, not only terminated"),
    Opt("t", None, "timeout", "TIMEOUT",
        "give up after TIMEOUT (seconds; s, m, h units) and exit 124"),
    Opt("v", None, "verbose", None, "print the exit status (or 'timeout') of each process"),
]


def build_parser(prog: str = "pwait") -> argparse.ArgumentParser:
    """The options as an argparse parser (help, man pages, completion; not used to parse)."""
    return _getopt.build_parser(prog, "Wait for processes to terminate (FreeBSD pwait(1) "
                                "compatible).", OPTIONS, "pid")


def _usage(prog: str) -> _face.FaceExit:
    """The usage line on stderr; raise the result to exit 64."""
    _face.warnx_raw(USAGE.format(prog=prog))
    return _face.FaceExit(EX_USAGE)


def main(argv: list[str], prog: str = "pwait") -> int:
    return _face.run(prog, lambda: _main(argv, prog))


def _strtod(text: str) -> tuple[Optional[float], str]:
    """strtod(3): the longest decimal number at the start (after blanks), and the rest."""
    t = text.lstrip(" \t\n\r\f\v")
    best: Optional[float] = None
    rest = text
    for end in range(len(t), 0, -1):
        head = t[:end]
        if head[-1:].isspace() or "_" in head:  # float() takes both; strtod takes neither
            continue
        try:
            best = float(head)
        except ValueError:
            continue
        rest = t[end:]
        break
    return best, rest


def parse_timeout(prog: str, text: str) -> Optional[float]:
    """pwait.c's -t: ``N``, ``Ns``, ``Nm``, ``Nh``; errors exit 65.  None: no timer (0)."""
    value, rest = _strtod(text)
    if value is None or value != value or value < 0:
        raise _face.errx(prog, EX_DATAERR, "timeout value")
    unit, rest = rest[:1], rest[1:]
    if unit == "h":
        value *= 3600
    elif unit == "m":
        value *= 60
    elif unit not in ("", "s"):
        raise _face.errx(prog, EX_DATAERR, "timeout unit")
    if rest:
        raise _face.errx(prog, EX_DATAERR, "timeout unit")
    if value > MAX_TIMEOUT:
        raise _face.errx(prog, EX_DATAERR, "timeout value")
    return value if value > 0 else None  # setitimer() with 0 arms no timer


def _pid(text: str, pid_max: int) -> Optional[int]:
    """strtol(3) of the whole string, 0 <= pid <= pid_max, or None ("bad process id")."""
    t = text.lstrip(" \t\n\r\f\v")
    digits = t[1:] if t[:1] in "+-" else t
    if not digits or not all("0" <= c <= "9" for c in digits):
        return None
    pid = int(t)
    return pid if 0 <= pid <= pid_max else None


def _main(argv: list[str], prog: str) -> int:
    try:
        opts, operands = _getopt.parse(OPTIONS, argv, permute=False)
    except GetoptFailure as e:
        # BSD getopt's words: "illegal option", "option requires an argument"
        msg = str(e)
        if msg.startswith("unrecognized option"):  # "--x": BSD getopt sees option '-'
            msg = "illegal option -- -"
        _face.warnx(prog, msg.replace("invalid option", "illegal option").replace("'", ""))
        raise _usage(prog) from None
    timeout = parse_timeout(prog, str(opts["timeout"])) if "timeout" in opts else None
    if not operands:
        raise _usage(prog)
    any_, verbose = bool(opts.get("any")), bool(opts.get("verbose"))
    pid_max, me = read_pid_max(), os.getpid()
    with exithand.WaitSet(close_handles=True) as ws:
        left: dict[int, exithand.ExitHandle] = {}
        ndone = 0
        for arg in operands:
            # the undocumented Solaris form: pwait strips "/proc/" (and nothing after the pid)
            s = arg[len("/proc/"):] if arg.startswith("/proc/") else arg
            pid = _pid(s, pid_max)
            if pid is None:
                _face.warnx(prog, f"{s}: bad process id")
                continue
            if pid == me:
                _face.warnx(prog, f"{s}: skipping my own pid")
                continue
            if pid in left:
                continue
            h, code = _face.pin(ws, pid)
            if h is None:
                _face.warnx(prog, f"{pid}: {_face.strerror(code)}")
                ndone += 1
                continue
            left[pid] = h
        rc = 0
        if left and not (any_ and ndone) and opts.get("reap"):
            rc = _wait_reaped(left, timeout, any_, verbose)
        elif left and not (any_ and ndone):
            for h in _face.wait(ws, timeout):
                st = h.status()
                if verbose:
                    emit(_face.exit_words(st, h.pid))
                del left[h.pid]
                if any_:
                    break
            else:
                if left:  # the timer went off
                    if verbose:
                        emit("timeout")
                    rc = EXIT_TIMEOUT
        if opts.get("print_remaining"):
            for pid in sorted(left):
                emit(str(pid))
        return rc


def _wait_reaped(left: dict[int, exithand.ExitHandle], timeout: Optional[float], any_: bool,
                 verbose: bool) -> int:
    """``-r``: report each process once it is reaped (removing it from ``left``); 124 when the
    timer goes off first.  The status is read after the reap (PIDFD_INFO_EXIT on 6.15+)."""
    import time

    from .._common import debug

    debug(f"waiting for {len(left)} process(es)")
    deadline = None if timeout is None else time.monotonic() + timeout
    while left:
        rest = None if deadline is None else max(0.0, deadline - time.monotonic())
        reaped = exithand.wait_reaped(list(left.values()), rest, count=1)
        if not reaped:
            if verbose:
                emit("timeout")
            return EXIT_TIMEOUT
        for h in reaped:
            if verbose:
                emit(_face.exit_words(h.status(), h.pid))
            del left[h.pid]
        if any_:
            return 0
    return 0
