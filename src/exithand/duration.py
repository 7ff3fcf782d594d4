"""The one duration grammar: ``1.5``, ``250ms``, ``5us``, ``2s``, ``1.5m``, ``1h``, ``1d``.

Every time option of every command (``wait -t``, ``kill --grace``, ``watch -t``, ``mount
--linger``, every ``lowmem`` timing option) and every duration in ``lowmem``'s config file is
read by :func:`parse_duration`, so what works in one place works everywhere, with the same
error text.  The peer faces (``pwait``, ``waitpid``) keep their peers' own rules on purpose.

Grammar: a non-negative decimal number (``float()`` syntax without ``_``: ``1e3`` is fine),
optional blanks, then an optional unit: ``us`` (microseconds), ``ms``, ``s``, ``m`` or ``min``,
``h``, ``d``.  A bare number is in ``default_unit`` (seconds, as in sleep(1) and timeout(1);
lowmem's PSI stall and window default to ``us``, as the kernel's trigger format does).
Refused: negative numbers, ``nan``, ``inf`` and values overflowing to it, unknown units.

Standard library only and nothing imported: this module is on every command's start-up path.
"""

from __future__ import annotations

__all__ = ["UNITS", "DurationError", "parse_duration"]

#: unit -> seconds
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_LONGEST_FIRST = sorted(UNITS, key=len, reverse=True)  # "min"/"ms" before "m" and "s"
_PER_SECOND = {"us": 1e6, "ms": 1e3}
_UNIT_LIST = "us, ms, s, m, h, d"


class DurationError(ValueError):
    """A duration that cannot be read; the message names the text and says why."""


def parse_duration(text: str, default_unit: str = "s") -> float:
    """Seconds in ``text`` (see the module docstring for the grammar).

    Raises :class:`DurationError` for anything else.  Huge finite values are fine (``1e18``:
    for ever, in effect).  ``default_unit`` is the unit of a bare number.
    """
    t = text.strip()
    number, unit = t, default_unit
    for u in _LONGEST_FIRST:
        if t.endswith(u) and t[:-len(u)].strip():
            number, unit = t[:-len(u)].rstrip(), u
            break
    try:
        if "_" in number:  # float() takes "1_0"; no duration syntax does
            raise ValueError(number)
        # divide for the sub-second units: 5us is 5e-06 exactly as Python writes it
        value = float(number) / _PER_SECOND[unit] if unit in _PER_SECOND \
            else float(number) * UNITS[unit]
    except ValueError:
        raise DurationError(f"invalid duration {text!r}: not a number (optionally with a unit: "
                            f"{_UNIT_LIST})") from None
    if value != value or value < 0:
        raise DurationError(f"invalid duration {text!r}: must be >= 0")
    if value == float("inf"):
        raise DurationError(f"invalid duration {text!r}: must be a finite number of seconds")
    return value + 0.0  # -0.0 -> 0.0
