#!/usr/bin/env bash
# Install test dependencies and run the whole suite (lint, types, tests). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq util-linux procps gcc >/dev/null
python3 -m pip install -q -e '.[test]'
ruff check src tests
mypy
python3 -m pytest -q
