#!/bin/bash
# Tenure and sanlock side by side on one loop device, in one run, alternating
# (Tools/bench-compare.py does the measuring and prints the table). Needs root.
#
#   Tools/bench-compare.sh [--num-hosts 2000,1000,250,64] [--rounds 2] [--clients 32] [--cycles 640]
#                          [--io-timeout 10] [--idle-seconds 60] [--takeover] [--json FILE]
#
# Installs sanlock (Debian's package) if missing and builds the LD_PRELOAD shim
# that lets sanlock's daemon start without raising RLIMIT_MEMLOCK (sandboxes
# refuse it); sanlock's daemon runs without a watchdog. --takeover adds the
# forced-request and host-crash timings (a few minutes: a crash takes
# 8 × io_timeout + 60 s to be judged dead, on both).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" = 0 ] && { ! command -v sanlock >/dev/null || ! /usr/bin/python3 -c 'import sanlock' 2>/dev/null || ! command -v cc >/dev/null; }; then
  echo "installing sanlock, python3-sanlock and gcc…" >&2
  apt-get install -y -qq --no-install-recommends sanlock python3-sanlock gcc >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends sanlock python3-sanlock gcc >/dev/null; }
fi
exec "$root/Tools/bench/with-loop-device.sh" 512M "$root/Tools/bench-compare.py" "$@"
