"""exithand: race-free, pollable handles on the death of any Linux process.

>>> import exithand
>>> with exithand.open(pid) as h:          # doctest: +SKIP
...     status = h.wait(timeout=5)
"""

from __future__ import annotations

from ._backends._connector import start_exit_listener
from ._cgroup import CgroupError
from ._creds import ProcessCredentials
from ._errors import (
    AccessDenied,
    BackendUnavailable,
    Error,
    FdLimitError,
    NoSuchProcess,
    NotProcessLeader,
    TimeoutExpired,
)
from ._features import FeatureInfo, features
from ._handle import ExitHandle
from ._handle import open as open  # public, but not in __all__ (see below)
from ._identity import ProcessIdentity, parse_target
from ._info import BackendInfo, backends, kernel_release, selected_backend
from ._kill import KillResult, kill_and_wait
from ._kill_cgroup import CgroupKillResult, kill_cgroup
from ._status import ExitStatus
from ._wait import wait_all, wait_any, wait_procs
from ._waitset import WaitSet
from ._watch import ExitGap, ExitWatcher, ProcessExit, watch

__version__ = "0.1.0"

# ``open`` is public (``exithand.open(pid)``) but deliberately not in ``__all__``: a
# ``from exithand import *`` must not shadow the builtin ``open``.

__all__ = [
    "AccessDenied",
    "BackendInfo",
    "BackendUnavailable",
    "CgroupError",
    "CgroupKillResult",
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
    "watch",
]
