"""What this system offers: each backend's availability and which one ``open()`` uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ._backends import availability, default_backend
from ._kernel.errors import BackendUnavailable


@dataclass(frozen=True)
class BackendInfo:
    """One backend: ``available`` (really probed) or why not; ``selected`` if it is the default.
    """

    name: str
    available: bool
    reason: str
    selected: bool


def backends() -> list[BackendInfo]:
    """Every backend, best first, each probed for real: a list of :class:`BackendInfo`.

    The backends: ``pidfd`` (Linux 5.3+, ``pidfd_open`` not blocked by seccomp), ``connector``
    (the netlink proc connector: root/CAP_NET_ADMIN before 6.6, from 6.6 anyone in the initial
    user and pid namespace, where the kernel allows it) and ``procpoll`` (``/proc`` polling).
    ``selected`` marks the one :func:`exithand.open` uses, honouring ``EXITHAND_BACKEND``.
    Probing may start the shared proc connector listener, as using that backend would.
    Never raises for an unavailable backend: ``available`` is False and ``reason`` says why.
    What ``exithand info`` prints.
    """
    try:
        chosen: Optional[str] = default_backend().name
    except BackendUnavailable:
        chosen = None
    return [BackendInfo(name, ok, why, name == chosen) for name, ok, why in availability()]


def selected_backend() -> str:
    """Name of the backend :func:`exithand.open` uses without ``backend=``.

    ``$EXITHAND_BACKEND`` when set (read once, at the first open), else the best available
    one: ``"pidfd"`` (Linux 5.3+), ``"connector"`` or ``"procpoll"``.  Raises
    :class:`exithand.BackendUnavailable` saying why when there is none (or when the forced one
    is unavailable here).
    """
    return default_backend().name


def kernel_release() -> str:
    """The running kernel's release, as ``uname -r`` prints it (``"6.18.44"``).

    Feature checks in exithand probe the syscalls themselves instead of comparing versions
    (backports and seccomp make versions unreliable); this is for reports like
    ``exithand info``.  Never raises.
    """
    return os.uname().release
