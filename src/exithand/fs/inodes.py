"""FUSE inode numbers for the process directories and their files, with lookup counts.

A directory gets a number that is a multiple of 4 (from 4 up, never reused while known to
the kernel); its files are that number + 1, 2, 3 (see :data:`.names.FILES`).  The root is 1.
The kernel holds a *lookup count* on every inode it learned from ``lookup``/``readdirplus`` and
gives it back with ``forget``; a directory is dropped from the table when its own count and
those of its three files are all zero, so the table stays as small as the kernel's cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

ROOT = 1  # pyfuse3.ROOT_INODE


@dataclass
class DirNode:
    """``<pid>`` or ``<pid>:<inode>``: a number (and maybe a pinned pidfs inode), not a process.

    The process is pinned only when a file is opened.
    """

    name: str
    ino: int
    pid: int
    pin: Optional[int]
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


class InodeTable:
    """Name <-> inode bookkeeping for the top-level directories."""

    def __init__(self) -> None:
        self._by_name: dict[str, DirNode] = {}
        self._by_ino: dict[int, DirNode] = {}
        self._next = 4

    def __len__(self) -> int:
        return len(self._by_ino)

    def dir_for(self, name: str, pid: int, pin: Optional[int]) -> DirNode:
        node = self._by_name.get(name)
        if node is None:
            node = DirNode(name, self._next, pid, pin)
            self._next += 4
            self._by_name[name] = node
            self._by_ino[node.ino] = node
        return node

    def resolve(self, ino: int) -> tuple[Optional[DirNode], int]:
        """``(node, kind)``: kind 0 for the directory itself, 1..3 for its files."""
        return self._by_ino.get(ino & ~3), ino & 3

    def ref(self, ino: int, n: int = 1) -> None:
        node, kind = self.resolve(ino)
        if node is not None:
            node.counts[kind] += n

    def forget(self, ino: int, n: int) -> None:
        node, kind = self.resolve(ino)
        if node is None:
            return
        node.counts[kind] = max(0, node.counts[kind] - n)
        self.drop_if_unused(node)

    def drop_if_unused(self, node: DirNode) -> None:
        if not any(node.counts) and self._by_ino.get(node.ino) is node:
            del self._by_ino[node.ino]
            del self._by_name[node.name]
