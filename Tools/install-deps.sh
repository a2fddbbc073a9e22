#!/usr/bin/env bash
# Installs the system packages Tenure builds and tests with, on Debian:
#   libaio-dev      - libaio, the asynchronous I/O the lease I/O goes through
#   sanlock         - the reference implementation, the compatibility oracle in tests
#   python3-sanlock - sanlock's python client library: a client of sanlock's real
#                     daemon in the daemon interop tests, and of Tenure's sanlock socket
#   libsanlock-dev  - sanlock's headers: the sanlock protocol codec's layout is checked against them
#   gcc             - builds the setrlimit shim that lets sanlock's daemon start in a sandbox,
#                     and libtenure and the libvirt plugin (Tools/build-libtenure.sh)
#   spin            - the model checker for Models/*.pml (Tools/model-check.sh)
#   libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients, qemu-system-x86, qemu-utils
#                   - a real libvirtd with QEMU (TCG) loads the plugin in the libvirt tests
#   libvirt-sanlock - libvirt's own sanlock plugin: a client of Tenure's sanlock socket
#   systemd         - systemd-analyze verify checks the shipped unit (ServiceLifecycleTests)
# Idempotent and quiet when everything is there. Needs root (or sudo).
set -euo pipefail
packages=(libaio-dev sanlock python3-sanlock libsanlock-dev gcc spin
          libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils libvirt-sanlock systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
