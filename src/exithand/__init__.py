"""exithand: race-free, pollable handles on the death of any Linux process.

>>> import exithand
>>> with exithand.open(pid) as h:          # doctest: +SKIP
...     status = h.wait(timeout=5)
"""

from __future__ import annotations

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
from ._handle import ExitHandle, open
from ._identity import ProcessIdentity, parse_target
from ._status import ExitStatus
from ._wait import wait_all, wait_any, wait_procs
from ._waitset import WaitSet

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "BackendUnavailable",
    "Error",
    "ExitHandle",
    "ExitStatus",
    "FdLimitError",
    "NoSuchProcess",
    "NotProcessLeader",
    "ProcessCredentials",
    "ProcessIdentity",
    "TimeoutExpired",
    "WaitSet",
    "__version__",
    "open",
    "parse_target",
    "wait_all",
    "wait_any",
    "wait_procs",
]
