"""exithand: race-free, pollable handles on the death of any Linux process.

>>> import exithand
>>> with exithand.open(pid) as h:          # doctest: +SKIP
...     status = h.wait(timeout=5)
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs every CLI start

# Names are imported when first used (PEP 562), so ``import exithand`` costs almost nothing
# and a command-line tool pays only for what it runs: ``exithand wait`` needs handles and
# wait sets, not asyncio, the proc connector or the killer.  The mapping is the public API;
# ``__all__`` lists the same names.
_LAZY = {
    "start_exit_listener": "._backends._connector",
    "CgroupError": "._kernel.cgroup",
    "ProcessCredentials": "._creds",
    "AccessDenied": "._kernel.errors",
    "BackendUnavailable": "._kernel.errors",
    "Error": "._kernel.errors",
    "FdLimitError": "._kernel.errors",
    "NoSuchProcess": "._kernel.errors",
    "NotProcessLeader": "._kernel.errors",
    "TimeoutExpired": "._kernel.errors",
    "FeatureInfo": "._features",
    "features": "._features",
    "ExitHandle": "._handle",
    "open": "._handle",
    "ProcessIdentity": "._identity",
    "parse_target": "._identity",
    "BackendInfo": "._backend_info",
    "backends": "._backend_info",
    "kernel_release": "._backend_info",
    "selected_backend": "._backend_info",
    "KillResult": "._kill",
    "kill_and_wait": "._kill",
    "CgroupKillResult": "._kill_cgroup",
    "kill_cgroup": "._kill_cgroup",
    "ProcessTable": "._proctable",
    "Coredump": "._status",
    "ExitStatus": "._status",
    "wait_reaped": "._reap",
    "wait_all": "._wait",
    "wait_any": "._wait",
    "wait_procs": "._wait",
    "WaitSet": "._waitset",
    "ExitGap": "._stream",
    "ExitWatcher": "._stream",
    "ProcessExit": "._stream",
    "watch": "._stream",
}

if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from typing import Any

    from ._backend_info import BackendInfo, backends, kernel_release, selected_backend
    from ._backends._connector import start_exit_listener
    from ._creds import ProcessCredentials
    from ._features import FeatureInfo, features
    from ._handle import ExitHandle
    from ._handle import open as open  # public, not in __all__
    from ._identity import ProcessIdentity, parse_target
    from ._kernel.cgroup import CgroupError
    from ._kernel.errors import (
        AccessDenied,
        BackendUnavailable,
        Error,
        FdLimitError,
        NoSuchProcess,
        NotProcessLeader,
        TimeoutExpired,
    )
    from ._kill import KillResult, kill_and_wait
    from ._kill_cgroup import CgroupKillResult, kill_cgroup
    from ._proctable import ProcessTable
    from ._reap import wait_reaped
    from ._status import Coredump, ExitStatus
    from ._stream import ExitGap, ExitWatcher, ProcessExit, watch
    from ._wait import wait_all, wait_any, wait_procs
    from ._waitset import WaitSet


def __getattr__(name: str) -> Any:
    """Import a public name on first use, then keep it as a plain module attribute."""
    modname = _LAZY.get(name)
    if modname is None:
        raise AttributeError(f"module 'exithand' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(modname, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

# ``open`` is public (``exithand.open(pid)``) but deliberately not in ``__all__``: a
# ``from exithand import *`` must not shadow the builtin ``open``.

__all__ = [
    "AccessDenied",
    "BackendInfo",
    "BackendUnavailable",
    "CgroupError",
    "CgroupKillResult",
    "Coredump",
    "Error",
    "ExitGap",
    "ExitHandle",
    "ExitStatus",
    "ExitWatcher",
    "FdLimitError",
    "FeatureInfo",
    "KillResult",
    "NoSuchProcess",
    "NotProcessLeader",
    "ProcessCredentials",
    "ProcessExit",
    "ProcessIdentity",
    "ProcessTable",
    "TimeoutExpired",
    "WaitSet",
    "__version__",
    "backends",
    "features",
    "kernel_release",
    "kill_and_wait",
    "kill_cgroup",
    "parse_target",
    "selected_backend",
    "start_exit_listener",
    "wait_all",
    "wait_any",
    "wait_procs",
    "wait_reaped",
    "watch",
]
