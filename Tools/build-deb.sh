#!/usr/bin/env bash
# Builds the Debian package: OUTDIR/tenure_<version>_amd64.deb, with
# everything Tools/install.sh installs (the release binary with the Swift
# standard library linked in, so hosts need no Swift toolchain).
#
#   Tools/build-deb.sh OUTDIR [--binary PATH]
#
# No network: dpkg-deb over a staged tree. Install with
#   apt-get install ./OUTDIR/tenure_<version>_amd64.deb
# The daemon is not started by the package: `systemctl enable --now tenure`
# once /etc/tenure/tenure.conf is right. Removing the package stops it;
# purging also removes /etc/tenure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: Tools/build-deb.sh OUTDIR [--binary PATH]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(sed -n 's/.*static let string = "\(.*\)".*/\1/p' "$root/Sources/TenureCLI/TenureCommand.swift")
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

"$root/Tools/install.sh" --destdir "$stage" --prefix /usr "$@"

install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: tenure
Version: $version
Architecture: $arch
Maintainer: Tenure developers <tenure@localhost>
Installed-Size: $size
Depends: libc6, libstdc++6, libgcc-s1, libaio1t64 | libaio1
Recommends: watchdog | systemd
Suggests: libvirt-daemon, python3-sanlock
Section: admin
Priority: optional
Homepage: https://github.com/tenure/tenure
Description: cluster-wide lease manager on shared storage (sanlock-compatible)
 Hosts that share a block device agree who may use a resource without a
 network coordinator: delta leases for host ids, Disk Paxos leases for
 resources, in sanlock 3.x's on-disk format. One daemon per host holds
 leases for local processes and fences them when a lease is lost; a
 watchdog resets the host if it cannot. Includes libtenure, the libvirt
 lock-driver plugin and its lock-failure helper.
CONTROL
printf '%s\n' /etc/tenure/tenure.conf /etc/libvirt/qemu-tenure.conf > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
SCRIPT
cat > "$stage/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
# Leaves no daemon running. The daemon refuses to stop while processes hold
# leases (stopping it would leave them unfenced): stop them first.
set -e
if [ "$1" = remove ] || [ "$1" = upgrade ] || [ "$1" = deconfigure ]; then
  if [ -d /run/systemd/system ] && systemctl is-active --quiet tenure 2>/dev/null; then
    systemctl stop tenure
  elif [ -S /run/tenure/tenure.sock ]; then
    /usr/sbin/tenure client shutdown || { echo "tenure: the daemon holds leases; release them, then remove the package" >&2; exit 1; }
  fi
fi
exit 0
SCRIPT
cat > "$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  rm -rf /etc/tenure
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
deb="$out/tenure_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
