"""Reading ``/proc/<pid>/...``: the one procfs reader of exithand, as public API.

Each function takes a pid (``int`` or ``"self"``) and, where it applies, a ``tid`` (then
``/proc/<pid>/task/<tid>/<file>`` is read).  Failures raise the library's exceptions with
``.pid``: :class:`exithand.NoSuchProcess` (the entry is gone: ENOENT/ESRCH),
:class:`exithand.AccessDenied` (EACCES/EPERM: ``hidepid=``, a ptrace-guarded file), or
:class:`exithand.Error`; the ``try_*`` forms return ``None`` instead, for scans.

A ``/proc/<pid>`` entry names whatever process holds the number *now*: what it says is about
the process of an :class:`exithand.ProcessHandle` only while that process is not reaped (use the
handle's own methods for race-free answers).

Contents:

* files: :func:`read`, :func:`try_read`, :func:`write`, :func:`open_fd`, :func:`path`,
  :func:`exists`, :func:`pids`, :func:`tasks`, :func:`ns_stat`, :func:`exe`;
* ``stat``: :class:`Stat`, :func:`stat`, :func:`try_stat`, :func:`parse_stat` (parsed from the
  last ``)``; field 52 ``exit_code`` of a zombie), :data:`CLK_TCK`;
* ``status``: :func:`status`, :func:`parse_status` (fields by name), :func:`id_list`
  (Uid/Gid/NSpid), :func:`parse_hex_mask` (SigPnd/ShdPnd/CapEff), :func:`tgid`,
  :func:`has_cap` and the ``CAP_*`` numbers;
* :func:`comm`, :func:`cmdline`, :func:`oom_score`, :func:`oom_score_adj`, :func:`statm`,
  :func:`smaps_rollup`, :func:`children`, :func:`fdinfo`;
* :func:`cgroup` / :func:`parse_cgroup`, :func:`mountinfo` / :func:`parse_mountinfo` /
  :class:`Mount` / :func:`unescape`;
* :func:`boot_id`.
"""

from __future__ import annotations

# The one reader lives in the kernel band (exithand._kernel.procfs) and is re-exported whole:
# its __all__ is the public list.
from ._kernel.procfs import *  # noqa: F403
from ._kernel.procfs import __all__ as __all__
