#!/bin/bash
# Many Tenure daemons on this machine in one lockspace on one loop device, all
# joined and renewing while processes on random hosts contend for the same
# resources; an independent witness checks that no two held one resource at
# once and that lvers only grew. Needs root (loop device).
#
#   Tools/scale-run.sh [--hosts 64] [--resources 8] [--workers 12] [--minutes 3]
#                      [--io-timeout 2] [--hold-ms 100] [--inject-bug ignore-live-owner]
#
# Prints one JSON summary (acquisitions, refusals, overlaps, lost lockspaces,
# worst renewal gaps, daemon memory) and exits 1 if safety or a lockspace failed.
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/Tools/bench/with-loop-device.sh" 256M "$root/Tools/scale-run.py" "$@"
