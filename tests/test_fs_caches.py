"""The per-mount-namespace mountinfo cache (fs/caches.py) against real mount namespaces.

A child in its own mount namespace (``unshare -m``, private propagation) stacks 2,000 tmpfs
mounts (issue 21 tried 10,000 in 6 namespaces; scaled down for a test); the cache must read
that table once, answer every later request without reading it again, and re-read it as soon
as (and only when) the namespace's mount table changes (``poll`` POLLPRI on the held fd).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from exithand.fs.caches import MountinfoCache

pytestmark = pytest.mark.timeout(120)

N = 2000


@pytest.fixture
def mountns(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("making mounts needs root")
    d = tmp_path / "stack"
    d.mkdir()
    script = (f'i=0; while [ $i -lt {N} ]; do mount -t tmpfs -o size=4k t {d} || exit 1; '
              'i=$((i+1)); done; echo ready; read x; '
              f'mount -t tmpfs -o size=4k t {d}; echo changed; read y')
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == "ready\n"
        yield p
    finally:
        p.kill()
        p.wait(timeout=30)
        for f in (p.stdin, p.stdout):
            if f is not None:
                f.close()


def _count(text: str) -> int:
    return sum(1 for line in text.splitlines() if " - tmpfs t " in line)


def test_read_once_then_only_on_change(mountns):
    cache: MountinfoCache[int] = MountinfoCache(_count)
    try:
        assert cache.get(mountns.pid) == N
        for _ in range(200):
            assert cache.get(mountns.pid) == N
        assert cache.reads == 1  # 200 requests, no re-read: nothing changed
        assert cache.get(os.getpid()) is not None  # our own namespace: another entry
        assert cache.reads == 2
        mountns.stdin.write("go\n")
        mountns.stdin.flush()
        assert mountns.stdout.readline() == "changed\n"
        assert cache.get(mountns.pid) == N + 1  # the change is seen at the next request
        assert cache.reads == 3
        assert cache.get(mountns.pid) == N + 1
        assert cache.reads == 3
    finally:
        cache.close()


def test_bounded_and_closes_its_fds(mountns):
    cache: MountinfoCache[int] = MountinfoCache(_count, size=1)
    before = len(os.listdir("/proc/self/fd"))
    assert cache.get(mountns.pid) == N
    assert cache.get(os.getpid()) is not None  # evicts the first (size 1), closing its fd
    assert len(os.listdir("/proc/self/fd")) == before + 1
    cache.close()
    assert len(os.listdir("/proc/self/fd")) == before
    assert cache.get(-5) is None  # no such process: nothing cached, no error
