"""``exithand waitpid`` (or a symlink named ``waitpid``): util-linux waitpid(1), exactly.

Behaviour taken from util-linux ``misc-utils/waitpid.c``, ``waitpid.1.adoc`` and the cases of
``tests/ts/waitpid/{waitpid,pidfd-ino}`` (ported in ``tests/test_face_waitpid.py``):

- ``PID`` or ``PID:INODE`` (the pidfs inode, util-linux's ``getino`` prints it; exithand's
  ``exithand id`` too); a bad one: ``failed to parse PID argument 'X': Invalid argument``, 1.
- ``-v`` prints ``PID N finished`` per exit and ``Timeout expired`` on timeout (stdout).
- ``-t SECONDS`` (a decimal number; 0: no timeout); on timeout exit **3**.
- ``-e``: a process already gone (``ESRCH``, also a pid above pid_max) is skipped
  (``PID N has exited, skipping`` with ``-v``); without it, ``could not open PID N: No such
  process`` and exit 1.  ``-c N``: return after N exits; ``-c`` and ``-e`` exclude each other.
- Every error, usage errors included, exits 1; ``-h`` and ``-V`` print to stdout and exit 0.

Beyond the peer (nothing it prints changes): the wait is on exithand handles, so a zombie
counts as dead and ``PID:INODE`` is checked without a window.
"""

from __future__ import annotations

import errno
import sys

import exithand

from .._common import emit
from . import common as _face
from . import getopt as _getopt
from .getopt import GetoptFailure, Opt

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    from typing import Optional

HELP = "util-linux waitpid(1), exactly: PID[:INODE]..., -v, -t, -e, -c; timeout exits 3"

EXIT_TIMEOUT = 3  # waitpid.c: EXIT_TIMEOUT_EXPIRED

USAGE = """
Usage:
 {prog} [options] PID[:inode]...

Options:
 -v, --verbose           be more verbose
 -t, --timeout=<timeout> wait at most timeout seconds
 -e, --exited            allow exited PIDs
 -c, --count=<count>     number of process exits to wait for

 -h, --help              display this help
 -V, --version           display version

For more details see waitpid(1); this is exithand's waitpid face (exithand waitpid).
"""


OPTIONS = [
    Opt("v", "verbose", "verbose", None, "be more verbose"),
    Opt("t", "timeout", "timeout", "TIMEOUT", "wait at most TIMEOUT seconds"),
    Opt("e", "exited", "exited", None, "allow exited PIDs"),
    Opt("c", "count", "count", "COUNT", "number of process exits to wait for"),
    Opt("V", "version", "version", None, "display version"),
    Opt("h", "help", "help", None, "display this help"),
]


def build_parser(prog: str = "waitpid") -> argparse.ArgumentParser:
    """The options as an argparse parser (help, man pages, completion; not used to parse)."""
    return _getopt.build_parser(prog, "Wait for arbitrary processes to exit (util-linux "
                                "waitpid(1) compatible).", OPTIONS, "PID[:inode]")


def main(argv: list[str], prog: str = "waitpid") -> int:
    return _face.run(prog, lambda: _main(argv, prog))


def _c_long(text: str) -> Optional[int]:
    """strtoimax(3) on the whole string (leading blanks and a sign allowed), or None."""
    t = text.lstrip(" \t\n\r\f\v")
    digits = t[1:] if t[:1] in "+-" else t
    if not digits or not all("0" <= c <= "9" for c in digits):
        return None
    return int(t)


def _timeout(prog: str, text: str) -> Optional[float]:
    try:
        v = float(text)  # strtod: a decimal number, as strtod_or_err() takes it
    except ValueError:
        raise _face.errx(prog, 1, f"invalid timeout: '{text}'") from None
    if v != v or v < 0 or v == float("inf"):
        raise _face.errx(prog, 1, f"invalid timeout: '{text}'")
    return v if v > 0 else None  # 0: no timer at all (open_timeoutfd)


def _count(prog: str, text: str) -> int:
    v = _c_long(text)
    if v is None:
        raise _face.errx(prog, 1, f"invalid count: '{text}'")
    if not 1 <= v <= 2**63 - 1:
        raise _face.errx(prog, 1, f"invalid count: '{text}': {_face.strerror(errno.ERANGE)}")
    return v


def _target(prog: str, text: str) -> tuple[int, Optional[int]]:
    """ul_parse_pid_str(): ``PID`` or ``PID:INODE``; 1 <= PID <= INT_MAX, INODE >= 1."""
    pid_s, sep, ino_s = text.partition(":")
    pid = _c_long(pid_s)
    code = 0
    if pid is None:
        code = errno.EINVAL
    elif not 1 <= pid <= 2**31 - 1:
        code = errno.ERANGE
    inode: Optional[int] = None
    if not code and sep:
        ino = _c_long(ino_s)
        if ino is None or ino < 0:
            code = errno.EINVAL if ino is None else errno.ERANGE
        elif ino == 0:
            code = errno.ERANGE
        else:
            inode = ino
    if code:
        raise _face.errx(prog, 1, f"failed to parse PID argument '{text}': "
                                  f"{_face.strerror(code)}")
    assert pid is not None
    return pid, inode


def _main(argv: list[str], prog: str) -> int:
    try:
        opts, operands = _getopt.parse(OPTIONS, argv, permute=True)
    except GetoptFailure as e:
        _face.warnx(prog, str(e))
        sys.stderr.write(f"Try '{prog} --help' for more information.\n")
        return 1
    if opts.get("help"):
        emit(USAGE.format(prog=prog).rstrip("\n"))
        return 0
    if opts.get("version"):
        emit(f"{prog} from exithand {exithand.__version__} (util-linux waitpid compatible)")
        return 0
    if opts.get("count") is not None and opts.get("exited"):
        raise _face.errx(prog, 1, "mutually exclusive arguments: --exited --count")
    verbose = bool(opts.get("verbose"))
    timeout = _timeout(prog, str(opts["timeout"])) if "timeout" in opts else None
    count = _count(prog, str(opts["count"])) if "count" in opts else None
    if not operands:
        raise _face.errx(prog, 1, "no PIDs specified")
    if count is not None and count > len(operands):
        raise _face.errx(prog, 1, f"can't wait for {count} of {len(operands)} PIDs")
    targets = [_target(prog, t) for t in operands]

    with exithand.WaitSet(close_handles=True) as ws:
        pids: dict[exithand.ExitHandle, int] = {}
        for pid, inode in targets:
            h, code = _face.pin(ws, pid, inode=inode)
            if h is None:
                if inode is not None and verbose and code == errno.ESRCH:
                    _face.warnx(prog, f"pidfd inode {inode} not found for PID {pid}")
                if exited_ok(code, bool(opts.get("exited"))):
                    if verbose:
                        _face.warnx(prog, f"PID {pid} has exited, skipping")
                    continue
                raise _face.errx(prog, 1, f"could not open PID {pid}: {_face.strerror(code)}")
            pids[h] = pid
        active = len(pids) if count is None else min(len(pids), count)
        if active == 0:
            return 0
        for h in _face.wait(ws, timeout):
            if verbose:
                emit(f"PID {pids[h]} finished")
            active -= 1
            if active == 0:
                return 0
        if verbose:
            emit("Timeout expired")
        return EXIT_TIMEOUT


def exited_ok(code: int, exited: bool) -> bool:
    """waitpid -e skips a target only when pidfd_open said ESRCH (gone)."""
    return exited and code == errno.ESRCH
