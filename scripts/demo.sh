#!/usr/bin/env bash
# Install exithand (with the filesystem extra) and run the main job: waiting for processes that
# are not ours from Python, from the CLI, and through the exithand filesystem.
# Run as root on Debian 12 (a stock image is fine: Debian's own python3, PEP 668 respected).
#
# Installs system-wide with scripts/install.sh: a venv at /opt/exithand (override with
# EXITHAND_VENV) made from /usr/bin/python3, and /usr/local/bin/exithand (EXITHAND_PREFIX).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
venv=${EXITHAND_VENV:-/opt/exithand}
modprobe fuse 2>/dev/null || true
PATH="$venv/bin:$PATH" "$venv/bin/python" examples/demo.py
echo
echo "== 4. the exithand filesystem: cat MNT/PID/exithand returns when PID dies"
mnt=$(mktemp -d /tmp/exithand-demo.XXXXXX)
EXITHAND="$venv/bin/exithand" sh examples/fs_demo.sh "$mnt"
rmdir "$mnt"
