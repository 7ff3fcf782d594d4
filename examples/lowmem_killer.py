#!/usr/bin/env python3
"""The low-memory killer example grew into a daemon: ``exithand lowmem`` (exithand.lowmem).

This file is kept as a thin caller so old instructions still work; every argument goes to
``exithand lowmem`` (see ``exithand lowmem --help`` and the README).  For instance, scoped to
one cgroup so it cannot hit anything else::

    python3 examples/lowmem_killer.py --scope /sys/fs/cgroup/memory/job \\
        --psi 'some 10ms 2s' --max-kills 3 --json
"""

from __future__ import annotations

import sys

from exithand.cli import main

if __name__ == "__main__":
    sys.exit(main(["lowmem", *sys.argv[1:]]))
