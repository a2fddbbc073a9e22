#!/usr/bin/env bash
# Checks Models/tenure.pml with spin (Debian's `spin` package; Tools/install-deps.sh
# installs it): the protocol must verify with no error in every scope below,
# exhaustively, and each known-bug variant must fail with a trail.
# docs/safety.md ("The model") says what the model covers and abstracts.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v spin >/dev/null || { echo "model-check: spin is not installed (Tools/install-deps.sh installs it)" >&2; exit 1; }
command -v cc >/dev/null || { echo "model-check: a C compiler is needed (gcc)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/tenure-model-XXXXXX)
trap 'rm -rf "$work"' EXIT
cp Models/tenure.pml Models/fencing.pml "$work/"
cd "$work"

# verify NAME MODEL DEFINES... : builds pan for MODEL with DEFINES and runs it
# exhaustively; prints the state count; returns pan's error count.
verify() {
  local name=$1 model=$2; shift 2
  spin -a "$@" "$model" >/dev/null
  cc -O2 -w -DSAFETY -DCOLLAPSE -o pan pan.c
  local out
  out=$(./pan -m2000000 -w26 2>&1)
  if echo "$out" | grep -q "search depth too small\|max search depth too small"; then
    echo "model-check: $name: the search depth was too small" >&2; exit 1
  fi
  local errors states
  errors=$(echo "$out" | sed -n 's/.*errors: \([0-9]*\).*/\1/p' | head -1)
  states=$(echo "$out" | sed -n 's/^ *\([0-9e+.]*\) states, stored.*/\1/p' | head -1)
  # pan stops at the first error; a search without one must have covered everything.
  if [ "${errors:-1}" = 0 ] && echo "$out" | grep -q "Warning: Search not completed"; then
    echo "model-check: $name: the search did not complete" >&2; echo "$out" >&2; exit 1
  fi
  echo "$name: $states states, $errors errors" >&2
  if [ "${errors:-1}" != 0 ]; then
    spin -t "$@" "$model" 2>&1 | grep -E "assertion violated|^spin: text" | head -2 >&2 || true
  fi
  return "${errors:-1}"
}

passed=0; failed=0
check_holds() { if verify "$@"; then passed=$((passed + 1)); else echo "model-check: FAILED: $1 has errors" >&2; failed=$((failed + 1)); fi; }
check_fails() { if verify "$@"; then echo "model-check: FAILED: $1 verified, but it has a known bug" >&2; failed=$((failed + 1)); else passed=$((passed + 1)); fi; }

# The lease protocol: Disk Paxos per version, the leader's repair, unique
# proposals, late writes, crashes. Each scope is searched exhaustively.
check_holds "protocol, 2 hosts, 1 disk, 2 acquires each, a late write, a crash" tenure.pml -DNH=2 -DND=1 -DOPS=2 -DLATE=1 -DCRASHES=1
check_holds "protocol, 3 hosts, 1 disk, a late write, a crash" tenure.pml -DNH=3 -DND=1 -DOPS=1 -DLATE=1 -DCRASHES=1 -DROUNDS=1
check_holds "protocol, 2 hosts, 3 disks, a late write, a crash" tenure.pml -DNH=2 -DND=3 -DOPS=1 -DLATE=1 -DCRASHES=1 -DROUNDS=1
check_fails "protocol with phase 2 not reading" tenure.pml -DNH=2 -DND=1 -DOPS=1 -DLATE=0 -DCRASHES=0 -DBUG_NO_PHASE2_READ
check_fails "protocol winning by host, not by proposal (seed 920305)" tenure.pml -DNH=2 -DND=1 -DOPS=2 -DLATE=2 -DCRASHES=0 -DBUG_WIN_BY_HOST
# Fencing by time: 8N + W, late renewal writes, lost storage, the watchdog.
check_holds "fencing, W = 2N" fencing.pml -DWTICKS=4
check_holds "fencing, W = 4N" fencing.pml -DWTICKS=8
check_fails "fencing with a takeover after 8N only" fencing.pml -DBUG_NO_W
check_fails "fencing with petting after the loss" fencing.pml -DBUG_PET_AFTER_LOSS
echo "model-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
