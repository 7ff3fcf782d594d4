"""Does a Prometheus scrape every second slow ``exithand lowmem``'s decisions?

One process holds what the daemon holds with ``--metrics``: a :class:`LowmemMetrics` registry
served by ``prometheus_client``'s HTTP thread.  Its main thread makes decisions back to back as
the daemon's ``step`` does (read the memory figures and the per-CPU free lists, publish them to
the metrics, list the candidates with their ``/proc`` files and sort them) and times each one.
Phases alternate (``--phase`` seconds each, interleaved so load hits both alike): no scraper,
then a scraper process fetching ``/metrics`` every second (what Prometheus does at
``scrape_interval: 1s``), then one fetching every 50 ms (20 times more, to make any effect
visible).  Reported: median and 95th percentile decision time per phase kind.

    sudo python3 bench/lowmem_scrape.py [--phase 2] [--cycles 6]
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import time

from _common import SRC, machine, pct, table, write_json

sys.path.insert(0, str(SRC))

from exithand.lowmem._meminfo import SystemMemory, pcp_bytes
from exithand.lowmem._victims import Policy, candidates
from exithand.obs.exporter import Exporter
from exithand.obs.metrics import LowmemMetrics

SCRAPER = """\
import sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
while True:
    urllib.request.urlopen(url).read()
    time.sleep(every)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", type=float, default=2.0)
    ap.add_argument("--cycles", type=int, default=6)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = LowmemMetrics()
    ex = Exporter(m.registry, str(port), None)
    ex.start()
    src, policy = SystemMemory(), Policy()
    url = f"http://127.0.0.1:{port}/metrics"
    times: dict[str, list[float]] = {"none": [], "1s": [], "50ms": []}
    scrapes = {"1s": 1.0, "50ms": 0.05}
    # started once and paused (SIGSTOP) outside their phases: no interpreter start-up in a phase
    scrapers = {k: subprocess.Popen([sys.executable, "-c", SCRAPER, url, str(every)])
                for k, every in scrapes.items()}
    time.sleep(1.0)
    for p in scrapers.values():
        p.send_signal(signal.SIGSTOP)
    try:
        for _ in range(a.cycles):
            for kind in times:
                scraper = scrapers.get(kind)
                if scraper is not None:
                    scraper.send_signal(signal.SIGCONT)
                end = time.monotonic() + a.phase
                while time.monotonic() < end:
                    t0 = time.perf_counter()
                    mem = src.read()
                    pcp = pcp_bytes()
                    m.sample(available=mem.available, total=mem.total,
                             swap_free=mem.swap_free, credit=pcp)
                    candidates(policy)
                    times[kind].append((time.perf_counter() - t0) * 1e3)
                if scraper is not None:
                    scraper.send_signal(signal.SIGSTOP)
    finally:
        for p in scrapers.values():
            p.kill()
            p.wait()
        ex.close()
    ref = statistics.median(times["none"])
    rows = [[k, len(v), statistics.median(v), pct(v, 95), statistics.median(v) / ref]
            for k, v in times.items()]
    print(f"lowmem decisions back to back, phases of {a.phase} s x {a.cycles} cycles")
    print(table(["scrape every", "decisions", "median ms", "p95 ms", "ratio"], rows))
    write_json("lowmem_scrape", {"machine": machine(), "ms": times})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
