"""Durations on the command line: ``1.5``, ``250ms``, ``2s``, ``1.5m``, ``1h``, ``1d``.

One parser for every time option of every command (``-t``, ``--grace``, ...), so that what
works in one place works everywhere.  A bare number is seconds, as in pwait(1), waitpid(1),
sleep(1) and timeout(1); the suffixes are those of timeout(1) plus ``ms``.  Standard library
only and nothing else imported: this module is on every command's start-up path.
"""

from __future__ import annotations

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class DurationError(ValueError):
    """A duration that cannot be read; the message says why, naming the text."""


def parse_duration(text: str, units: tuple[str, ...] = tuple(UNITS)) -> float:
    """Seconds in ``text``: a non-negative decimal number and an optional unit from ``units``.

    Raises :class:`DurationError` for anything else (a negative number, ``nan``, ``inf`` or a
    value that overflows to it, an unknown unit).  Huge finite values are fine (``1e18``: wait
    for ever, in effect).
    """
    t = text.strip()
    number, factor = t, 1.0
    for unit in sorted(units, key=len, reverse=True):  # "ms" before "m" and "s"
        if t.endswith(unit) and t[:-len(unit)]:
            number, factor = t[:-len(unit)], UNITS[unit]
            break
    try:
        if "_" in number:  # float() takes "1_0"; no duration syntax does
            raise ValueError(number)
        value = float(number) * factor
    except ValueError:
        raise DurationError(f"invalid duration {text!r}: not a number of seconds (optionally "
                            f"with a unit: {', '.join(units)})") from None
    if value != value or value < 0:
        raise DurationError(f"invalid duration {text!r}: must be >= 0")
    if value == float("inf"):
        raise DurationError(f"invalid duration {text!r}: must be a finite number of seconds")
    return value
