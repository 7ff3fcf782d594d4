"""What the victim policy matches on, and regexes that cannot stall a decision.

Unforgeable matching.  ``comm`` (``/proc/PID/comm``, the name in ``stat``) is whatever the
process last passed to ``prctl(PR_SET_NAME)`` or exec'd under: any process can call itself
``sshd``.  So ``prefer``/``avoid``/``ignore`` match the executable instead:

* the path of ``/proc/PID/exe`` (``readlink``: the file the kernel exec'd, which the process
  cannot rename without write access to its directory), and
* its owner (``stat`` of ``/proc/PID/exe`` follows the magic link to the very inode, even when
  the file was deleted or replaced since): ``avoid`` and ``ignore`` protect a process only when
  that inode belongs to root, i.e. a file only root could have put under the matching path.  A
  user's copy of ``sshd`` at ``~/usr/sbin/sshd`` matches ``sshd`` but is not protected.
  (A user may still run the real root-owned binary; combine with ``avoid-uid``/``ignore-uid``
  or a cgroup rule where that matters.)

Reading ``/proc/PID/exe`` needs ptrace-read access to the process (root has it); where it is
refused, or for a process without an executable, nothing matches: no protection is granted and
no ``prefer`` bonus either.  ``prefer-comm``/``avoid-comm``/``ignore-comm`` keep the old name
matching as an explicitly weaker option.  The uid (``Uid:`` of ``status``) and the cgroup path
(``/proc/PID/cgroup``) are set by the kernel; a process cannot change its uid without privilege
and cannot leave its cgroup subtree without write access to the target ``cgroup.procs``.

Regexes: Python's ``re`` backtracks, so ``^((a+)+)+$`` against 30 ``a`` and a ``b`` takes seconds
(measured 2.9 s over 12 such names).  :func:`compile_checked` refuses, at start, a repeat that
contains another repeat or an alternation whose branches do not start with distinct literal
characters (the two shapes whose backtracking grows exponentially), and every match reads at
most :data:`MAX_SUBJECT` characters.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import re._constants as _c
    import re._parser as _p
else:  # pragma: no cover - 3.9/3.10
    import sre_constants as _c
    import sre_parse as _p

MAX_SUBJECT = 4096  # PATH_MAX: no exe path or cgroup path is longer
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT} | ({_c.POSSESSIVE_REPEAT}
                                             if hasattr(_c, "POSSESSIVE_REPEAT") else set())


class UnsafeRegex(ValueError):
    """The pattern can backtrack exponentially; the message says where."""


def _items(av: Any) -> list[Any]:
    """Sub-patterns inside one parsed node's argument (any nesting of tuples and lists)."""
    out: list[Any] = []
    if isinstance(av, _p.SubPattern):
        out.append(av)
    elif isinstance(av, (tuple, list)):
        for x in av:
            out.extend(_items(x))
    return out


def _first_literal(sub: Any) -> Optional[int]:
    data = list(sub)
    if data and data[0][0] == _c.LITERAL:
        return int(data[0][1])
    return None


def _check(sub: Any, in_repeat: bool) -> None:
    for op, av in sub:
        if op in _REPEATS:
            _lo, hi, body = av
            many = hi is _c.MAXREPEAT or hi > 1
            if many and in_repeat:
                raise UnsafeRegex("a repeat inside a repeat (nested quantifiers such as "
                                  "(a+)+ backtrack exponentially)")
            _check(body, in_repeat or many)
        elif op == _c.BRANCH:
            branches = av[1]
            if in_repeat:
                firsts = [_first_literal(b) for b in branches]
                if None in firsts or len(set(firsts)) != len(firsts):
                    raise UnsafeRegex("an alternation inside a repeat whose branches may "
                                      "match the same text (such as (a|ab)+) backtracks "
                                      "exponentially; start each branch with a different "
                                      "literal character")
            for b in branches:
                _check(b, in_repeat)
        else:
            for s in _items(av):
                _check(s, in_repeat)


def compile_checked(text: str) -> re.Pattern[str]:
    """Compile ``text``; :class:`re.error` if invalid, :class:`UnsafeRegex` if it can stall."""
    pattern = re.compile(text)
    _check(_p.parse(text), False)
    return pattern


def search(pattern: Optional[re.Pattern[str]], subject: str) -> bool:
    """``pattern`` found in the first :data:`MAX_SUBJECT` characters of ``subject``."""
    return pattern is not None and pattern.search(subject[:MAX_SUBJECT]) is not None


@dataclass(frozen=True)
class Exe:
    """The executable a process runs: its path and its inode's owner."""

    path: str
    owner: int

    @property
    def root_owned(self) -> bool:
        return self.owner == 0


_DELETED = " (deleted)"


def exe_of(pid: int) -> Optional[Exe]:
    """``/proc/PID/exe``: the path (without the kernel's `` (deleted)``) and the owner of the
    inode it names; ``None`` when refused (no ptrace access), gone, or a kernel thread."""
    link = f"/proc/{pid}/exe"
    try:
        path = os.readlink(link)
        st = os.stat(link)  # follows the magic link to the exec'd inode itself
    except OSError:
        return None
    if path.endswith(_DELETED):
        path = path[:-len(_DELETED)]
    return Exe(path, st.st_uid)
