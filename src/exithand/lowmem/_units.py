"""Small parsers for the daemon's settings: durations, sizes, percentages.

Durations are read by the library's one grammar (:func:`exithand.duration.parse_duration`,
the same for every command's time options: ``5us``, ``150ms``, ``2s``, ``1.5`` seconds, ``1m``,
``1h``, ``1d``), with the setting's name in front of its error text.  Sizes and percentages are
the ones earlyoom and systemd-oomd users expect: ``512M``, ``2G``, ``10%``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

from exithand.duration import UNITS, DurationError
from exithand.duration import parse_duration as _parse_duration

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
#: the largest size accepted (8 EiB): more than any machine has, and it fits a C long
MAX_BYTES = 1 << 63


class SettingError(ValueError):
    """A setting's value is malformed or out of range; the message names the setting."""


def parse_duration(value: object, what: str, *, default_unit: str = "s") -> float:
    """Seconds from ``"150ms"``, ``"2s"``, ``"1.5"`` (``default_unit``) or a number.

    A string goes through :func:`exithand.duration.parse_duration`; a TOML number is in
    ``default_unit``.  Errors are ``"<what>: <the grammar's error text>"``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SettingError(f"{what}: expected a duration like 500ms or 2s, got {value!r}")
    if not isinstance(value, str):
        try:
            secs = float(value) * UNITS[default_unit]
        except OverflowError:  # an int too large for a float (TOML has no size limit)
            secs = math.inf
        if not math.isfinite(secs) or secs < 0:
            raise SettingError(f"{what}: invalid duration {_short(value)}: must be a finite "
                               f"number of seconds >= 0")
        return secs
    try:
        return _parse_duration(value, default_unit)
    except DurationError as e:
        raise SettingError(f"{what}: {e}") from None


@dataclass(frozen=True)
class Amount:
    """A memory floor: an absolute number of bytes, or a percentage of a total."""

    bytes: Optional[int] = None
    percent: Optional[float] = None

    def resolve(self, total: int) -> int:
        """The floor in bytes against ``total`` (the memory or swap size)."""
        if self.bytes is not None:
            return self.bytes
        assert self.percent is not None
        return int(total * self.percent / 100)

    def __str__(self) -> str:
        if self.bytes is not None:
            return f"{self.bytes / 1048576:.0f} MiB"
        return f"{self.percent:g}%"


def parse_amount(value: object, what: str) -> Amount:
    """``"10%"``, ``"512M"``, ``"2G"``, ``"1048576"`` (bytes) or a number of bytes."""
    if isinstance(value, bool):
        raise SettingError(f"{what}: expected a size like 512M or a percentage like 10%")
    if isinstance(value, int):
        if not 0 <= value < MAX_BYTES:
            raise SettingError(f"{what}: {_short(value)} must be >= 0 and below 8 EiB")
        return Amount(bytes=value)
    if not isinstance(value, str):
        raise SettingError(f"{what}: expected a size like 512M or a percentage like 10%, "
                           f"got {value!r}")
    text = value.strip()
    if text.endswith("%"):
        try:
            pct = float(text[:-1])
        except ValueError:
            raise SettingError(f"{what}: {value!r} is not a percentage") from None
        if not math.isfinite(pct) or not 0 <= pct <= 100:
            raise SettingError(f"{what}: {_short(value)} must be between 0% and 100%")
        return Amount(percent=pct)
    m = _SIZE.match(text)
    if not m:
        raise SettingError(f"{what}: {_short(value)} is not a size (examples: 512M, 2G, 10%)")
    unit = (m.group(2) or "")[:1].lower()
    size = float(m.group(1)) * _SIZE_UNITS[unit]  # a 400-digit number is inf here
    if not math.isfinite(size) or size >= MAX_BYTES:
        raise SettingError(f"{what}: {_short(value)} is too large (at most 8 EiB)")
    return Amount(bytes=int(size))


def _short(value: object) -> str:
    """``repr(value)``, cut to 40 characters: a 400-digit number is named, not printed."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
