#!/bin/bash
# Shared by the bench and scale tools: builds tenure and tenured (release), makes a sparse
# file of SIZE on /var/tmp behind a loop device, runs SCRIPT with
# --tenure BIN --device DEV --work DIR and the remaining arguments, and removes
# the device, the file and every process started from DIR when it ends.
#
#   Tools/bench/with-loop-device.sh SIZE SCRIPT [ARGS…]
set -euo pipefail
size=$1 script=$2
shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ "$(id -u)" != 0 ]; then echo "$(basename "$script"): needs root (loop device, daemons); run it with sudo." >&2; exit 2; fi
echo "building tenure and tenured (release)…" >&2
(cd "$root" && swift build -c release --product tenure >&2 && swift build -c release --product tenured >&2)
work=$(mktemp -d /var/tmp/tenure-bench.XXXXXX)
dev=
cleanup() {
  pkill -9 -f "$work/" 2>/dev/null || true
  sleep 0.5
  [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
truncate -s "$size" "$work/disk.img"
dev=$(losetup -f --show "$work/disk.img")
echo "device $dev over $work/disk.img ($(nproc) cores, kernel $(uname -r))" >&2
export TENURE_BENCH_WORK=$work
/usr/bin/python3 "$script" --tenure "$root/.build/release/tenure" --device "$dev" --work "$work" "$@"
