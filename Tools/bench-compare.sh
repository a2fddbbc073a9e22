#!/bin/bash
# Tenure and sanlock side by side on one loop device, in one run, alternating
# (Tools/bench-compare.py does the measuring and prints the table). Needs root.
#
#   Tools/bench-compare.sh [--num-hosts 2000,64] [--rounds 2] [--clients 32] [--cycles 640]
#                          [--io-timeout 10] [--idle-seconds 60] [--takeover] [--json FILE]
#
# Installs sanlock (Debian's package) if missing, builds Tenure in release
# mode, makes a 512 MiB file on /var/tmp behind a loop device, and removes
# both when it ends. sanlock's daemon runs without a watchdog, with
# RLIMIT_MEMLOCK made a no-op (sandboxed machines refuse to raise it).
# --takeover adds the forced-request and host-crash timings (a few minutes:
# a crash takes 8 × io_timeout + 60 s to be judged dead, on both).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then echo "bench-compare.sh: needs root (loop device, daemons); run it with sudo." >&2; exit 2; fi
if ! command -v sanlock >/dev/null || ! /usr/bin/python3 -c 'import sanlock' 2>/dev/null || ! command -v cc >/dev/null; then
  echo "installing sanlock, python3-sanlock and gcc…" >&2
  apt-get install -y -qq --no-install-recommends sanlock python3-sanlock gcc >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends sanlock python3-sanlock gcc >/dev/null; }
fi
echo "building tenure (release)…" >&2
(cd "$root" && swift build -c release --product tenure >&2)
tenure=$root/.build/release/tenure
work=$(mktemp -d /var/tmp/tenure-bench.XXXXXX)
dev=
cleanup() {
  pkill -9 -f "$work/" 2>/dev/null || true
  sleep 0.5
  [ -n "$dev" ] && losetup -d "$dev" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cc -shared -fPIC -o "$work/setrlimit-shim.so" "$root/Tools/bench/setrlimit-shim.c" -ldl
truncate -s 512M "$work/disk.img"
dev=$(losetup -f --show "$work/disk.img")
echo "device $dev ($(nproc) cores, $(uname -r))" >&2
/usr/bin/python3 "$root/Tools/bench-compare.py" --device "$dev" --tenure "$tenure" --work "$work" "$@"
