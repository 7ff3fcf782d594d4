"""The layer rules of docs/architecture.md, read from the source (every import, at any depth).

* the kernel band (``exithand._kernel``) imports nothing of exithand outside itself;
* the faces (``exithand._cmd`` with its peer faces, ``exithand.fs``, ``exithand.lowmem``) import
  only public names: ``exithand`` (names not starting with ``_``), ``exithand.procfs``,
  ``exithand.duration``, and
  modules of the faces' packages (their own, or another face's: ``exithand mount`` and
  ``exithand lowmem`` are CLI commands that start the fs and lowmem faces).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import SRC

PKG = Path(SRC) / "exithand"


# Public modules besides the package itself (documented in README and docs/architecture.md).
_PUBLIC_MODULES = {"exithand.procfs", "exithand.duration"}

def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, mod: str = "") -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, names imported from it) for every import in ``path`` (the
    module ``mod``, by default the one ``path`` is under ``src``)."""
    mod = mod or _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target, [a.name for a in node.names]))
    return out


def _ours(target: str) -> bool:
    return target == "exithand" or target.startswith("exithand.")


_KERNEL = sorted((PKG / "_kernel").glob("*.py"))


@pytest.mark.parametrize("path", _KERNEL, ids=lambda p: p.stem)
def test_kernel_band_imports_nothing_above_it(path: Path) -> None:
    bad = []
    for line, target, names in _imports(path):
        if not _ours(target):
            continue
        if target == "exithand._kernel":
            continue  # ``from . import x``: a sibling (checked by its own name below)
        if not target.startswith("exithand._kernel."):
            bad.append(f"{path.name}:{line}: {target} {names}")
    assert not bad, bad


_FACES = {
    "cmd": ("exithand._cmd", sorted((PKG / "_cmd").rglob("*.py"))),
    "fs": ("exithand.fs", sorted((PKG / "fs").rglob("*.py"))),
    "lowmem": ("exithand.lowmem", sorted((PKG / "lowmem").rglob("*.py"))),
    "obs": ("exithand.obs", sorted((PKG / "obs").rglob("*.py"))),
}

_FACE_PACKAGES = tuple(own for own, _ in _FACES.values())


def _private_uses(face: str) -> list[str]:
    files = _FACES[face][1]
    bad = []
    for path in files:
        for line, target, names in _imports(path):
            if not _ours(target) or any(target == p or target.startswith(p + ".")
                                        for p in _FACE_PACKAGES):
                continue  # its own package, or another face (the CLI starts fs and lowmem)
            if target in _PUBLIC_MODULES:
                continue
            if target == "exithand" and all(not n.startswith("_") for n in names):
                continue
            bad.append(f"{path.relative_to(PKG)}:{line}: {target} {names}")
    return bad


@pytest.mark.parametrize("face", sorted(_FACES))
def test_faces_import_only_public_names(face: str) -> None:
    bad = _private_uses(face)
    assert not bad, "\n".join(bad)


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The import reader resolves relative imports: a kernel module reaching up, and a face
    importing a private core module, are both seen."""
    probe = tmp_path / "probe.py"
    probe.write_text("from .. import _identity\nfrom . import procfs\n"
                     "from ...exithand import _stream\nimport exithand._handle\n")
    got = _imports(probe, "exithand._kernel.probe")
    assert (1, "exithand", ["_identity"]) in got
    assert (2, "exithand._kernel", ["procfs"]) in got
    assert (4, "exithand._handle", []) in got
    face = tmp_path / "face.py"
    face.write_text("from .. import _stream\nfrom .. import procfs, Error\nfrom . import x\n")
    got = _imports(face, "exithand.fs.face")
    assert got[0] == (1, "exithand", ["_stream"]) and got[1] == (2, "exithand", ["procfs", "Error"])
    assert got[2] == (3, "exithand.fs", ["x"])


def _builds_proc_paths(path: Path) -> bool:
    """Does the code (not the docstrings) of ``path`` build a per-process /proc path:
    ``f"/proc/{pid}..."`` or a ``"/proc/self/..."`` / ``"/proc/thread-self/..."`` literal?"""
    tree = ast.parse(path.read_text())
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)
            and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and len(node.values) > 1:
            first, second = node.values[0], node.values[1]
            if isinstance(first, ast.Constant) and first.value == "/proc/" \
                    and isinstance(second, ast.FormattedValue):
                return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs \
                and node.value.startswith(("/proc/self/", "/proc/thread-self/")):
            return True
    return False


_ONE_READER = {"_kernel/procfs.py"}


def test_only_procfs_builds_per_process_proc_paths() -> None:
    """Outside fs/ and lowmem/, only the one reader builds /proc/<pid>/... paths."""
    found = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
             if p.relative_to(PKG).parts[0] not in ("fs", "lowmem") and _builds_proc_paths(p)}
    assert found == _ONE_READER


@pytest.mark.xfail(reason="k17-faces converts fs/ and lowmem/ to exithand.procfs (issue 17 "
                   "part B); the lead removes this mark at merge", strict=False)
def test_at_most_three_modules_build_per_process_proc_paths() -> None:
    found = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if _builds_proc_paths(p))
    assert len(found) <= 3, found


def test_path_builder_detector_sees_both_forms(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text('"""Reads /proc/self/status."""\nx = f"/proc/{pid}/stat"\n')
    b = tmp_path / "b.py"
    b.write_text('"""Reads /proc/self/status."""\nx = "/proc/meminfo"\n')
    c = tmp_path / "c.py"
    c.write_text('x = open("/proc/self/mountinfo")\n')
    assert _builds_proc_paths(a) and not _builds_proc_paths(b) and _builds_proc_paths(c)


@pytest.mark.parametrize("path", _KERNEL, ids=lambda p: p.stem)
def test_each_kernel_module_imports_alone(path: Path) -> None:
    """Imported first in a fresh interpreter, each kernel-band module loads, and the public
    ``exithand.procfs`` with it: no order-dependent circle with the core above."""
    import os
    import subprocess
    import sys

    mod = _module_name(path)
    res = subprocess.run([sys.executable, "-c", f"import {mod}; import exithand.procfs"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert res.returncode == 0, res.stderr
