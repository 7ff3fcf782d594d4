#!/usr/bin/env bash
# Install exithand (with the filesystem extra) and run the main job: waiting for processes that
# are not ours from Python, from the CLI, and through the exithand filesystem.
# Run as root on Debian 12 (Python >= 3.9).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# fuse3 + libfuse3-dev + pkg-config: pyfuse3 (exithand[fs]) builds against libfuse3
apt-get install -y -qq fuse3 libfuse3-dev pkg-config gcc >/dev/null
modprobe fuse 2>/dev/null || true
python3 -m pip install -q '.[fs]'
python3 examples/demo.py
echo
echo "== 4. the exithand filesystem: cat MNT/PID/exithand returns when PID dies"
mnt=$(mktemp -d /tmp/exithand-demo.XXXXXX)
EXITHAND="python3 -m exithand" sh examples/fs_demo.sh "$mnt"
rmdir "$mnt"
