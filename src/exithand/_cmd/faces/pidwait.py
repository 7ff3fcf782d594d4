"""``exithand pidwait`` (or a symlink named ``pidwait``): procps pidwait(1), exactly.

Behaviour taken from procps-ng ``src/pgrep.c`` (its pidwait mode), ``man/pidwait.1`` /
``pgrep.1`` and ``testsuite/pwait.test`` + ``pgrep.test`` (ported in
``tests/test_face_pidwait.py``, which also runs every case against ``/usr/bin/pidwait`` when
procps' is installed, to prove the expectations):

- the pgrep selection: an extended regular expression searched in the process name (15
  characters; ``-f``: the command line), ``-x`` whole name, ``-i`` any case; ``-u/-U`` euid /
  uid, ``-G`` gid, ``-g`` process group and ``-s`` session (``0``: our own), ``-P`` parent,
  ``-t`` terminal, ``-r`` states, ``--cgroup`` cgroup v2 path, ``--ns PID`` + ``--nslist``,
  ``-O`` older than seconds, ``-n`` / ``-o`` newest / oldest, ``--inverse``, ``-A`` not our
  ancestors, ``-F FILE`` (``-L``: it must be locked), ``-p PID,...`` (procps 4.0.3+); pidwait
  itself never matches.
- ``-c`` prints the number of matches first, ``-e`` ``waiting for NAME (pid N)`` per match,
  both on stdout; then it waits until every match is dead.
- exit 0 when it waited for at least one process, 1 when nothing matched (or everything
  matched was gone before the wait), 2 for usage errors (message, sometimes the usage), 1 for
  an unusable pid file.

Beyond the peer (nothing it prints changes): every match is pinned with a pidfd checked
against the start time the scan read, so a process that died and whose number was reused
between the scan and the wait is never waited for; deaths are seen the moment they happen
(one epoll); a zombie counts as dead.
"""

from __future__ import annotations

import errno
import os
import sys

import exithand

from .._common import emit
from . import common as _face
from . import getopt as _getopt
from . import procscan as _procscan
from .getopt import GetoptFailure, Opt

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    import re
    from typing import Callable, Optional

HELP = "procps pidwait(1), exactly: wait for processes chosen by name and pgrep's selection"

EXIT_USAGE = 2

USAGE = """
Usage:
 {prog} [options] <pattern>

Options:
 -e, --echo                display PIDs before waiting
 -c, --count               count of matching processes
 -f, --full                use full process name to match
 -g, --pgroup <PGID,...>   match listed process group IDs
 -G, --group <GID,...>     match real group IDs
 -i, --ignore-case         match case insensitively
 -n, --newest              select most recently started
 -o, --oldest              select least recently started
 -O, --older <seconds>     select where older than seconds
 -P, --parent <PPID,...>   match only child processes of the given parent
 -p, --pid <PID,...>       match only the listed process IDs
 -s, --session <SID,...>   match session IDs
 -t, --terminal <tty,...>  match by controlling terminal
 -u, --euid <ID,...>       match by effective IDs
 -U, --uid <ID,...>        match by real IDs
 -x, --exact               match exactly with the command name
 -F, --pidfile <file>      read PIDs from file
 -L, --logpidfile          fail if PID file is not locked
 -r, --runstates <state>   match runstates [D,S,Z,...]
 -A, --ignore-ancestors    exclude our ancestors from results
 --cgroup <grp,...>        match by cgroup v2 names
 --ns <PID>                match the processes that belong to the same
                           namespace as <pid>
 --nslist <ns,...>         list which namespaces will be considered for
                           the --ns option.
                           Available namespaces: ipc, mnt, net, pid, user, uts

 -h, --help     display this help and exit
 -V, --version  output version information and exit

For more details see pgrep(1); this is exithand's pidwait face (exithand pidwait).
"""

# options that are selection criteria (a pattern is then not required), as in pgrep.c
_CRITERIA = ("pidfile", "group", "pid", "parent", "uid", "pgroup", "newest", "oldest",
             "older", "session", "terminal", "euid", "runstates", "cgroup")


OPTIONS = [
    Opt("e", "echo", "echo", None, "display PIDs before waiting"),
    Opt("c", "count", "count", None, "count of matching processes"),
    Opt("f", "full", "full", None, "use full process name to match"),
    Opt("g", "pgroup", "pgroup", "PGID,...", "match listed process group IDs"),
    Opt("G", "group", "group", "GID,...", "match real group IDs"),
    Opt("i", "ignore-case", "ignore_case", None, "match case insensitively"),
    Opt("n", "newest", "newest", None, "select most recently started"),
    Opt("o", "oldest", "oldest", None, "select least recently started"),
    Opt("O", "older", "older", "SECONDS", "select where older than seconds"),
    Opt("P", "parent", "parent", "PPID,...", "match only children of the given parent"),
    Opt("p", "pid", "pid", "PID,...", "match only the listed process IDs"),
    Opt("s", "session", "session", "SID,...", "match session IDs"),
    Opt("t", "terminal", "terminal", "TTY,...", "match by controlling terminal"),
    Opt("u", "euid", "euid", "ID,...", "match by effective IDs"),
    Opt("U", "uid", "uid", "ID,...", "match by real IDs"),
    Opt("x", "exact", "exact", None, "match exactly with the command name"),
    Opt("F", "pidfile", "pidfile", "FILE", "read PIDs from file ('-': standard input)"),
    Opt("L", "logpidfile", "logpidfile", None, "fail if PID file is not locked"),
    Opt("r", "runstates", "runstates", "STATE", "match runstates [D,S,Z,...]"),
    Opt("A", "ignore-ancestors", "ignore_ancestors", None, "exclude our ancestors"),
    Opt(None, "inverse", "inverse", None, "negate the matching"),
    Opt(None, "cgroup", "cgroup", "GRP,...", "match by cgroup v2 names"),
    Opt(None, "ns", "ns", "PID", "match the processes in the same namespaces as PID"),
    Opt(None, "nslist", "nslist", "NS,...",
        "namespaces --ns considers: ipc, mnt, net, pid, user, uts"),
    Opt("h", "help", "help", None, "display this help and exit"),
    Opt("V", "version", "version", None, "output version information and exit"),
]


def build_parser(prog: str = "pidwait") -> argparse.ArgumentParser:
    """The options as an argparse parser (help, man pages, completion; not used to parse)."""
    return _getopt.build_parser(prog, "Wait for the processes a pgrep(1) selection finds "
                                "(procps pidwait(1) compatible).", OPTIONS, "PATTERN")


def main(argv: list[str], prog: str = "pidwait") -> int:
    return _face.run(prog, lambda: _main(argv, prog))


class _Usage(Exception):
    """Bad input: exit 2 (after printing what pgrep.c prints)."""


def _try_help(prog: str, msg: str, code: int) -> _face.FaceExit:
    return _face.errx(prog, code, f"{msg}\nTry `{prog} --help' for more information.")


def _usage_error(prog: str) -> _face.FaceExit:
    _face.warnx_raw(USAGE.format(prog=prog).rstrip("\n"))
    return _face.FaceExit(EXIT_USAGE)


def _strtol(text: str) -> Optional[int]:
    t = text.lstrip(" \t\n\r\f\v")
    digits = t[1:] if t[:1] in "+-" else t
    if not digits or not all("0" <= c <= "9" for c in digits):
        return None
    return int(t)


def _atoi(text: str) -> int:
    """atoi(3): the leading decimal number (after blanks, with a sign), 0 if none."""
    t = text.lstrip(" \t\n\r\f\v")
    sign = t[:1] if t[:1] in "+-" else ""
    digits = ""
    for c in t[len(sign):]:
        if not "0" <= c <= "9":
            break
        digits += c
    return int(sign + digits) if digits else 0


def _split(prog: str, text: str, conv: Callable[[str], Optional[int]], what: str) -> set[int]:
    out = set()
    for item in text.split(","):
        v = conv(item)
        if v is None:
            raise _face.errx(prog, EXIT_USAGE, f"{what}: {item}")
        out.add(v)
    return out


def _conv_uid(item: str) -> Optional[int]:
    v = _strtol(item)
    if v is not None:
        return v
    import pwd

    try:
        return pwd.getpwnam(item).pw_uid
    except KeyError:
        return None


def _conv_gid(item: str) -> Optional[int]:
    v = _strtol(item)
    if v is not None:
        return v
    import grp

    try:
        return grp.getgrnam(item).gr_gid
    except KeyError:
        return None


_POSIX_CLASSES = {
    "[:alpha:]": "a-zA-Z", "[:digit:]": "0-9", "[:alnum:]": "a-zA-Z0-9",
    "[:upper:]": "A-Z", "[:lower:]": "a-z", "[:space:]": r" \t\n\r\f\v",
    "[:blank:]": r" \t", "[:xdigit:]": "0-9A-Fa-f", "[:punct:]": r"!-/:-@\[-`{-~",
    "[:cntrl:]": r"\x00-\x1f\x7f", "[:print:]": r"\x20-\x7e", "[:graph:]": r"\x21-\x7e",
}


def compile_pattern(prog: str, pattern: str, exact: bool, icase: bool) -> re.Pattern[str]:
    """regcomp(REG_EXTENDED | REG_NOSUB [| REG_ICASE]) of pgrep.c, in Python's re: the POSIX
    classes are translated, ``-x`` wraps it in ``^(...)$``; errors are glibc's words."""
    import re  # only a pattern needs it (start-up time of -F/-p runs)

    py = pattern
    for k, v in _POSIX_CLASSES.items():
        py = py.replace(k, v)
    if exact:
        py = f"^({py})$"
    try:
        return re.compile(py, re.IGNORECASE if icase else 0)
    except re.error as e:
        msg = str(e.msg)
        if "missing )" in msg or "unbalanced parenthesis" in msg:
            words = r"Unmatched ( or \(" if "missing" in msg else r"Unmatched ) or \)"
        elif "unterminated character set" in msg:
            words = "Unmatched [, [^, [:, [., or [="
        elif "nothing to repeat" in msg or "multiple repeat" in msg:
            words = "Invalid preceding regular expression"
        else:
            words = msg
        raise _face.errx(prog, EXIT_USAGE, f"regex error: {words}") from None


def read_pidfile(path: str, lock: bool) -> Optional[int]:
    """procps read_pidfile(): the first number of a non-empty regular file; with ``lock`` the
    file must be locked by someone (flock or fcntl).  ``-`` reads standard input instead
    (an addition: procps 4.0.2 refuses it)."""
    if path == "-":
        try:
            data = sys.stdin.buffer.read(1023) if sys.stdin is not None else b""
        except (OSError, ValueError):
            return None
    else:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            import stat

            if not stat.S_ISREG(st.st_mode) or st.st_size < 1:
                return None
            if lock and not _is_locked(fd):
                return None
            data = os.read(fd, 1023)
        except OSError:
            return None
        finally:
            os.close(fd)
    # strtoul(3) of the first word: blanks, an optional '+', digits, then a blank or the end
    t = data.lstrip(b" \t\n\r\f\v")
    if t[:1] == b"+":
        t = t[1:]
    n = 0
    while n < len(t) and 48 <= t[n] <= 57:
        n += 1
    if n == 0 or (n < len(t) and t[n:n + 1] not in (b" ", b"\t", b"\n", b"\r", b"\f", b"\v")):
        return None
    pid = int(t[:n])
    return pid if pid >= 1 else None


def _is_locked(fd: int) -> bool:
    import fcntl
    import struct

    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno == errno.EWOULDBLOCK:
            return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
    # struct flock: l_type, l_whence (short), l_start, l_len (off_t), l_pid (int)
    fmt = "hhqqi4x"
    req = struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        got = fcntl.fcntl(fd, fcntl.F_GETLK, req)
    except OSError:
        return False
    return bool(struct.unpack(fmt, got)[0] != fcntl.F_UNLCK)


def _main(argv: list[str], prog: str) -> int:
    try:
        opts, operands = _getopt.parse(OPTIONS, argv, permute=True)
    except GetoptFailure as e:
        _face.warnx(prog, str(e))
        raise _usage_error(prog) from None
    if opts.get("help"):
        emit(USAGE.format(prog=prog).rstrip("\n"))
        return 0
    if opts.get("version"):
        emit(f"{prog} from exithand {exithand.__version__} (procps-ng pidwait compatible)")
        return 0
    if sum(bool(opts.get(k)) for k in ("newest", "oldest", "inverse")) > 1:
        raise _usage_error(prog)
    s = {k: str(v) for k, v in opts.items() if isinstance(v, str)}
    criteria = sum(1 for k in _CRITERIA if k in opts)
    ns_pid: Optional[int] = None
    runstates = s.get("runstates")
    if "ns" in s:
        ns_pid = _atoi(s["ns"])
        if ns_pid == 0:  # pgrep.c falls through into -r here: runstates "0" match nothing
            runstates, ns_pid = "0", None
            criteria += 1
    nslist: tuple[str, ...] = _procscan.NAMESPACES
    if "nslist" in s:
        names = s["nslist"].split(",")
        if any(n not in _procscan.NAMESPACES for n in names):
            raise _face.FaceExit(EXIT_USAGE)  # pgrep.c: usage('?'), silently here (4.0.2)
        nslist = tuple(n for n in _procscan.NAMESPACES if n in names)
    num = _strtol
    sel_ppid = _split(prog, s["parent"], num, "not a number") if "parent" in s else None
    sel_pid = _split(prog, s["pid"], num, "not a number") if "pid" in s else None
    sel_pgrp = (_split(prog, s["pgroup"], lambda t: _own(num(t), os.getpgrp()),
                       "not a number") if "pgroup" in s else None)
    sel_sid = (_split(prog, s["session"], lambda t: _own(num(t), os.getsid(0)),
                      "not a number") if "session" in s else None)
    sel_euid = _split(prog, s["euid"], _conv_uid, "invalid user name") if "euid" in s else None
    sel_ruid = _split(prog, s["uid"], _conv_uid, "invalid user name") if "uid" in s else None
    sel_rgid = _split(prog, s["group"], _conv_gid, "invalid group name") if "group" in s else None
    sel_tty = set(s["terminal"].split(",")) if "terminal" in s else None
    sel_cgroup = set(s["cgroup"].split(",")) if "cgroup" in s else None
    older = _atoi(s["older"]) if "older" in s else None
    if opts.get("logpidfile") and "pidfile" not in s:
        raise _try_help(prog, "-L without -F makes no sense", EXIT_USAGE)
    if "pidfile" in s:
        if sel_pid is not None:
            raise _try_help(prog, "Cannot use pidfile and pid option together", 1)
        got = read_pidfile(s["pidfile"], bool(opts.get("logpidfile")))
        if got is None:
            raise _try_help(prog, "pidfile not valid", 1)
        sel_pid = {got}
    if len(operands) > 1:
        raise _try_help(prog, "only one pattern can be provided", EXIT_USAGE)
    pattern = operands[0] if operands else None
    if pattern is None and criteria == 0:
        raise _try_help(prog, "no matching criteria specified", EXIT_USAGE)
    regex = (compile_pattern(prog, pattern, bool(opts.get("exact")),
                             bool(opts.get("ignore_case"))) if pattern is not None else None)

    me = os.getpid()
    skip = _procscan.ancestors(me) if opts.get("ignore_ancestors") else set()
    ref_ns = None
    if ns_pid is not None:
        ref_ns = _procscan.namespaces(ns_pid, nslist)
        if ref_ns is None:
            raise _face.errx(prog, 3, "Error reading reference namespace information\n")
    boot = _procscan.uptime() if older is not None else 0.0
    full, negate = bool(opts.get("full")), bool(opts.get("inverse"))

    matches: list[_procscan.Proc] = []
    # a pid list (-p, -F) without --inverse can only match those pids: read just them
    for p in _procscan.scan(sel_pid if sel_pid is not None and not negate else None):
        if p.pid == me or p.pid in skip:
            continue
        match = _selected(p, sel_ppid, sel_pid, sel_pgrp, sel_sid, sel_euid, sel_ruid,
                          sel_rgid, sel_tty, sel_cgroup, runstates, ref_ns, nslist, older, boot)
        if match and regex is not None:
            text = _procscan.cmdline(p.pid, p.comm) if full else p.comm
            match = text is not None and regex.search(text) is not None
        if match != negate:
            matches.append(p)
    if opts.get("newest") and matches:
        matches = [max(matches, key=lambda p: (p.start_time, p.pid))]
    elif opts.get("oldest") and matches:
        matches = [min(matches, key=lambda p: (p.start_time, p.pid))]
    if not matches and not full and pattern is not None and _is_long_match(pattern):
        _face.warnx(prog, "pattern that searches for process name longer than 15 characters "
                          f"will result in zero matches\nTry `{prog} -f' option to match "
                          "against the complete command line.")

    if opts.get("count"):
        emit(str(len(matches)))
    with exithand.WaitSet(close_handles=True) as ws:
        for p in matches:
            if opts.get("echo"):
                emit(f"waiting for {p.comm} (pid {p.pid})")
            # pinned to the start time the scan saw: a number reused since is not this match
            h, code = _face.pin(ws, p.pid, start_time=p.start_time)
            if h is None and code != errno.ESRCH:  # gone is fine, as in pgrep.c
                _face.warnx(prog, f"opening pid {p.pid} failed: {_face.strerror(code)}")
        if len(ws) == 0:
            return 1
        for _h in _face.wait(ws, None):
            pass
        return 0


def _own(v: Optional[int], own: int) -> Optional[int]:
    """pgrep's -g/-s: 0 means our own group/session."""
    return own if v == 0 else v


def _selected(p: _procscan.Proc, ppid: Optional[set[int]], pid: Optional[set[int]],
              pgrp: Optional[set[int]], sid: Optional[set[int]], euid: Optional[set[int]],
              ruid: Optional[set[int]], rgid: Optional[set[int]], tty: Optional[set[str]],
              cgroup: Optional[set[str]], runstates: Optional[str],
              ref_ns: Optional[dict[str, int]], nslist: tuple[str, ...],
              older: Optional[int], boot: float) -> bool:
    """Every given criterion holds (pgrep.c select_procs, in its order)."""
    if ppid is not None and p.ppid not in ppid:
        return False
    if pid is not None and p.pid not in pid:
        return False
    if pgrp is not None and p.pgrp not in pgrp:
        return False
    if euid is not None or ruid is not None or rgid is not None:
        got = _procscan.ids(p.pid)
        if got is None:
            return False
        if euid is not None and got[1] not in euid:
            return False
        if ruid is not None and got[0] not in ruid:
            return False
        if rgid is not None and got[2] not in rgid:
            return False
    if sid is not None and p.session not in sid:
        return False
    if ref_ns is not None and _procscan.namespaces(p.pid, nslist) != ref_ns:
        return False
    if older is not None and int(boot - p.start_time / _procscan.CLK_TCK) < older:
        return False
    if tty is not None and _procscan.tty_name(p.tty_nr) not in tty:
        return False
    if runstates is not None and p.state not in runstates:
        return False
    if cgroup is not None:
        lines = _procscan.cgroups(p.pid) or []
        if not any(line.startswith("0::") and line[3:] in cgroup for line in lines):
            return False
    return True


def _is_long_match(pattern: str) -> bool:
    """pgrep.c is_long_match(): over 15 characters and no ``|`` or ``[`` (only used to
    decide whether to warn that a process name can never be that long)."""
    return len(pattern) > 15 and "|" not in pattern and "[" not in pattern
