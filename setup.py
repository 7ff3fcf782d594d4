"""Build hook: everything else is in pyproject.toml.

Man pages and bash/zsh/fish completions are generated from the argparse definitions at build
time (tools/cli_docs.py, never imported at run time) and installed as data files under the
installation prefix: ``share/man/man1``, ``share/bash-completion/completions``,
``share/zsh/site-functions`` and ``share/fish/vendor_completions.d``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tools"))
import cli_docs  # noqa: E402

OUT = Path("build") / "cli-docs"
files = cli_docs.generate(HERE / OUT)
data_files = [
    (target, sorted(str(OUT / kind / p.name) for p in files if p.parent.name == kind))
    for kind, target in cli_docs.INSTALL_DIRS.items()
]
setup(data_files=data_files)
