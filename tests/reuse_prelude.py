"""The start of every script that forces PID reuse for real (run it inside
``unshare --pid --fork --mount-proc``): ``pid_max`` becomes 340 in that namespace (per pid
namespace from Linux 6.14; the script prints ``{"skip": ...}`` and exits where it cannot), and
the counter is walked past RESERVED_PIDS (300) so numbers then wrap within 300..340.

After it, ``pid0, w0`` is a living child blocked on a pipe (close ``w0`` to let it exit),
``spawn()`` makes more of them, and ``reuse_number(a)`` forks until a new child gets the number
``a`` (dead and reaped by then), returning ``(pid, w)``, or prints ``{"fail": ...}`` and exits.
"""

PRELUDE = """
import json, os, signal, sys, time

try:
    with open("/proc/sys/kernel/pid_max", "w") as f:
        f.write("340")
except OSError as e:
    print(json.dumps({"skip": f"cannot set pid_max in a new pid namespace: {e}"}))
    sys.exit(0)

def spawn():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    return pid, w

while True:  # walk the pid counter past RESERVED_PIDS (300): allocation wraps within 300..340
    pid0, w0 = spawn()
    if pid0 > 305:
        break
    os.close(w0)
    os.waitpid(pid0, 0)

def reuse_number(a):
    for _ in range(5000):
        c, c_ctl = spawn()
        if c == a:
            return c, c_ctl
        os.close(c_ctl)
        os.waitpid(c, 0)
    print(json.dumps({"fail": "pid was never reused"}))
    sys.exit(1)
"""
