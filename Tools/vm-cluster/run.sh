#!/usr/bin/env bash
# Three QEMU hosts share one disk: storage lost or hanging, a frozen host, a crash, a
# killed daemon and a daemon killed and restarted at once, each judged by a
# witness on the host (run.py's header says how). Builds what the VMs boot
# (build.sh), runs the scenarios and prints their table; then the broken
# variants, which must FAIL: storage-loss with A's daemon deliberately broken
# (it never kills its holders and keeps petting its watchdog), and restart
# with A's restarted daemon petting at once (rearm-after-restart). A witness
# that cannot see a missing fence proves nothing.
#
#   Tools/vm-cluster/run.sh [--work DIR] [--deb FILE] [--scenario NAME]... [--no-broken-fence] [--accel kvm]
#
#   --work DIR          where the images, logs and results go (default /var/tmp/tenure-vm-cluster)
#   --deb FILE          the tenure package to boot (default: build it, a few minutes)
#   --scenario NAME     storage-loss, storage-hang, frozen, crash, watchdog or restart; repeat; default all six
#   --no-broken-fence   skip the broken variants
#   --accel kvm         use KVM (default TCG, which works everywhere)
#
# Exit status 0 only if every scenario holds and each broken variant fails.
# Needs root (QEMU, qemu-nbd, O_DIRECT on the image), qemu-system-x86 and
# qemu-utils (Tools/install-deps.sh), and apt access to the Debian archive.
# About 40 s per scenario under TCG on two cores; docs/reliability.md records a run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=/var/tmp/tenure-vm-cluster deb="" broken=1 accel=tcg
scenarios=()
while [ $# -gt 0 ]; do
  case "$1" in
    --work) work=$2; shift 2 ;;
    --deb) deb=$2; shift 2 ;;
    --scenario)
      case "$2" in storage-loss|storage-hang|frozen|crash|watchdog|restart) ;;
        *) echo "run.sh: no scenario \"$2\" (storage-loss, storage-hang, frozen, crash, watchdog or restart)" >&2; exit 2 ;; esac
      scenarios+=(--scenario "$2"); shift 2 ;;
    --no-broken-fence) broken=0; shift ;;
    --accel)
      case "$2" in tcg|kvm) ;; *) echo "run.sh: --accel $2: use tcg or kvm" >&2; exit 2 ;; esac
      accel=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (QEMU, qemu-nbd and O_DIRECT on the shared image)" >&2; exit 2; }
for tool in qemu-system-x86_64 qemu-nbd python3 apt-get; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing; run Tools/install-deps.sh" >&2; exit 2; }
done

build=("$work")
[ -n "$deb" ] && build+=(--deb "$deb")
if [ "$broken" = 1 ]; then
  # The broken variant needs a build that accepts TENURE_INJECT_BUG: a debug build.
  echo "[run] the debug build for the broken-fence variant"
  (cd "$root" && swift build --product tenure >/dev/null)
  build+=(--faulty "$(cd "$root" && swift build --show-bin-path)/tenure")
fi
"$here/build.sh" "${build[@]}"

status=0
python3 "$here/run.py" --work "$work" --accel "$accel" --json "$work/results.json" "${scenarios[@]}" || status=1
if [ "$broken" = 1 ]; then
  for variant in storage-loss restart; do
    echo
    if python3 "$here/run.py" --work "$work" --accel "$accel" --broken-fence "$variant"; then
      echo "[run] the broken $variant variant PASSED: the witness does not see a fence that never comes" >&2
      status=1
    else
      echo "[run] the broken $variant variant failed, as it must: the witness sees A's writes land after its lease was gone"
    fi
  done
fi
exit $status
