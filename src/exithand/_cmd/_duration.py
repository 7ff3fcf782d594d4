"""Durations on the command line: the one grammar of :mod:`exithand.duration`, re-exported
under the names the commands import (``1.5``, ``5us``, ``250ms``, ``2s``, ``1.5m``, ``1h``,
``1d``)."""

from __future__ import annotations

from ..duration import UNITS, DurationError, parse_duration

__all__ = ["UNITS", "DurationError", "parse_duration"]
