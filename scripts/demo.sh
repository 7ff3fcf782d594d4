#!/usr/bin/env bash
# Install exithand and run the main job: the demo of waiting for processes that are not ours.
# Run as root on Debian 12 (Python >= 3.9).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q .
python3 examples/demo.py
