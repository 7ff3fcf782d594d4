"""Bad input to the library entry points: a clear exception, never a crash or a wrong answer."""

from __future__ import annotations

import pytest

import exithand

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("text", [
    "\u0661\u0662",   # ARABIC-INDIC DIGITs: isdigit() is true and int() gives 12
    "\u00b2",         # SUPERSCRIPT TWO: isdigit() is true but int() raises
    "1:\u00b2", "1:\u0661", "+5", "0x10", "1e3", "12:", ":12", "", "-", "1:2:3",
])
def test_parse_target_rejects_non_ascii_decimal(text: str) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        exithand.parse_target(text)


def test_parse_target_accepts_plain_forms() -> None:
    assert exithand.parse_target("12") == (12, None)
    assert exithand.parse_target(" 12\n") == (12, None)
    assert exithand.parse_target("12:34") == (12, 34)


def test_parse_target_wants_a_str() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        exithand.parse_target(12)  # type: ignore[arg-type]
