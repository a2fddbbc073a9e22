#!/usr/bin/env bash
# The checks that need the release build (too slow in debug), run by CI after
# `swift test`:
#   1. every simulator seed that once handed out an lver twice (or broke
#      safety otherwise: 90009063, 90008718, 100019934), replayed as
#      `tenure-sim --swarm 1 --seed S` runs it (docs/safety.md, docs/simulation.md);
#   2. a swarm of fresh seeds with every fault in the rotation, in parallel;
#   3. the spin models of the protocol and of fencing (Tools/model-check.sh);
#   4. the Debian package, built, installed, run and purged (Tools/package-check.sh);
#   5. the package on three QEMU hosts sharing one disk (Tools/vm-cluster):
#      the crash, frozen-host and daemon-restart scenarios, about three minutes.
#      TENURE_VM_RIG=full runs every scenario and the broken variants
#      (about eight minutes); TENURE_VM_RIG=0 skips it.
# TENURE_SWARM_SEEDS (default 3000) sets the swarm's size; a long run, such
# as docs/simulation.md's 100,000 seeds, is the same command with more.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${TENURE_SWARM_SEEDS:-3000}
first=${TENURE_SWARM_FIRST_SEED:-3000000}
jobs=$(nproc)

swift build -c release --product tenure-sim
sim=.build/release/tenure-sim

echo "release-checks: the seeds that handed out an lver twice, and the others that found bugs"
"$sim" --seed 22 --hosts 5 --resources 2 --steps 50000 --faults slow=0.00932,error=0.01852,hang=0.0103,sameid >/dev/null
for seed in 800217 800284 803009 804014 804698 9174 900234 900917 905894 906381 906511 910354 910585 920305 1013453 1019855 5001505 5039049 5057169 5065053 5075333 5075711 5078088 5085130 5092416 5018305 5053008 20017739 20000344 20016646 30039321 63001837 90009063 90008718 100019934; do
  "$sim" --swarm 1 --seed "$seed" >/dev/null || { "$sim" --swarm 1 --seed "$seed"; exit 1; }
done

echo "release-checks: a swarm of $seeds fresh seeds from $first, $jobs jobs"
"$sim" --swarm "$seeds" --seed "$first" --jobs "$jobs"

echo "release-checks: the models"
Tools/model-check.sh

if [ "${TENURE_SKIP_PACKAGE:-0}" != 1 ]; then
  echo "release-checks: the package"
  Tools/package-check.sh
fi

rig=${TENURE_VM_RIG:-ci}
if [ "$rig" != 0 ] && [ "$(id -u)" -eq 0 ]; then
  deb=$(ls .build/deb/tenure_*_amd64.deb 2>/dev/null | head -1 || true)
  args=(--work .build/vm-cluster ${deb:+--deb "$deb"})
  if [ "$rig" = full ]; then
    echo "release-checks: the VM rig, every scenario and the broken-fence variant"
  else
    echo "release-checks: the VM rig, the crash, frozen-host and restart scenarios (TENURE_VM_RIG=full for all)"
    args+=(--scenario crash --scenario frozen --scenario restart --no-broken-fence)
  fi
  Tools/vm-cluster/run.sh "${args[@]}"
elif [ "$rig" != 0 ]; then
  echo "release-checks: the VM rig needs root (QEMU, qemu-nbd); skipped" >&2
fi
