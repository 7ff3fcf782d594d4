"""argparse pieces shared by the subcommands' parsers (not imported by the peer faces)."""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Optional


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, sized from ``$COLUMNS`` or the terminal without importing
    shutil (argparse imports it for every parser it builds, a good part of a CLI start)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: Optional[int] = None) -> None:
        if width is None:
            try:
                width = int(os.environ.get("COLUMNS", "0"))
            except ValueError:
                width = 0
            if width <= 0:
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno()).columns \
                        if sys.__stdout__ is not None else 80
                except (OSError, ValueError):
                    width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, width)
