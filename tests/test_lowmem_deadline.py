"""The low-memory ledger's one deadline rule (``t_kill + grace + limit``), as every rule that
uses it sees it: blocking decisions (kill_timeout), crediting and keeping a stuck victim
(stuck_after).  Pure bookkeeping: no process is needed (the kills are tested in test_lowmem)."""

from __future__ import annotations

import pytest

from exithand.lowmem._ledger import KillRecord, Ledger
from exithand.lowmem._victims import Candidate

MIB = 1 << 20


def _stuck_record(led: Ledger) -> KillRecord:
    v = Candidate(4242, 1, "hog", 900, 0, 900, 100 * MIB, 0)
    r = KillRecord(v, None, t_kill=100.0, pcp0=0, trigger="test", finished=True)
    led.add(r)
    return r


@pytest.mark.timeout(10)
def test_grace_delays_every_deadline_alike() -> None:
    led = Ledger(kill_timeout=1.0, hold_off=0.0, credit_window=10.0, stuck_after=5.0,
                 grace=2.0)
    r = _stuck_record(led)
    # blocking decisions: until t_kill + grace + kill_timeout (103), not t_kill + kill_timeout
    assert led.blocking(r, 102.9) and led.waiting(102.9) is not None
    assert not led.blocking(r, 103.0) and led.waiting(103.0) is None
    # crediting what a stuck victim has left, and keeping its record: t_kill + grace + stuck
    assert led.credit(106.9, 0) == 100 * MIB
    assert led.expired(106.9) == [] and led.records == [r]
    assert led.credit(107.0, 0) == 0
    assert led.past_deadline(r, 107.0, led.stuck_after)
    assert led.expired(107.0) == [r] and not led.records


@pytest.mark.timeout(10)
def test_a_freed_victim_blocks_nothing() -> None:
    led = Ledger(kill_timeout=1.0, hold_off=0.0, credit_window=10.0, stuck_after=5.0,
                 grace=2.0)
    r = _stuck_record(led)
    led.mark_dead(r, 100.5)
    assert not led.blocking(r, 100.5)
    assert not led.past_deadline(r, 100.5, led.kill_timeout)  # the deadline itself is later
