"""Start-up stays lean: what each command imports (checked, never timed: the time is measured
by ``bench/startup.py``), and the frozen-record stand-in for dataclasses the start-up path
uses (``exithand/_record.py``)."""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys

import pytest

from conftest import env_with_src
from exithand._kernel.frozen import FrozenInstanceError, dataclass

pytestmark = pytest.mark.timeout(60)

HEAVY = {"asyncio", "typing", "dataclasses", "inspect", "ctypes.util", "subprocess", "shutil",
         "exithand._stream", "exithand._kill", "exithand._backends._connector",
         "exithand._backends._procpoll", "exithand.fs"}


_DRIVER = """
import atexit, runpy, sys
atexit.register(lambda: sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n"))
sys.argv = ["exithand", *sys.argv[1:]]
runpy.run_module("exithand", run_name="__main__", alter_sys=True)
"""


@functools.cache
def _driver_baseline() -> frozenset[str]:
    """What the driver itself imports before exithand runs: on Python 3.9, ``runpy`` pulls in
    ``importlib.util`` and with it ``typing`` and ``re``; those are the interpreter's cost of
    ``-m``, not ours."""
    res = subprocess.run([sys.executable, "-S", "-c",
                          "import atexit, runpy, sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=30)
    return frozenset(res.stdout.split())


def imported_by(*args: str) -> set[str]:
    """Every module a ``python -m exithand ARGS`` run had imported when it exited (from
    ``sys.modules``: ``-X importtime`` does not list modules loaded by
    ``importlib.import_module``, as the CLI loads its commands), less what the driver's own
    ``runpy`` had already imported."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    argv = [a.replace("GONE", str(gone.pid)) for a in args]
    # -S: no site (its .pth files import typing and more before we start)
    res = subprocess.run([sys.executable, "-S", "-c", _DRIVER, *argv], capture_output=True,
                         text=True, env=env_with_src(), timeout=30)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("MODULES ")]
    assert lines, res.stderr
    return set(lines[-1].split()[1:]) - _driver_baseline()


@pytest.mark.parametrize("args", [["pwait", "GONE"], ["waitpid", "-e", "GONE"],
                                  ["pidwait", "-F", "/dev/null"],
                                  ["pidwait", "-x", "no-such-name-eh"]], ids=" ".join)
def test_faces_import_no_heavy_module(args: list[str]) -> None:
    mods = imported_by(*args)
    assert "exithand._handle" in mods or args[0] == "pidwait"
    heavy = HEAVY | {"argparse", "getopt", "gettext"}
    if "-x" not in args:
        heavy.add("re")  # only a pidwait pattern needs regular expressions
    assert not mods & heavy, mods & heavy


@pytest.mark.parametrize("args", [["wait", "-e", "GONE"], ["id", "1"]], ids=" ".join)
def test_subcommands_import_only_what_they_use(args: list[str]) -> None:
    # a plain valid command line is parsed without argparse (errors and --help still use it)
    mods = imported_by(*args)
    assert "exithand._handle" in mods
    assert not mods & (HEAVY | {"argparse"}), mods & (HEAVY | {"argparse"})
    assert not {m for m in mods if m.startswith("exithand._cmd.")} - {
        "exithand._cmd._common", "exithand._cmd._duration", "exithand._cmd._argparse",
        "exithand._cmd.wait", "exithand._cmd.ident"}


# ----- exithand._kernel.frozen ------------------------------------------------------------

@dataclass(frozen=True)
class Rec:
    a: int
    b: str = "x"

    def double(self) -> int:
        return self.a * 2


def test_record_behaves_like_a_frozen_dataclass() -> None:
    r = Rec(1)
    assert (r.a, r.b, r.double()) == (1, "x", 2)
    assert repr(r) == "Rec(a=1, b='x')"
    assert r == Rec(a=1, b="x") and r != Rec(2) and hash(r) == hash(Rec(1, "x"))
    assert {r, Rec(1)} == {r}
    assert Rec.__match_args__ == ("a", "b")
    with pytest.raises(FrozenInstanceError):
        r.a = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del r.b  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(r)) == r
    for bad in (lambda: Rec(), lambda: Rec(1, "y", 3), lambda: Rec(1, c=2),  # type: ignore
                lambda: Rec(1, a=2)):  # type: ignore
        with pytest.raises(TypeError):
            bad()


def test_record_hands_other_uses_to_dataclasses() -> None:
    import dataclasses

    @dataclass(eq=False)  # not frozen: the real dataclasses
    class Plain:
        a: int

    assert dataclasses.is_dataclass(Plain) and Plain(1).a == 1


def test_core_value_types_still_compare_and_pickle() -> None:
    import exithand

    st = exithand.ExitStatus.unknown(5, "why")
    assert st == exithand.ExitStatus(5, None, None, False, False, None, "why")
    assert pickle.loads(pickle.dumps(st)) == st and hash(st) == hash(pickle.loads(
        pickle.dumps(st)))
    ident = exithand.ProcessIdentity(1, 2, 3, "boot")
    assert str(ident) == "1:2" and ident == exithand.ProcessIdentity(1, 2, 3, "boot")
