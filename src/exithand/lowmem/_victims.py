"""Victim policy: who may be killed, in which order, and pinning the chosen one.

Order: the kernel's own badness, ``/proc/<pid>/oom_score`` (memory footprint scaled to 0..1000
plus ``oom_score_adj``), moved by +300 for a ``prefer`` match and -300 for an ``avoid`` match
(earlyoom's numbers), by executable (``/proc/<pid>/exe``; ``avoid`` only for a root-owned one,
see :mod:`._match`), by uid, by cgroup path (any line of ``/proc/<pid>/cgroup``), or, weaker, by
the name a process gives itself (``*-comm``).

Never a candidate: pid 1 (of our pid namespace), kernel threads (``PF_KTHREAD`` in the flags of
``/proc/<pid>/stat``), this daemon, ``oom_score_adj == -1000`` (the kernel's "never kill"),
``ignore`` matches, zombies, processes below ``min_size`` (RSS + swap) unless their group
reaches it together (:mod:`._groups`), and processes that
already have SIGKILL pending (bit 9 of ``SigPnd``/``ShdPnd`` in ``/proc/<pid>/status``): they are
dying already, by our hand or another's, and a second SIGKILL frees nothing more.

Race-free pinning (:func:`pin`): the scan reads ``/proc`` by number, which is racy.  The chosen
candidate is opened as an :class:`exithand.ExitHandle` verified against the start time the scan
read, then its ``/proc`` files are read *again*, and the handle is checked to be still alive
*after* those reads: a live pidfd means the number could not have been reused in between, so the
figures belong to the pinned process, and every signal then goes through that pidfd.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Optional

import exithand

from ._match import Exe, exe_of, search

OOM_SCORE_ADJ_MIN = -1000
PREFER_BONUS = 300
PF_KTHREAD = 0x00200000
_SIGKILL_BIT = 1 << (9 - 1)


@dataclass(frozen=True)
class Policy:
    """The victim policy settings (see the module docstring)."""

    prefer: Optional[re.Pattern[str]] = None
    avoid: Optional[re.Pattern[str]] = None
    ignore: Optional[re.Pattern[str]] = None
    prefer_cgroup: Optional[re.Pattern[str]] = None
    avoid_cgroup: Optional[re.Pattern[str]] = None
    min_size: int = 0
    scope: tuple[str, ...] = ()  # cgroup directories (v1 or v2); empty: every process
    # the weaker, forgeable name matches, and the kernel-set ones (see ._match)
    prefer_comm: Optional[re.Pattern[str]] = None
    avoid_comm: Optional[re.Pattern[str]] = None
    ignore_comm: Optional[re.Pattern[str]] = None
    ignore_cgroup: Optional[re.Pattern[str]] = None
    avoid_uid: frozenset[int] = frozenset()
    ignore_uid: frozenset[int] = frozenset()
    group_by: str = "uid"  # "uid", "cgroup" or "none": see ._groups

    @property
    def uses_exe(self) -> bool:
        return any(x is not None for x in (self.prefer, self.avoid, self.ignore))

    @property
    def uses_cgroup(self) -> bool:
        return self.group_by == "cgroup" or any(
            x is not None for x in (self.prefer_cgroup, self.avoid_cgroup, self.ignore_cgroup))


@dataclass(frozen=True)
class Candidate:
    """What the scan read about one process (bytes for sizes)."""

    pid: int
    start_time: int
    comm: str
    oom_score: int
    oom_score_adj: int
    score: int
    memory: int
    uid: int
    cgroup: str = ""
    exe: str = ""
    group: str = ""  # set when it is a candidate only as part of a group (see ._groups)
    small: bool = False  # below min_size on its own

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "pid": self.pid, "comm": self.comm, "uid": self.uid, "oom_score": self.oom_score,
            "oom_score_adj": self.oom_score_adj, "score": self.score,
            "memory_bytes": self.memory, "cgroup": self.cgroup, "exe": self.exe}
        if self.group:
            d["group"] = self.group
        return d


@dataclass
class _Proc:
    state: str = "?"
    flags: int = 0
    start_time: int = 0
    comm: str = "?"
    memory: int = 0
    has_mm: bool = False
    uid: int = -1
    sigkill_pending: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone (ESRCH/ENOENT), or not ours to read
        return None


def _read_proc(pid: int) -> Optional[_Proc]:
    stat = _read(f"/proc/{pid}/stat")
    status = _read(f"/proc/{pid}/status")
    if stat is None or status is None:
        return None
    p = _Proc()
    try:
        head, _, rest = stat.rpartition(b")")
        fields = rest.split()
        p.comm = head.partition(b"(")[2].decode("utf-8", "replace")
        p.state, p.flags, p.start_time = fields[0].decode(), int(fields[6]), int(fields[19])
    except (IndexError, ValueError):
        return None
    for line in status.splitlines():
        k, _, v = line.partition(b":")
        if k in (b"VmRSS", b"VmSwap"):
            p.memory += int(v.split()[0]) * 1024
            p.has_mm = True
        elif k in (b"SigPnd", b"ShdPnd"):
            p.sigkill_pending |= bool(int(v.strip(), 16) & _SIGKILL_BIT)
        elif k == b"Uid":
            p.uid = int(v.split()[0])
        elif k == b"Tgid" and int(v) != pid:
            return None  # a thread's number (a process table entry reused by a thread)
    return p


def _int_file(path: str) -> Optional[int]:
    data = _read(path)
    try:
        return None if data is None else int(data.split()[0])
    except (ValueError, IndexError):
        return None


def cgroup_path(pid: int) -> str:
    """The process's cgroup paths (``/proc/<pid>/cgroup`` lines, ``;``-joined)."""
    data = _read(f"/proc/{pid}/cgroup") or b""
    return ";".join(line.split(b":", 2)[2].decode("utf-8", "replace")
                    for line in data.splitlines() if line.count(b":") >= 2)


def scope_pids(dirs: Iterable[str]) -> list[int]:
    """Processes of the cgroup directories and their sub-cgroups (v1 or v2)."""
    pids: set[int] = set()
    for top in dirs:
        for dirpath, _dirs, _files in os.walk(top):
            data = _read(os.path.join(dirpath, "cgroup.procs"))
            if data:
                pids.update(int(x) for x in data.split())
    return sorted(pids)


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def evaluate(pid: int, policy: Policy, exclude: frozenset[tuple[int, int]] = frozenset(),
             allow_small: bool = False) -> tuple[Optional[Candidate], str]:
    """Read one process and apply the policy: (candidate, "") or (None, why it is not one).

    ``allow_small``: a process below ``min_size`` is returned too, marked ``small`` (for
    :func:`._groups.lift` to decide)."""
    if pid == 1:
        return None, "pid 1"
    if pid == os.getpid():
        return None, "this daemon"
    p = _read_proc(pid)
    if p is None:
        return None, "gone"
    if p.flags & PF_KTHREAD:
        return None, "kernel thread"
    if p.state in ("Z", "X", "x") or not p.has_mm:
        return None, "no memory (zombie or exiting)"
    if (pid, p.start_time) in exclude:
        return None, "already being killed by us"
    if p.sigkill_pending:
        return None, "SIGKILL already pending (dying)"
    if search(policy.ignore_comm, p.comm):
        return None, "ignored by name (comm)"
    if p.uid in policy.ignore_uid:
        return None, "ignored by uid"
    small = p.memory < policy.min_size
    if small and not allow_small:
        return None, "below min_size"
    exe = exe_of(pid) if policy.uses_exe else None
    if exe is not None and exe.root_owned and search(policy.ignore, exe.path):
        return None, "ignored by executable"
    cg = cgroup_path(pid) if policy.uses_cgroup else ""
    if search(policy.ignore_cgroup, cg):
        return None, "ignored by cgroup"
    adj = _int_file(f"/proc/{pid}/oom_score_adj")
    score = _int_file(f"/proc/{pid}/oom_score")
    if adj is None or score is None:
        return None, "gone"
    if adj <= OOM_SCORE_ADJ_MIN:
        return None, "oom_score_adj -1000"
    value = score + PREFER_BONUS * (_bonus(policy, p, exe, cg))
    return Candidate(pid, p.start_time, p.comm, score, adj, value, p.memory, p.uid, cg,
                     exe.path if exe is not None else "", small=small), ""


def _bonus(policy: Policy, p: _Proc, exe: Optional[Exe], cg: str) -> int:
    """+1 per prefer match, -1 per avoid match (each kind counted once)."""
    n = 0
    if exe is not None:
        n += search(policy.prefer, exe.path)
        n -= exe.root_owned and search(policy.avoid, exe.path)
    n += search(policy.prefer_comm, p.comm) - search(policy.avoid_comm, p.comm)
    n += search(policy.prefer_cgroup, cg) - search(policy.avoid_cgroup, cg)
    n -= p.uid in policy.avoid_uid
    return n


def candidates(policy: Policy, exclude: frozenset[tuple[int, int]] = frozenset(),
               pids: Optional[Iterable[int]] = None,
               gone: Optional[Callable[[int], None]] = None) -> list[Candidate]:
    """Every candidate, best victim first (highest score, then largest memory, then pid).

    ``pids``: the processes to read (an :class:`exithand.ProcessTable`'s), instead of listing
    ``/proc`` (or ``cgroup.procs`` under ``scope``); ``gone`` is called with each one whose
    files are gone or name no process now, so that the caller can forget it.
    """
    from ._groups import lift

    if pids is None:
        pids = scope_pids(policy.scope) if policy.scope else all_pids()
    found = []
    grouping = policy.group_by != "none" and policy.min_size > 0
    for pid in pids:
        c, why = evaluate(pid, policy, exclude, allow_small=grouping)
        if c is not None:
            found.append(c)
        elif gone is not None and why == "gone":
            gone(pid)
    out = lift(found, policy)
    out.sort(key=lambda c: (-c.score, -c.memory, c.pid))
    return out


def pin(c: Candidate, policy: Policy, exclude: frozenset[tuple[int, int]] = frozenset()
        ) -> Optional[tuple[exithand.ExitHandle, Candidate]]:
    """Open ``c`` as a handle and re-check it through the pin; ``None`` if it no longer
    qualifies (gone, pid reused, adj became -1000, SIGKILL now pending, ...)."""
    try:
        h = exithand.open(c.pid, start_time=c.start_time)
    except exithand.Error:  # gone, or the number names another process now
        return None
    try:
        fresh, _why = evaluate(c.pid, policy, exclude, allow_small=bool(c.group))
        if fresh is None or fresh.start_time != c.start_time or not h.is_alive():
            h.close()
            return None
        if fresh.small:  # a group member: keeps the group's score from the decision
            fresh = dataclasses.replace(fresh, score=c.score, group=c.group)
    except BaseException:
        h.close()
        raise
    return h, fresh
