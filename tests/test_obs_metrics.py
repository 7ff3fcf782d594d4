"""``--metrics`` / ``--metrics-textfile`` (issue 18): a real Prometheus server scrapes
``exithand watch --metrics`` and answers through its query API; the rules file passes
``promtool check rules``; the textfile is written atomically; bad addresses and paths are clear
errors at start (exit 2 or 1), never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from obshelp import Watch, core_dumps_to_cwd, free_port, http_get, run_exits, wait_for

from conftest import require, run_cli

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "contrib" / "prometheus" / "exithand.rules.yml"
pytest.importorskip("prometheus_client")


@pytest.fixture
def connector(backend_availability: dict[str, tuple[bool, str]]) -> None:
    require("proc_connector")


@pytest.mark.timeout(60)
def test_promtool_checks_the_rules_file() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    r = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                       text=True, timeout=50)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = json.loads(http_get(url))
        assert body["status"] == "success", body
        return list(body["data"]["result"])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, int]]:
    """A real Prometheus on 127.0.0.1 (scrape and evaluation every second, our rules loaded)
    scraping 127.0.0.1:PORT, where the test then serves ``watch --metrics``."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    d = tmp_path_factory.mktemp("prom")
    target, web = free_port(), free_port()
    (d / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}\n"
        f"rule_files: [{json.dumps(str(RULES))}]\n"
        "scrape_configs:\n"
        "  - job_name: exithand-watch\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n")
    with open(d / "log", "w") as log:
        p = subprocess.Popen([binary, f"--config.file={d / 'prometheus.yml'}",
                              f"--storage.tsdb.path={d / 'data'}",
                              f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
                             stdout=subprocess.DEVNULL, stderr=log)
    try:
        base = f"http://127.0.0.1:{web}"
        wait_for(lambda: "Ready" in http_get(f"{base}/-/ready") or None, 60,
                 "prometheus ready")
        yield Prometheus(base), target
    finally:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.timeout(120)
def test_prometheus_scrapes_watch_and_counts_exits(connector, prometheus, tmp_path: Path) -> None:
    prom, port = prometheus
    w = Watch("--json", "--comm", "^ehobs_", "--metrics", str(port), "-t", "90")
    try:
        # the scrape target is up before anything exits (the counters start at 0)
        wait_for(lambda: prom.query('up{job="exithand-watch"} == 1') or None, 30,
                 "the first successful scrape")
        pids = run_exits(tmp_path)
        q = 'exithand_process_exits_total{job="exithand-watch"}'
        want = {("exited", "3", ""), ("exited", "0", ""), ("killed", "", "SIGKILL")}
        dumped = core_dumps_to_cwd()
        want.add(("dumped", "", "SIGSEGV") if dumped else ("killed", "", "SIGSEGV"))

        def series() -> Any:
            got = {(r["metric"]["how"], r["metric"].get("code", ""),
                    r["metric"].get("signal", "")):
                   float(r["value"][1]) for r in prom.query(q)}
            return got if set(got) >= want else None

        got = wait_for(series, 30, "the exits in Prometheus")
        assert set(got) == want, got  # only our processes: --comm applies to the counts
        assert all(v == 1.0 for v in got.values()), got
        lost = prom.query('exithand_events_lost_total{job="exithand-watch"}')
        assert [float(r["value"][1]) for r in lost] == [0.0]
        # no free-form labels: nothing names a pid or a command
        text = http_get(f"http://127.0.0.1:{port}/metrics")
        for pid in pids.values():
            assert f'"{pid}"' not in text
        assert "ehobs" not in text
    finally:
        w.stop()


@pytest.mark.timeout(60)
def test_textfile_is_written_atomically(connector, tmp_path: Path) -> None:
    path = tmp_path / "exithand.prom"
    w = Watch("--json", "--comm", "^ehobs_", "--metrics-textfile", str(path), "-c", "4",
              "-t", "40")
    try:
        assert path.exists()  # written once at start, before 'listening'
        first = path.read_text()
        assert "exithand_process_exits_total" in first and 'how="exited"' not in first
        run_exits(tmp_path)
        rc, events, err = w.finish(40)
    finally:
        w.stop()
    assert rc == 0, err
    assert len([e for e in events if e["event"] == "exit"]) == 4
    from prometheus_client.parser import text_string_to_metric_families
    fams = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    exits = fams["exithand_process_exits"]
    assert sum(s.value for s in exits.samples) == 4
    assert {s.labels["how"] for s in exits.samples} <= {"exited", "killed", "dumped"}
    # only the final file: no temporary left behind in the directory
    assert sorted(p.name for p in tmp_path.iterdir() if "prom" in p.name) == ["exithand.prom"]


@pytest.mark.parametrize("cmd", ["watch", "lowmem"])
@pytest.mark.parametrize("value", ["99999", "0", "host:", ":9900", "::1:9900", "ab"])
def test_bad_metrics_address_is_a_usage_error(cmd: str, value: str) -> None:
    extra = ["-t", "1"] if cmd == "watch" else ["--dry-run", "--duration", "1"]
    r = run_cli(cmd, "--metrics", value, *extra)
    assert r.returncode == 2, r.stderr
    assert "--metrics" in r.stderr and "Traceback" not in r.stderr


def _in_use() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, int(s.getsockname()[1])


@pytest.mark.parametrize("cmd", ["watch", "lowmem"])
def test_port_in_use_and_unbindable_address_exit_1(cmd: str, tmp_path: Path) -> None:
    extra = ["-t", "5"] if cmd == "watch" else ["--dry-run", "--duration", "5",
                                                 "--no-protect-self"]
    s, port = _in_use()
    try:
        r = run_cli(cmd, "--metrics", str(port), *extra)
    finally:
        s.close()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Address already in use" in r.stderr and "Traceback" not in r.stderr
    # 192.0.2.1 (TEST-NET-1) is on no interface here: EADDRNOTAVAIL
    r = run_cli(cmd, "--metrics", "192.0.2.1:9900", *extra)
    assert r.returncode == 1 and "cannot listen" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(cmd, "--metrics", "no-such-host.invalid:9900", *extra)
    assert r.returncode == 1 and "cannot listen" in r.stderr, r.stderr
    # nothing was started: no 'start' event, no 'listening' notice
    assert "start" not in r.stdout and "listening" not in r.stderr


@pytest.mark.parametrize("cmd", ["watch", "lowmem"])
def test_unwritable_textfile_exits_1(cmd: str, tmp_path: Path) -> None:
    extra = ["-t", "5"] if cmd == "watch" else ["--dry-run", "--duration", "5",
                                                 "--no-protect-self"]
    r = run_cli(cmd, "--metrics-textfile", str(tmp_path / "missing" / "x.prom"), *extra)
    assert r.returncode == 1, r.stderr
    assert "cannot write: No such file or directory" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(cmd, "--metrics-textfile", str(tmp_path) + "/", *extra)
    assert r.returncode == 2 and "expected a file path" in r.stderr, r.stderr
    if os.geteuid() == 0:  # a read-only place even for root
        r = run_cli(cmd, "--metrics-textfile", "/proc/exithand.prom", *extra)
        assert r.returncode == 1 and "cannot write" in r.stderr, r.stderr


def test_import_exithand_loads_no_extra() -> None:
    r = subprocess.run([sys.executable, "-c", "import sys, exithand, exithand.cli; "
                        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                        "('prometheus_client', 'jeepney') or m.startswith('exithand.obs')))"],
                       capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_lowmem_config_file_keys_are_checked(tmp_path: Path) -> None:
    if sys.version_info < (3, 11):
        pytest.importorskip("tomli", reason="reading TOML needs Python 3.11+ or tomli")
    bad = tmp_path / "bad.toml"
    bad.write_text('journal = "yes"\n')
    r = run_cli("lowmem", "--config", str(bad), "--dry-run", "--duration", "1")
    assert r.returncode == 2 and "journal: expected true or false" in r.stderr, r.stderr
    bad.write_text("notify-bus = 3\n")
    r = run_cli("lowmem", "--config", str(bad), "--dry-run", "--duration", "1")
    assert r.returncode == 2 and "notify-bus" in r.stderr, r.stderr
    s, port = _in_use()
    try:  # a good file key reaches the exporter: the port in use is found
        bad.write_text(f'metrics = "127.0.0.1:{port}"\n')
        r = run_cli("lowmem", "--config", str(bad), "--dry-run", "--duration", "1")
    finally:
        s.close()
    assert r.returncode == 1 and "Address already in use" in r.stderr, r.stderr
