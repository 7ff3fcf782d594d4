"""What this system offers: each backend's availability and which one ``open()`` uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ._backends import availability, default_backend
from ._errors import BackendUnavailable


@dataclass(frozen=True)
class BackendInfo:
    """One backend: ``available`` (really probed) or why not; ``selected`` if it is the default.
    """

    name: str
    available: bool
    reason: str
    selected: bool


def backends() -> list[BackendInfo]:
    """Every backend, best first, probed for real (this may start the shared proc connector
    listener, as using that backend would).  The selected one honours ``EXITHAND_BACKEND``."""
    try:
        chosen: Optional[str] = default_backend().name
    except BackendUnavailable:
        chosen = None
    return [BackendInfo(name, ok, why, name == chosen) for name, ok, why in availability()]


def selected_backend() -> str:
    """Name of the backend :func:`exithand.open` uses (``$EXITHAND_BACKEND`` or the best
    available); raises :class:`exithand.BackendUnavailable` saying why there is none."""
    return default_backend().name


def kernel_release() -> str:
    """``uname -r``."""
    return os.uname().release
