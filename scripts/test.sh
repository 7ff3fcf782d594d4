#!/usr/bin/env bash
# Install test dependencies and run the whole suite (lint, types, tests). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# fuse3 + libfuse3-dev + pkg-config: build pyfuse3 (exithand[fs]) and mount it in the tests
apt-get install -y -qq util-linux procps gcc fuse3 libfuse3-dev pkg-config >/dev/null
modprobe fuse 2>/dev/null || true
python3 -m pip install -q -e '.[test,fs]'
ruff check src tests
mypy
# what this kernel grants root and nobody (tests that need a refused feature skip, naming it)
python3 tests/kprobe.py
python3 -m pytest -q
