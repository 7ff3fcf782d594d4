"""``exithand lowmem --metrics-textfile --metrics --journal`` (issue 18) against real kills:
the daemon of ``tests/test_lowmem.py``'s scenarios (a memory cgroup, a private pid namespace)
joined to a real journald's mount namespace; the counters and the journal records must tell
exactly the kills the daemon's own events tell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from obshelp import free_port
from test_lowmem import FAST, freezer, kinds, scenario

# the module-scoped real journald of the journal tests (one more instance for this module)
from test_obs_journal import journald  # noqa: F401

from exithand.obs.journal import MESSAGE_IDS

pytest.importorskip("prometheus_client")


def _metrics(path: Path) -> dict[str, list[Any]]:
    from prometheus_client.parser import text_string_to_metric_families
    return {f.name: f.samples for f in text_string_to_metric_families(path.read_text())}


def _value(fams: dict[str, list[Any]], family: str, sample: str, **labels: str) -> float:
    got = [s.value for s in fams[family] if s.name == sample
           and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(got) == 1, (family, sample, labels, fams.get(family))
    return float(got[0])


@pytest.mark.timeout(120)
def test_kill_counted_and_journaled(journald, tmp_path: Path) -> None:  # noqa: F811
    prom = tmp_path / "lowmem.prom"
    victims = [{"name": "big", "mib": 48}, {"name": "other", "mib": 8}]
    res = scenario(victims, [*FAST, "--duration", "3", "--journal", "--metrics-textfile",
                             str(prom), "--metrics", str(free_port())],
                   plus_mib=24, prefix=journald.enter)
    (kill,) = kinds(res, "kill")
    (freed,) = kinds(res, "freed")
    assert kill["comm"] == "big", res["events"]
    assert not [e for e in res["events"] if e["event"] == "warning"
                and "Stopped" in e.get("message", "")], res["events"]
    fams = _metrics(prom)
    assert _value(fams, "exithand_lowmem_kills", "exithand_lowmem_kills_total",
                  trigger="memory", mode="process") == 1
    assert _value(fams, "exithand_lowmem_freed_bytes", "exithand_lowmem_freed_bytes_total") \
        == kill["memory_bytes"]
    h = "exithand_lowmem_kill_to_freed_seconds"
    assert _value(fams, h, h + "_count") == 1
    assert _value(fams, h, h + "_sum") == pytest.approx(freed["seconds"], abs=1e-6)
    assert 0 < _value(fams, "exithand_lowmem_memory_available_bytes",
                      "exithand_lowmem_memory_available_bytes") <= 256 << 20
    assert _value(fams, "exithand_lowmem_memory_total_bytes",
                  "exithand_lowmem_memory_total_bytes") == 256 << 20
    assert _value(fams, "exithand_lowmem_stuck", "exithand_lowmem_stuck_total") == 0
    # the journal: one kill and one freed record naming the victim, plus the other events
    (jk,) = journald.wait_records(1, f"MESSAGE_ID={MESSAGE_IDS['lowmem_kill']}")
    (jf,) = journald.wait_records(1, f"MESSAGE_ID={MESSAGE_IDS['lowmem_freed']}")
    assert (int(jk["PID"]), jk["COMM"], int(jk["UID"])) == (kill["pid"], "big", kill["uid"])
    assert jk["EXITHAND_EVENT"] == "kill" and jk["EXITHAND_SIGNAL"] == "SIGKILL"
    assert jk["EXITHAND_TRIGGER"] == kill["trigger"] and jk["PRIORITY"] == "5"
    assert jk.get("CGROUP") == kill["cgroup"], (jk, kill)
    assert int(jk["EXITHAND_MEMORY_BYTES"]) == kill["memory_bytes"]
    assert jk["SYSLOG_IDENTIFIER"] == "exithand-lowmem"
    assert int(jf["PID"]) == kill["pid"] and jf["EXITHAND_HOW"] == freed["how"]
    starts = journald.records("SYSLOG_IDENTIFIER=exithand-lowmem", "EXITHAND_EVENT=start")
    assert starts and "MESSAGE_ID" not in starts[-1]


@pytest.mark.timeout(120)
def test_stuck_victim_is_an_event_a_counter_and_a_record(journald, tmp_path: Path) -> None:  # noqa: F811
    prom = tmp_path / "lowmem.prom"
    with freezer() as fz:
        # frozen with SIGKILL pending and no process_mrelease: its memory never comes back
        victims = [{"name": "icy", "mib": 64, "freeze": True}, {"name": "small", "mib": 4}]
        res = scenario(victims, [*FAST, "--no-mrelease", "--stuck-after", "1s",
                                 "--ignore-comm", "^small$", "--duration", "3", "--journal",
                                 "--metrics-textfile", str(prom), "--mem-min", "{limit-1}"],
                       plus_mib=0, freezer_dir=fz, prefix=journald.enter)
    assert [k["comm"] for k in kinds(res, "kill")] == ["icy"], res["events"]
    (stuck,) = kinds(res, "stuck")
    assert stuck["comm"] == "icy" and not kinds(res, "freed")
    fams = _metrics(prom)
    assert _value(fams, "exithand_lowmem_stuck", "exithand_lowmem_stuck_total") == 1
    assert _value(fams, "exithand_lowmem_no_candidate",
                  "exithand_lowmem_no_candidate_total") >= 1
    recs = journald.wait_records(1, f"MESSAGE_ID={MESSAGE_IDS['lowmem_stuck']}")
    assert [int(r["PID"]) for r in recs][-1] == stuck["pid"]
    assert recs[-1]["PRIORITY"] == "4" and recs[-1]["COMM"] == "icy"
