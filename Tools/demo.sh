#!/usr/bin/env bash
# Tenure's main job on one machine: two hosts (two daemons with their own run
# dirs and host ids) share a lease file, as they would share a SAN LUN.
#
#   Tools/demo.sh [TENURE_BINARY]     (default: .build/debug/tenure)
#
# 1. lays out a lockspace and 4 resource leases in a local file;
# 2. host A and host B join the lockspace;
# 3. a process on host A holds lease R0 (lver 1, its fencing token);
# 4. host B is refused: R0 is held by a live host;
# 5. host B forces a request: host A's daemon kills its holder and gives R0 up;
# 6. a process on host B holds R0 with lver 2;
# 7. both daemons shut down, releasing everything.
# Everything it makes lives in a temporary folder under /var/tmp, removed at the end.
set -euo pipefail
tenure=${1:-.build/debug/tenure}
[ -x "$tenure" ] || { echo "demo: $tenure not found; build first (swift build)" >&2; exit 1; }
tenure=$(cd "$(dirname "$tenure")" && pwd)/$(basename "$tenure")
work=$(mktemp -d /var/tmp/tenure-demo.XXXXXX)
leases=$work/leases.img
pids=()
cleanup() {
  for dir in "$work/hostA" "$work/hostB"; do
    [ -S "$dir/tenure.sock" ] && "$tenure" client shutdown --force --run-dir "$dir" >/dev/null 2>&1 || true
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

step "Lay out a lockspace and 4 resource leases in $leases (io_timeout 1 s)"
"$tenure" direct format --lockspace demo --path "$leases" --create 8M --resources 4 --io-timeout 1 --max-hosts 16

step "Start two daemons: host A and host B (no watchdog: a demo on one machine)"
for host in A B; do
  "$tenure" daemon --run-dir "$work/host$host" --host-name "host$host" --watchdog none --watchdog-fire 4 --io-timeout 1 \
    --log-file "$work/host$host.log"
done

step "Both join the lockspace (the delta-lease algorithm: about 2 s each)"
"$tenure" client add-lockspace -s "demo:1:$leases:0" --run-dir "$work/hostA" &
"$tenure" client add-lockspace -s "demo:2:$leases:0" --run-dir "$work/hostB"
wait

step "A process on host A holds R0; its lver is its fencing token"
"$tenure" client hold -r "demo:R0:$leases:1M" --run-dir "$work/hostA" > "$work/holderA.out" &
holderA=$!
pids+=("$holderA")
disown "$holderA"
for _ in $(seq 50); do [ -s "$work/holderA.out" ] && break; sleep 0.1; done
echo "host A, pid $holderA holds: $(cat "$work/holderA.out")"

step "Host B tries to take R0"
if "$tenure" client hold -r "demo:R0:$leases:1M" --run-dir "$work/hostB" --seconds 1; then
  echo "demo: host B got a lease host A holds: this must never happen" >&2; exit 1
fi

step "Host B forces a request for R0: host A's daemon kills the holder and frees R0"
start=$(date +%s.%N)
"$tenure" client request -r "demo:R0:$leases:1M" --force --run-dir "$work/hostB"
while kill -0 "$holderA" 2>/dev/null; do sleep 0.05; done
"$tenure" client hold -r "demo:R0:$leases:1M" --run-dir "$work/hostB" > "$work/holderB.out" &
pids+=($!)
disown $!
for _ in $(seq 100); do [ -s "$work/holderB.out" ] && break; sleep 0.05; done
echo "host B holds: $(cat "$work/holderB.out") ($(python3 -c "print(f'{$(date +%s.%N) - $start:.2f}')") s after the request)"

step "What is on the disk (sanlock direct dump would show the same)"
"$tenure" direct dump "$leases"

step "What host B's daemon says"
"$tenure" client status --run-dir "$work/hostB"
echo
