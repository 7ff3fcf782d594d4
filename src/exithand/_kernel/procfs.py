"""The one procfs reader: every per-process ``/proc`` file exithand reads is read and parsed here.

Published as :mod:`exithand.procfs` (the faces use it from there).  Each function takes a pid
(an ``int``, or ``"self"``) and, where it applies, a ``tid``: ``/proc/<pid>/task/<tid>/<name>``
is then read instead of ``/proc/<pid>/<name>``.

Kernel facts relied on (each parser repeats the ones it needs):

* A ``/proc/<pid>`` entry names whatever process holds the number *now*: a read tells you about
  the process of a pidfd only if that pidfd's process was not reaped before the read ended (the
  callers in the core check this; see ``_status_sources``).  A vanished process shows as ENOENT
  at open and ESRCH at read; both become :class:`~exithand.NoSuchProcess` here, EACCES/EPERM
  (``hidepid=``, ptrace-guarded files such as ``exe``) :class:`~exithand.AccessDenied`, through
  the one errno translation (:func:`exithand._kernel.errors.translate_oserror`); every error
  carries ``.pid``.
* ``/proc/<tid>`` exists for a thread too (it is not listed by ``os.listdir("/proc")``); a
  thread's ``status`` says which process it belongs to in ``Tgid:``.
* Files are read with one ``open`` + ``read`` loop of raw ``os`` calls (a buffered ``open()``
  costs about 3x more, which matters on ``exithand.open``'s path) and decoded with
  ``surrogateescape``: names and command lines are bytes the process chose.

One job, reading (and the odd write to) ``/proc/<pid>``; over 500 lines only because each
parser states its kernel facts here, once.  This module is on the start-up path of
``import exithand``: no :mod:`typing` or :mod:`dataclasses` at run time (records come from
:mod:`.frozen`).
"""

from __future__ import annotations

import errno
import os

from .errors import AccessDenied, Error, NoSuchProcess, translate_oserror

TYPE_CHECKING = False  # mypy reads this as typing's; importing typing costs start-up time
if TYPE_CHECKING:
    from dataclasses import dataclass
    from typing import Optional, Union

    PidArg = Union[int, str]
else:
    from .frozen import dataclass

__all__ = [
    "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE", "CLK_TCK", "Mount",
    "Stat", "boot_id", "cgroup", "children", "cmdline", "comm", "exe", "exists", "fdinfo",
    "has_cap", "id_list", "mountinfo", "ns_stat", "oom_score", "oom_score_adj", "open_fd",
    "parse_cgroup", "parse_hex_mask", "parse_mountinfo", "parse_stat", "parse_status", "path",
    "pids", "read", "smaps_rollup", "stat", "statm", "status", "tasks", "tgid", "try_read",
    "try_stat", "unescape", "write",
]

#: clock ticks per second: the unit of ``stat`` field 22 (USER_HZ, 100 on Linux)
CLK_TCK: int = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# capability numbers (linux/capability.h) exithand asks about
CAP_KILL = 5
CAP_NET_ADMIN = 12
CAP_SYS_PTRACE = 19
CAP_SYS_RESOURCE = 24

_GONE = (errno.ENOENT, errno.ESRCH)


# ---- paths and raw reads ----------------------------------------------------------------------

def path(pid: PidArg, name: str = "", tid: Optional[int] = None) -> str:
    """``/proc/<pid>[/task/<tid>]/<name>`` (``pid`` an int or ``"self"``; ``name`` may be empty
    for the directory itself, or hold a ``/``, e.g. ``"ns/pid"``)."""
    base = f"/proc/{pid}" if tid is None else f"/proc/{pid}/task/{tid}"
    return f"{base}/{name}" if name else base


def _pid_of(pid: PidArg) -> Optional[int]:
    return pid if isinstance(pid, int) else (os.getpid() if pid == "self" else None)


def _error(exc: OSError, pid: PidArg, name: str, tid: Optional[int] = None) -> Exception:
    """The library's exception for a failed read of ``name``: ENOENT (the entry is gone) is
    ESRCH; everything else goes through the one translation."""
    what = "read " + path(pid, name, tid)
    if exc.errno == errno.ENOENT:
        exc = OSError(errno.ESRCH, exc.strerror)
    return translate_oserror(exc, _pid_of(pid), what)


def _read_all(fd: int) -> bytes:
    """The whole file: procfs files are generated per read, so read to EOF in large chunks."""
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def read(pid: PidArg, name: str, tid: Optional[int] = None) -> bytes:
    """The whole content of ``/proc/<pid>[/task/<tid>]/<name>``.

    Raises :class:`NoSuchProcess` (gone: ENOENT/ESRCH), :class:`AccessDenied` (EACCES/EPERM),
    or :class:`Error`; each with ``.pid``.
    """
    try:
        fd = os.open(path(pid, name, tid), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _error(e, pid, name, tid) from None
    try:
        return _read_all(fd)
    except OSError as e:
        raise _error(e, pid, name, tid) from None
    finally:
        os.close(fd)


def try_read(pid: PidArg, name: str, tid: Optional[int] = None) -> Optional[bytes]:
    """:func:`read`, but ``None`` for any ``OSError`` (gone, hidden, refused): for scans, where
    a process that cannot be read is skipped."""
    try:
        fd = os.open(path(pid, name, tid), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_all(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def write(pid: PidArg, name: str, data: bytes, tid: Optional[int] = None) -> None:
    """Write ``data`` to ``/proc/<pid>[/task/<tid>]/<name>`` in one ``write`` (e.g.
    ``oom_score_adj``, ``comm``); errors as :func:`read` raises them (EINVAL: the kernel
    refused the value, :class:`Error`)."""
    try:
        fd = os.open(path(pid, name, tid), os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _error(e, pid, name, tid) from None
    try:
        os.write(fd, data)
    except OSError as e:
        raise _error(e, pid, name, tid) from None
    finally:
        os.close(fd)


def open_fd(pid: PidArg, name: str = "", flags: int = os.O_RDONLY,
            tid: Optional[int] = None) -> int:
    """``os.open`` of ``/proc/<pid>[/task/<tid>]/<name>`` (``O_CLOEXEC`` added), errors as
    :func:`read` raises them.  ``name=""`` with ``os.O_PATH | os.O_DIRECTORY`` gives a dirfd of
    the process's directory (what ``PIDFD_GET_INFO``-less code pins with); ``"ns/pid"`` an fd
    of its pid namespace."""
    try:
        return os.open(path(pid, name, tid), flags | os.O_CLOEXEC)
    except OSError as e:
        raise _error(e, pid, name, tid) from None


def exists(pid: PidArg, tid: Optional[int] = None) -> bool:
    """Does ``/proc/<pid>`` exist for us?  (A thread id has an entry too; ``hidepid=invisible``
    hides other users' processes, so False does not prove there is no such process.)"""
    return os.path.exists(path(pid, "", tid))


def pids() -> list[int]:
    """The process (thread-group leader) ids ``/proc`` lists now, unsorted.  Threads are not
    listed (their ``/proc/<tid>`` entries exist but are hidden from ``readdir``)."""
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def tasks(pid: PidArg) -> list[int]:
    """The thread ids of ``pid`` (``/proc/<pid>/task``)."""
    try:
        names = os.listdir(path(pid, "task"))
    except OSError as e:
        raise _error(e, pid, "task") from None
    return [int(n) for n in names if n.isdigit()]


def ns_stat(pid: PidArg, kind: str) -> os.stat_result:
    """``stat`` of ``/proc/<pid>/ns/<kind>`` (``pid``, ``user``, ``mnt``...): ``st_dev`` and
    ``st_ino`` identify the namespace (``ioctl_ns(2)``)."""
    try:
        return os.stat(path(pid, "ns/" + kind))
    except OSError as e:
        raise _error(e, pid, "ns/" + kind) from None


def exe(pid: PidArg) -> str:
    """``readlink(/proc/<pid>/exe)``.  The kernel guards it with a ptrace read-access check
    (``PTRACE_MODE_READ_FSCREDS``), so :class:`AccessDenied` means no such access; a zombie or
    kernel thread has no exe (ENOENT, which here is :class:`NoSuchProcess` like a gone one: ask
    :func:`exists` to tell them apart)."""
    try:
        return os.readlink(path(pid, "exe"))
    except OSError as e:
        raise _error(e, pid, "exe") from None


# ---- stat -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/<pid>/stat`` exithand uses (``proc_pid_stat(5)`` numbers them).

    ``comm`` (field 2) is what ``prctl(PR_SET_NAME)`` set: up to 15 bytes, any of them spaces or
    parentheses, which is why the line is split at the *last* ``)``.  ``state`` is field 3
    (``Z`` zombie, ``X`` dead...), ``ppid`` 4, ``pgrp`` 5, ``session`` 6, ``num_threads`` 20,
    ``start_time`` 22 (clock ticks of CLOCK_BOOTTIME since boot, :data:`CLK_TCK` a second),
    ``rss`` 24 (pages), ``tty_nr`` 7 (the controlling terminal's device number, 0 for
    none).  ``exit_code`` (field 52, Linux 3.5) is the raw wait status of a zombie;
    the kernel shows it only to callers with ptrace read access and prints 0 to everyone else,
    so 0 alone means nothing; ``None`` on kernels that print fewer fields.
    """

    pid: int
    comm: str
    state: str
    ppid: int
    num_threads: int
    start_time: int
    exit_code: Optional[int]
    pgrp: int = 0
    session: int = 0
    rss: int = 0
    tty_nr: int = 0


def parse_stat(pid: int, text: str) -> Stat:
    """Parse the text of ``/proc/<pid>/stat`` (split at the last ``)``).  Raises ``ValueError``
    (or ``IndexError``) for a line that is not one."""
    lpar = text.index("(")
    rpar = text.rindex(")")
    rest = text[rpar + 2:].split()
    # rest[0] is field 3 (state); field N is rest[N - 3]
    return Stat(
        pid, text[lpar + 1:rpar], rest[0], int(rest[1]), int(rest[17]), int(rest[19]),
        int(rest[49]) if len(rest) > 49 else None, int(rest[2]), int(rest[3]), int(rest[21]),
        int(rest[4]),
    )


def stat(pid: PidArg, tid: Optional[int] = None) -> Stat:
    """Read and parse ``/proc/<pid>[/task/<tid>]/stat`` (errors as :func:`read`; a line that
    cannot be parsed is :class:`Error`)."""
    data = read(pid, "stat", tid)
    try:
        return parse_stat(_pid_of(pid) if tid is None else tid,  # type: ignore[arg-type]
                          data.decode("utf-8", "surrogateescape"))
    except (ValueError, IndexError):
        raise Error(f"{path(pid, 'stat', tid)}: cannot parse {data[:80]!r}",
                    _pid_of(pid)) from None


def try_stat(pid: PidArg, tid: Optional[int] = None) -> Optional[Stat]:
    """:func:`stat`, or ``None`` if it cannot be read or parsed (gone, hidden): the fast path
    (no exception is made for a vanished process)."""
    data = try_read(pid, "stat", tid)
    if data is None:
        return None
    try:
        return parse_stat(_pid_of(pid) if tid is None else tid,  # type: ignore[arg-type]
                          data.decode("utf-8", "surrogateescape"))
    except (ValueError, IndexError):
        return None


# ---- status -----------------------------------------------------------------------------------

def parse_status(data: bytes) -> dict[str, str]:
    """``/proc/<pid>/status`` as {field name: value text}, e.g. ``{"Tgid": "1234",
    "Uid": "1000\\t1000\\t1000\\t1000", "SigPnd": "0000000000000000", ...}``.

    The kernel prints one ``Name:\\tvalue`` per line; field order and presence vary by kernel
    version and config, so look fields up by name.  ``Name`` is the comm with ``\\``
    escaped and ``\\n`` printed as ``\\n``.
    """
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "surrogateescape").split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            out[name] = value.strip()
    return out


def status(pid: PidArg, tid: Optional[int] = None) -> dict[str, str]:
    """:func:`parse_status` of ``/proc/<pid>[/task/<tid>]/status`` (errors as :func:`read`).

    Readable by anyone who can see the entry (no ptrace check).  Fields exithand uses:
    ``Tgid`` (a thread's process), ``PPid``, ``NSpid`` (the pid in each pid namespace from the
    reader's down, Linux 4.1), ``Uid``/``Gid`` (real, effective, saved, fs: :func:`id_list`),
    ``SigPnd``/``ShdPnd`` (pending signals of the thread/the group, :func:`parse_hex_mask`),
    ``CapEff``, ``VmRSS``/``VmSwap`` (``"123 kB"``; absent without an mm, e.g. a zombie).
    """
    return parse_status(read(pid, "status", tid))


def id_list(value: str) -> tuple[int, ...]:
    """The numbers of a ``Uid:``, ``Gid:``, ``NSpid:``, ``NStgid:`` or ``Groups:`` value."""
    return tuple(int(v) for v in value.split())


def parse_hex_mask(value: str) -> int:
    """A hex mask of ``status`` (``CapEff``, ``SigPnd``, ``ShdPnd``...) as an int: bit ``n``
    is capability ``n``, or signal ``n + 1``."""
    return int(value, 16)


def tgid(pid: int) -> Optional[int]:
    """The process a (thread) id belongs to: ``Tgid:`` of ``/proc/<pid>/status``; ``None``
    when it cannot be read (gone, hidden).  ``tgid(pid) == pid`` means ``pid`` is a process."""
    data = try_read(pid, "status")
    if data is None:
        return None
    i = data.find(b"\nTgid:")
    if i < 0:
        return None
    try:
        return int(data[i + 6:data.index(b"\n", i + 6)])
    except ValueError:
        return None


def has_cap(cap: int) -> bool:
    """Does this process hold capability ``cap`` in its effective set (``CapEff:`` of
    ``/proc/self/status``, a hex mask with bit ``cap``)?  False when unreadable."""
    try:
        value = status("self").get("CapEff")
        return value is not None and bool(parse_hex_mask(value) >> cap & 1)
    except (Error, ValueError):
        return False


# ---- small files ------------------------------------------------------------------------------

def comm(pid: PidArg, tid: Optional[int] = None) -> str:
    """``/proc/<pid>/comm`` without its newline (field 2 of ``stat``, unescaped)."""
    return read(pid, "comm", tid).rstrip(b"\n").decode("utf-8", "surrogateescape")


def cmdline(pid: PidArg) -> list[str]:
    """The arguments of ``/proc/<pid>/cmdline`` (NUL-separated).  Empty for kernel threads and
    zombies; a process may rewrite its own (then it may lack the final NUL)."""
    raw = read(pid, "cmdline")
    if not raw:
        return []
    return raw.rstrip(b"\0").decode("utf-8", "surrogateescape").split("\0")


def _int_file(pid: PidArg, name: str) -> int:
    data = read(pid, name)
    try:
        return int(data)
    except ValueError:
        raise Error(f"{path(pid, name)}: not a number: {data[:40]!r}", _pid_of(pid)) from None


def oom_score(pid: PidArg) -> int:
    """``/proc/<pid>/oom_score``: the OOM killer's badness (0..2000 since 4.19; higher is
    killed first), with ``oom_score_adj`` already applied."""
    return _int_file(pid, "oom_score")


def oom_score_adj(pid: PidArg) -> int:
    """``/proc/<pid>/oom_score_adj`` (-1000..1000; -1000 exempts from the OOM killer)."""
    return _int_file(pid, "oom_score_adj")


def statm(pid: PidArg) -> tuple[int, ...]:
    """``/proc/<pid>/statm``: size, resident, shared, text, lib, data, dt, in pages
    (``os.sysconf("SC_PAGE_SIZE")`` bytes each); all 0 for a zombie or kernel thread."""
    return tuple(int(v) for v in read(pid, "statm").split())


def smaps_rollup(pid: PidArg) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` (Linux 4.14) as {field: bytes}, e.g. ``Rss``, ``Pss``,
    ``Swap``, ``Anonymous``.  Guarded by a ptrace read-access check (:class:`AccessDenied`);
    empty for a process without an mm."""
    out: dict[str, int] = {}
    for line in read(pid, "smaps_rollup").decode("ascii", "replace").split("\n"):
        name, sep, value = line.partition(":")
        parts = value.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[name] = int(parts[0]) * 1024
    return out


def children(pid: PidArg, tid: int) -> list[int]:
    """``/proc/<pid>/task/<tid>/children`` (Linux 3.5, ``CONFIG_PROC_CHILDREN``): the children
    this *thread* forked (a child belongs to the thread that created it, so a process's children
    are the union over its tasks).  The list is not a snapshot: a child that dies or is
    reparented while it is read may be missed."""
    return [int(v) for v in read(pid, "children", tid).split()]


def fdinfo(fd: int) -> dict[str, str]:
    """``/proc/self/fdinfo/<fd>`` as {field: value}; for a pidfd ``Pid:`` is the process's pid
    in our namespace (-1 once it was reaped, Linux 5.x+; 0 if it is not visible in it)."""
    return parse_status(read("self", f"fdinfo/{fd}"))


# ---- cgroup -----------------------------------------------------------------------------------

def parse_cgroup(text: str) -> list[tuple[int, str, str]]:
    """``/proc/<pid>/cgroup`` as (hierarchy id, controllers, path) tuples.

    One line per hierarchy: ``ID:CONTROLLERS:PATH``.  cgroup v2 is ``0::PATH``; a v1 line lists
    its comma-separated controllers (and ``name=X`` for a named hierarchy).  ``PATH`` is
    relative to the reader's cgroup namespace root and may itself contain ``:``.
    """
    out = []
    for line in text.split("\n"):
        hid, sep1, rest = line.partition(":")
        ctrl, sep2, cpath = rest.partition(":")
        if sep1 and sep2 and hid.isdigit():
            out.append((int(hid), ctrl, cpath))
    return out


def cgroup(pid: PidArg) -> list[tuple[int, str, str]]:
    """:func:`parse_cgroup` of ``/proc/<pid>/cgroup`` (errors as :func:`read`)."""
    return parse_cgroup(read(pid, "cgroup").decode("utf-8", "surrogateescape"))


# ---- mountinfo --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/<pid>/mountinfo`` (``proc_pid_mountinfo(5)``), unescaped.

    ``root`` is the directory of the filesystem mounted at ``mount_point`` (not ``/`` for a bind
    mount of a subtree); ``options`` the per-mount options (``rw,nosuid...``), ``super_options``
    the filesystem's (for cgroup v1: the controllers; for procfs: ``hidepid=``); ``optional``
    the tagged fields (``shared:N``...) before the ``-`` separator.
    """

    mount_id: int
    parent_id: int
    device: str
    root: str
    mount_point: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: str


def unescape(field: str) -> str:
    """Undo mountinfo's octal escapes: the kernel prints space, tab, newline and backslash in
    paths as ``\\040``, ``\\011``, ``\\012``, ``\\134``."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse mountinfo text; lines that do not have the format are skipped."""
    out = []
    for line in text.split("\n"):
        left, sep, right = line.partition(" - ")
        f = left.split(" ")
        r = right.split(" ")
        if not sep or len(f) < 6 or len(r) < 2:
            continue
        try:
            out.append(Mount(int(f[0]), int(f[1]), f[2], unescape(f[3]), unescape(f[4]), f[5],
                             tuple(f[6:]), r[0], unescape(r[1]), r[2] if len(r) > 2 else ""))
        except ValueError:
            continue
    return out


def mountinfo(pid: PidArg = "self") -> list[Mount]:
    """The mounts of ``pid``'s mount namespace, as it sees them (its root), in mount order."""
    return parse_mountinfo(read(pid, "mountinfo").decode("utf-8", "surrogateescape"))


# ---- system-wide ------------------------------------------------------------------------------

_BOOT_ID: Optional[str] = None


def boot_id() -> str:
    """``/proc/sys/kernel/random/boot_id`` (cached): start times are only comparable within one
    boot.  ``""`` if unreadable."""
    global _BOOT_ID
    if _BOOT_ID is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _BOOT_ID = f.read().strip()
        except OSError:
            _BOOT_ID = ""
    return _BOOT_ID


# AccessDenied and NoSuchProcess are what callers catch: re-exported for them
__all__ += ["AccessDenied", "NoSuchProcess"]
