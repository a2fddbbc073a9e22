#!/usr/bin/env bash
# Assembles what the rig boots, from Debian packages only (apt-get download,
# no other downloads): the kernel of linux-image-amd64, busybox-static, the
# shared libraries the packaged tenure binary links (libc6, libstdc++6,
# libgcc-s1, libaio1), and the tenure package itself.
#
#   Tools/vm-cluster/build.sh WORK [--deb TENURE_DEB] [--faulty TENURE_BINARY]
#
# Without --deb it builds the package (Tools/build-deb.sh, a release build
# with the static Swift standard library). --faulty adds a build that can
# run with deliberate safety bugs (a debug build: TENURE_INJECT_BUG) as
# /usr/sbin/tenure-faulty, with the Swift libraries it links, for the rig's
# broken-fence variant. Writes WORK/vmlinuz and WORK/initrd.gz, and
# WORK/tenure (the packaged binary, for the host-side init of the shared disk).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:?usage: Tools/vm-cluster/build.sh WORK [--deb TENURE_DEB] [--faulty TENURE_BINARY]}
shift
deb="" faulty=""
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb=$(realpath "$2"); shift 2 ;;
    --faulty) faulty=$(realpath "$2"); shift 2 ;;
    *) echo "build.sh: unknown argument $1 (use --deb FILE or --faulty BINARY)" >&2; exit 2 ;;
  esac
done
mkdir -p "$work"
work=$(cd "$work" && pwd)
cd "$work"

step() { printf '[build] %s\n' "$*"; }

if [ -z "$deb" ]; then
  if [ ! -f "$work/deb/tenure_"*_amd64.deb ] 2>/dev/null; then
    step "building the tenure package (a static release build takes a few minutes)"
    "$root/Tools/build-deb.sh" "$work/deb" >"$work/build-deb.log" 2>&1 || { tail -20 "$work/build-deb.log"; exit 1; }
  fi
  deb=$(ls "$work"/deb/tenure_*_amd64.deb | head -1)
fi

fetch() { apt-get download "$1" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get download "$1" >/dev/null 2>&1; }; }
apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -qq >/dev/null 2>&1 || true
kernel_pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -1)
[ -n "$kernel_pkg" ] || { echo "cannot find the kernel package linux-image-amd64 depends on (apt-get update?)" >&2; exit 1; }
mkdir -p pkgs
step "downloading $kernel_pkg busybox-static libc6 libstdc++6 libgcc-s1 libaio1"
(cd pkgs && for p in "$kernel_pkg" busybox-static libc6 libstdc++6 libgcc-s1 libaio1; do
   ls "${p}_"*.deb >/dev/null 2>&1 || fetch "$p" || { echo "apt-get download $p failed (is the Debian archive reachable?)" >&2; exit 1; }
 done)

rm -rf x root && mkdir -p x root
for p in pkgs/*.deb; do dpkg-deb -x "$p" x; done
dpkg-deb -x "$deb" x
cp x/boot/vmlinuz-* vmlinuz
cp x/usr/sbin/tenure tenure

step "assembling the initramfs"
mkdir -p root/bin root/sbin root/usr/bin root/usr/sbin root/lib/modules root/lib64 root/lib/x86_64-linux-gnu root/proc root/sys root/dev root/run root/tmp
cp x/bin/busybox root/bin/busybox
for tool in $(root/bin/busybox --list); do [ "$tool" = busybox ] || ln -sf busybox "root/bin/$tool"; done
modules=$(ls -d x/lib/modules/*/kernel)
for m in drivers/virtio/virtio drivers/virtio/virtio_ring drivers/virtio/virtio_pci_legacy_dev \
         drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci drivers/block/virtio_blk \
         drivers/watchdog/watchdog drivers/watchdog/i6300esb; do
  f=$(ls "$modules/$m.ko"* | head -1)
  case "$f" in
    *.xz) xz -dc "$f" > "root/lib/modules/$(basename "$m").ko" ;;
    *) cp "$f" "root/lib/modules/$(basename "$m").ko" ;;
  esac
done
cp x/usr/sbin/tenure x/usr/sbin/tenured root/usr/sbin/
# The binaries' shared libraries, from the packages just extracted.
for lib in $(ldd x/usr/sbin/tenure x/usr/sbin/tenured | awk '/=>/ { print $1 }' | sort -u); do
  f=$(find x/lib x/usr/lib -name "$lib" 2>/dev/null | head -1)
  [ -n "$f" ] || { echo "no $lib in the downloaded packages" >&2; exit 1; }
  cp -L "$f" "root/lib/x86_64-linux-gnu/$lib"
done
cp -L "$(find x/lib x/usr/lib x/lib64 -name 'ld-linux-x86-64.so.2' 2>/dev/null | head -1)" root/lib64/ld-linux-x86-64.so.2
if [ -n "$faulty" ]; then
  # Not from a package: a test build, with the toolchain's libraries where
  # its run path looks for them.
  cp "$faulty" root/usr/sbin/tenure-faulty
  for f in $(ldd "$faulty" | awk '/=> \// { print $3 }'); do
    mkdir -p "root$(dirname "$f")"
    [ -e "root$f" ] || cp -L "$f" "root$f"
  done
fi
cc -O2 -static -o root/usr/bin/tenure-writer "$here/writer.c" "$root/Sources/CTenureClient/tenure.c" \
   -I "$root/Sources/CTenureClient/include" -I "$root/Sources/CTenureProto/include"
cp "$here/guest-init" root/init
chmod +x root/init
# busybox's cpio: the host may have none.
(cd root && find . | ../x/bin/busybox cpio -o -H newc | gzip -1) > initrd.gz
step "ready: $work/vmlinuz, $work/initrd.gz ($(du -h initrd.gz | cut -f1)), tenure $(./tenure --version 2>/dev/null || echo '?')"
