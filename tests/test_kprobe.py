"""The suite's raw kernel probes (tests/kprobe.py) and the library's own feature probes agree.

The probes decide which tests skip; they never use exithand.  These tests check (a) that a
refused probe names the refused step, (b) that a probe's answer really gates a test both ways
(forced results, only here), and (c) that exithand's own answer (``exithand.features()``, the
connector's subscription) matches the raw probe as root and as nobody, so a defect of ours can
neither hide behind a skip nor make the library claim what the kernel refuses.
"""

from __future__ import annotations

import json
import os

import kprobe
import pytest

import exithand
from conftest import NOBODY, require, run_as, run_cli

# names the library's exithand.features() shares with the raw probes
SHARED = ["pidfd", "pidfs", "pidfd_info_exit", "process_mrelease", "proc_connector"]
STEPS = ("not in the initial user and pid namespace", "socket(", "bind to the proc connector",
         "send PROC_CN_MCAST_LISTEN", "subscribed, but")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("uid", [None, NOBODY], ids=["self", "nobody"])
def test_connector_probe_names_the_refused_step(uid) -> None:
    p = kprobe.probe("proc_connector", uid)
    assert p.uid == (os.geteuid() if uid is None else uid)
    if p.ok:
        assert p.reason == ""
    else:
        assert p.reason.startswith(STEPS), p


@pytest.mark.timeout(10)
def test_root_may_listen_where_the_kernel_has_the_connector() -> None:
    """As root in the initial namespaces the kernel always lets a listener subscribe (it needs
    CAP_NET_ADMIN at most): the raw probe must say yes, or it is the probe that is wrong."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if os.stat("/proc/self/ns/pid").st_ino != kprobe.PROC_PID_INIT_INO:
        pytest.skip("not in the initial pid namespace")
    p = kprobe.probe("proc_connector")
    assert p.ok, p


@pytest.mark.parametrize("ok", [True, False], ids=["allowed", "refused"])
def test_a_probe_result_gates_a_test_both_ways(monkeypatch, ok: bool) -> None:
    """With a forced result (only in this unit test): an allowing kernel runs the test (no
    skip), a refusing one skips it with the probe's reason and the uid it was probed as."""
    forced = kprobe.Probe("proc_connector", NOBODY, ok, "" if ok else "bind to the proc "
                          "connector group: Operation not permitted")
    monkeypatch.setattr(kprobe, "probe", lambda name, uid=None: forced)
    if ok:
        require("proc_connector", NOBODY)  # must not raise
        assert kprobe.skip_reason(forced) is None
    else:
        with pytest.raises(pytest.skip.Exception) as info:
            require("proc_connector", NOBODY)
        assert str(info.value.msg).endswith(
            f"test_a_probe_result_gates_a_test_both_ways[refused]: kernel refuses proc_connector"
            f" to uid {NOBODY}: bind to the proc connector group: Operation not permitted")


def _library_answers() -> dict[str, tuple[bool, str]]:
    """exithand's own probes, unmemoized (a forked child inherits the parent's memo and the
    root listener), as the user this runs as."""
    from exithand import _features
    from exithand._kernel import netlink as _netlink

    out = {name: fn() for name, fn in _features._PROBES.items() if name != "proc_connector"}
    sock, _filtered, why = _netlink.subscribe_checked(None)
    if sock is not None:
        sock.close()
    out["proc_connector"] = (sock is not None, why)
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("uid", [None, NOBODY], ids=["self", "nobody"])
def test_library_agrees_with_the_raw_probes(uid) -> None:
    if uid is not None and os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    lib = _library_answers() if uid is None else run_as(uid, _library_answers)
    for name in SHARED:
        raw = kprobe.probe(name, uid)
        ok, why = lib[name]
        assert ok == raw.ok, (name, raw, why)
        if not ok and name == "proc_connector" and "bind" in raw.reason:
            # the library names the same step, with the kernel's words
            assert why.startswith("bind to the proc connector group: "), why
            assert raw.reason.split(": ", 1)[1] in why, (raw, why)


@pytest.mark.timeout(60)
def test_info_json_lists_every_feature_probe() -> None:
    res = run_cli("info", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["uid"] == os.getuid()
    feats = {f["name"]: f for f in info["features"]}
    assert sorted(feats) == sorted(SHARED)
    for name in SHARED:
        raw = kprobe.probe(name)
        assert feats[name]["available"] == raw.ok, (feats[name], raw)
        assert (feats[name]["reason"] is None) == raw.ok


@pytest.mark.timeout(60)
def test_info_shows_forced_fallbacks_as_features() -> None:
    from conftest import env_with_src

    res = run_cli("info", "--json", env=env_with_src(EXITHAND_DISABLE="pidfd,connector"))
    assert res.returncode == 0, res.stderr
    feats = {f["name"]: f for f in json.loads(res.stdout)["features"]}
    assert not feats["pidfd"]["available"] and "EXITHAND_DISABLE" in feats["pidfd"]["reason"]
    assert not feats["proc_connector"]["available"]
    assert "EXITHAND_DISABLE=connector" in feats["proc_connector"]["reason"]
    for dependent in ("pidfs", "pidfd_info_exit", "process_mrelease"):
        assert not feats[dependent]["available"], feats[dependent]


def test_features_is_public_and_typed() -> None:
    feats = exithand.features()
    assert [f.name for f in feats] == SHARED
    assert all(isinstance(f, exithand.FeatureInfo) for f in feats)
