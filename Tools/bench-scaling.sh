#!/bin/bash
# How Tenure's acquire latency grows with num_hosts and with the hosts holding
# a host id, and its idle device traffic and memory with the leases it holds
# (Tools/bench-scaling.py). Tenure alone; needs root (loop device).
#
#   Tools/bench-scaling.sh [--num-hosts 64,250,1000,2000] [--joined 1,16,64]
#                          [--held 1,100,1000] [--cycles 500] [--idle-seconds 20]
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/Tools/bench/with-loop-device.sh" 1200M "$root/Tools/bench-scaling.py" "$@"
