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
# once /etc/tenure/tenure.conf is right. Removing the package stops it, and
# is refused while processes hold leases; an upgrade restarts it, or, while
# leases are held, leaves it running until its next restart
# (Tools/package/maintainer/prerm). Purging also removes /etc/tenure.
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
# The maintainer scripts: the package never stops the daemon under its lease
# holders (an upgrade defers the restart, a removal is refused); see prerm.
install -m 0755 "$root/Tools/package/maintainer/prerm" "$root/Tools/package/maintainer/postinst" \
  "$root/Tools/package/maintainer/postrm" "$stage/DEBIAN/"
deb="$out/tenure_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
