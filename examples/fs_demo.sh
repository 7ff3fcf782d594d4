#!/bin/sh
# The exithand filesystem in one minute (run as root: the mount uses allow_other).
#
#   sh examples/fs_demo.sh [MOUNTPOINT]          default /run/exithand
#
# Set EXITHAND to the command to run (default: exithand, or python3 -m exithand).
set -eu
MNT=${1:-/run/exithand}
EXITHAND=${EXITHAND:-$(command -v exithand || echo "python3 -m exithand")}

mkdir -p "$MNT"
$EXITHAND mount "$MNT"                       # background daemon; returns once mounted
trap '$EXITHAND umount "$MNT"' EXIT

sh -c 'sleep 1; exit 7' &                    # any process; it need not be our child
pid=$!
ls "$MNT" | grep -qx "$pid" && echo "$MNT lists $pid"
exec 3< "$MNT/$pid/exitstatus"               # opening pins *this* process (not the number)

echo "cat $MNT/$pid/exithand  (blocks until $pid is dead)"
cat "$MNT/$pid/exithand" && echo "$pid is gone"
cat <&3                                      # -> "<pid>: exited with status 7."
exec 3<&-
