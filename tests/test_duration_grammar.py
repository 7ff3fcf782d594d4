"""One duration grammar (issue 17 item 3): a table of inputs run through every time option of
every command, lowmem's flags and its config file, all agreeing with
:func:`exithand.duration.parse_duration` on the value and, for a bad input, on the error text.

Before, ``_cmd/_duration`` took ``1h`` and refused ``5us`` while ``lowmem/_units`` did the
reverse: the ``5us``/``1h``/``1d``/``1e3`` rows below fail on one side or the other of that
split.  The peer faces (``pwait -t``, ``waitpid -t``) keep their peers' own rules on purpose
and are not in the table.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Optional

import pytest

from conftest import run_cli
from exithand._cmd import _duration as cli_duration
from exithand.cli import build_parser
from exithand.duration import DurationError, parse_duration
from exithand.lowmem import _config
from exithand.lowmem._psi import parse_psi
from exithand.lowmem._units import SettingError
from exithand.lowmem._units import parse_duration as lowmem_duration

pytestmark = pytest.mark.timeout(60)

GOOD = [("0", 0.0), ("1", 1.0), ("1.5", 1.5), (".5", 0.5), ("5us", 5e-6), ("250us", 0.00025),
        ("250ms", 0.25), ("2s", 2.0), ("2 s", 2.0), ("1.5m", 90.0), ("2min", 120.0),
        ("1h", 3600.0), ("1d", 86400.0), ("1e3", 1000.0), (" 3s ", 3.0), ("0ms", 0.0),
        ("-0", 0.0)]
BAD = ["-1", "-1s", "nan", "inf", "1e309", "x", "1x", "5ns", "ms", "1_0", "", "1 d s", "1.2.3"]

# (command, option, the namespace attribute, the extra arguments the command needs, and what
# the option makes of the parsed seconds: -t 0 is "no timeout")
_NO_TIMEOUT: Callable[[float], Optional[float]] = lambda v: v if v > 0 else None  # noqa: E731
_SAME: Callable[[float], Optional[float]] = lambda v: v  # noqa: E731
CLI_OPTIONS = [
    ("wait", "-t", "timeout", ["1"], _NO_TIMEOUT),
    ("watch", "-t", "timeout", [], _NO_TIMEOUT),
    ("kill", "-t", "timeout", ["1"], _NO_TIMEOUT),
    ("kill", "--grace", "grace", ["1"], _SAME),
    ("mount", "--linger", "linger", ["/mnt"], _SAME),
]
LOWMEM_KEYS = ["grace", "kill-timeout", "hold-off", "credit-window", "stuck-after",
               "interval", "duration", "report-interval"]


def _expected_error(text: str) -> str:
    with pytest.raises(DurationError) as ei:
        parse_duration(text)
    return str(ei.value)


def test_one_function() -> None:
    # the CLI's and lowmem's names are the library's one grammar, not copies of it
    assert cli_duration.parse_duration is parse_duration
    assert cli_duration.DurationError is DurationError


@pytest.mark.parametrize("text, seconds", GOOD)
def test_library_table(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=0)


@pytest.mark.parametrize("text", BAD)
def test_library_refuses(text: str) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("cmd, opt, dest, rest, conv", CLI_OPTIONS,
                         ids=[f"{c} {o}" for c, o, *_ in CLI_OPTIONS])
def test_every_cli_time_option_agrees(cmd: str, opt: str, dest: str, rest: list[str],
                                      conv: Callable[[float], Optional[float]],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser(cmd)
    for text, seconds in GOOD:
        if opt == "--linger" and seconds > 3600:
            continue  # --linger is capped at 1h (its own range check, tested below)
        ns = parser.parse_args([cmd, f"{opt}={text}", *rest])
        assert getattr(ns, dest) == conv(parse_duration(text)), (text, getattr(ns, dest))
    for text in BAD:
        with pytest.raises(SystemExit) as ei:
            parser.parse_args([cmd, f"{opt}={text}", *rest])
        assert ei.value.code == 2
        err = capsys.readouterr().err
        assert _expected_error(text) in err, (text, err)


def test_linger_range() -> None:
    parser = build_parser("mount")
    assert parser.parse_args(["mount", "--linger", "1h", "/mnt"]).linger == 3600.0
    with pytest.raises(SystemExit):
        parser.parse_args(["mount", "--linger", "61m", "/mnt"])


@pytest.mark.parametrize("key", LOWMEM_KEYS)
def test_every_lowmem_setting_agrees_as_flag_and_in_the_config_file(key: str,
                                                                    tmp_path: Path) -> None:
    attr = key.replace("-", "_")
    toml = tmp_path / "lowmem.toml"
    for text, seconds in GOOD:
        if key == "interval" and seconds == 0:
            continue  # interval must be > 0 (its own rule)
        flag = _config.build_config({}, {key: text, "mem-min": "10%"})
        toml.write_text(f'mem-min = "10%"\n{key} = "{text}"\n')
        from_file = _config.build_config(_config.load_toml(str(toml)), {})
        assert getattr(flag, attr) == getattr(from_file, attr) == parse_duration(text), text
    for text in BAD:
        want = f"{key}: {_expected_error(text)}"
        with pytest.raises(SettingError) as ei:
            _config.build_config({}, {key: text, "mem-min": "10%"})
        assert str(ei.value) == want
        toml.write_text(f'mem-min = "10%"\n{key} = "{text}"\n')
        with pytest.raises(SettingError) as ei:
            _config.build_config(_config.load_toml(str(toml)), {})
        assert str(ei.value) == want


def test_lowmem_numbers_and_psi_units() -> None:
    # a TOML number is in the setting's default unit; a PSI bare number is in microseconds
    assert lowmem_duration(2, "x") == 2.0 and lowmem_duration(1.5, "x") == 1.5
    with pytest.raises(SettingError, match="x: invalid duration"):
        lowmem_duration(-1, "x")
    assert parse_psi("some 150000 2s", privileged=False).stall == pytest.approx(0.15)
    assert parse_psi("some 150ms 2000000us", privileged=False).window == 2.0
    with pytest.raises(SettingError, match=r"psi stall: invalid duration '1x': not a number"):
        parse_psi("some 1x 2s", privileged=False, what="psi")


# end to end: each command exits 2 with the same text for a bad duration, and takes 5us/1h
@pytest.mark.parametrize("argv", [
    ["wait", "-t", "5ns", "1"], ["watch", "-t", "5ns"], ["kill", "--grace", "5ns", "1"],
    ["mount", "--linger", "5ns", "/nonexistent"],
    ["lowmem", "--mem-min", "10%", "--kill-timeout", "5ns"],
], ids=lambda a: " ".join(a[:2]))
def test_commands_exit_2_with_the_grammar_error(argv: list[str]) -> None:
    res = run_cli(*argv)
    assert res.returncode == 2, res.stderr
    assert _expected_error("5ns") in res.stderr, res.stderr


def test_wait_fast_path_takes_us_and_hours() -> None:
    # the plain `wait` command line is parsed without argparse: the same grammar there too
    gone = subprocess.Popen(["true"])
    gone.wait()
    for t in ("5us", "1h"):  # a reaped pid: the wait ends at once, whatever the timeout
        res = run_cli("wait", "-t", t, str(gone.pid))
        assert res.returncode != 2 and "invalid duration" not in res.stderr, res.stderr
    assert run_cli("wait", "-t", "5ns", "1").returncode == 2
