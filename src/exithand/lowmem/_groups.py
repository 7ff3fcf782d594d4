"""Processes counted together, so that splitting memory over many processes escapes nothing.

``min-size`` protects small processes (a shell, an agent) from being chosen for a few MiB.  On
its own it is a loophole: 34 processes of 14 MiB under a 16 MiB ``min-size`` hold 476 MiB and
none of them is ever a candidate, so an innocent large process, then a protected one, is killed
instead.  So processes below ``min-size`` are grouped (``group-by``):

* ``uid`` (default): by real uid (``Uid:`` of ``/proc/PID/status``), which a process cannot
  change without privilege;
* ``cgroup``: by cgroup path (``/proc/PID/cgroup``); a user with a delegated subtree can split
  it into sub-cgroups, so this is weaker than ``uid`` there;
* ``none``: the old behaviour, each process alone.

A group whose small members together reach ``min-size`` makes each of them a candidate, scored
as one process of the group's combined size would be: the kernel's ``oom_score`` is
``(1000 + badness * 1000 / (RAM + swap)) * 2 / 3`` (``proc_oom_score``; badness is RSS + swap +
page tables, in pages, plus ``oom_score_adj`` scaled), so the group's score is its largest
member's ``oom_score`` plus ``memory * 2000 / 3 / (RAM + swap)`` for the other members' memory
(summing the scores themselves would count the constant 666 once per member), plus each
member's own prefer/avoid bonus.  Its largest member goes first, one kill at a time like any
other victim; the daemon then re-checks the triggers and re-scores the group (smaller now), so
a group is taken apart only as far as the memory shortage requires, never killed whole on one
decision.  Members are only
processes that pass every other rule (``ignore``, ``oom_score_adj -1000``, ...); processes at or
above ``min-size`` are scored alone as before.  RSS counts pages shared with a parent in every
child, so a forked pool's sum over-states what killing it frees; the re-check after each kill
corrects for that.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable

from ._meminfo import read_meminfo
from ._victims import Candidate, Policy

GROUP_BY = ("uid", "cgroup", "none")


def key(c: Candidate, group_by: str) -> str:
    """The group a small candidate belongs to, as shown in its ``group`` field."""
    return f"uid {c.uid}" if group_by == "uid" else f"cgroup {c.cgroup}"


def lift(found: Iterable[Candidate], policy: Policy) -> list[Candidate]:
    """The candidates on their own, plus the small ones whose group reaches ``min_size``."""
    out: list[Candidate] = []
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in found:
        if not c.small:
            out.append(c)
        elif policy.group_by != "none":
            groups[key(c, policy.group_by)].append(c)
    total = 0
    for name, members in groups.items():
        memory = sum(m.memory for m in members)
        if memory < policy.min_size:
            continue
        total = total or _ram_and_swap()
        top = max(members, key=lambda m: (m.memory, m.oom_score))
        score = top.oom_score + (memory - top.memory) * 2000 // 3 // total
        out.extend(dataclasses.replace(m, score=score + m.score - m.oom_score, group=name)
                   for m in members)
    return out


def _ram_and_swap() -> int:
    """RAM + swap in bytes: the kernel's ``totalpages`` for ``oom_score``."""
    m = read_meminfo()
    return max(1, m.get("MemTotal", 0) + m.get("SwapTotal", 0))
