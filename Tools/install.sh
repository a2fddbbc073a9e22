#!/usr/bin/env bash
# Installs Tenure: the release binary (the Swift standard library linked in,
# so the host needs no Swift toolchain), libtenure, the libvirt plugin and
# its lock-failure helper, the systemd unit, the config file, man pages,
# shell completions and the docs.
#
#   Tools/install.sh [--destdir DIR] [--prefix /usr] [--binary PATH]
#
# --destdir stages the tree under DIR (packaging; Tools/build-deb.sh uses it);
# without it files go to the live system. --binary installs an already built
# tenure instead of building one (swift build -c release --static-swift-stdlib).
# Files under /etc are not overwritten when they exist.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
destdir="" prefix=/usr binary=""
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) destdir=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
libdir=$prefix/lib/$multiarch

step() { echo "install: $*" >&2; }

if [ -z "$binary" ]; then
  step "building the release binary with the static Swift standard library (a few minutes)"
  (cd "$root" && swift build -c release --static-swift-stdlib --product tenure >&2)
  (cd "$root" && swift build -c release --static-swift-stdlib --product tenured >&2)
  binary=$(cd "$root" && swift build -c release --static-swift-stdlib --show-bin-path)/tenure
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }
# The daemon's own binary, beside tenure (the same build): `tenure daemon` hands over to it.
[ -x "${binary}d" ] || { echo "install.sh: ${binary}d (the daemon's binary, built with --product tenured) is missing beside $binary" >&2; exit 1; }

step "building libtenure and the libvirt plugin"
cbuild=$(mktemp -d)
trap 'rm -rf "$cbuild"' EXIT
"$root/Tools/build-libtenure.sh" "$cbuild" >&2

d() { install -d -m 0755 "$destdir$1"; }
f() { install -m "$1" "$2" "$destdir$3"; }

step "installing under ${destdir:-/}"
d "$prefix/sbin"; f 0755 "$binary" "$prefix/sbin/tenure"; f 0755 "${binary}d" "$prefix/sbin/tenured"
strip --strip-debug "$destdir$prefix/sbin/tenure" "$destdir$prefix/sbin/tenured" 2>/dev/null || true

d "$libdir"; f 0644 "$cbuild/lib/libtenure.so.1" "$libdir/libtenure.so.1"
ln -sf libtenure.so.1 "$destdir$libdir/libtenure.so"
d "$prefix/include"; f 0644 "$cbuild/include/tenure.h" "$prefix/include/tenure.h"; f 0644 "$cbuild/include/tenure_proto.h" "$prefix/include/tenure_proto.h"
d "$libdir/pkgconfig"
sed -e "s|^prefix=.*|prefix=$prefix|" -e "s|^libdir=.*|libdir=$libdir|" "$cbuild/lib/pkgconfig/tenure.pc" > "$destdir$libdir/pkgconfig/tenure.pc"

d "$libdir/libvirt/lock-driver"; f 0644 "$cbuild/lib/libvirt/lock-driver/tenure.so" "$libdir/libvirt/lock-driver/tenure.so"
d "$prefix/libexec/tenure"; f 0755 "$root/Tools/libvirt/tenure-lockfailure" "$prefix/libexec/tenure/tenure-lockfailure"
# sanlock's command line, off by default: a link named sanlock for
# update-alternatives (docs/sanlock-compatibility.md, "Switching").
d "$prefix/lib/tenure"; ln -sf ../../sbin/tenure "$destdir$prefix/lib/tenure/sanlock"

d /lib/systemd/system; f 0644 "$root/Tools/systemd/tenure.service" /lib/systemd/system/tenure.service
sed -i "s|/usr/sbin/tenure|$prefix/sbin/tenure|" "$destdir/lib/systemd/system/tenure.service"

d /etc/tenure; d /etc/libvirt
[ -e "$destdir/etc/tenure/tenure.conf" ] || f 0644 "$root/Tools/package/tenure.conf" /etc/tenure/tenure.conf
[ -e "$destdir/etc/libvirt/qemu-tenure.conf" ] || f 0644 "$root/Tools/package/qemu-tenure.conf" /etc/libvirt/qemu-tenure.conf

d "$prefix/share/man/man8"; d "$prefix/share/man/man5"
gzip -9n -c "$root/Tools/package/man/tenure.8" > "$destdir$prefix/share/man/man8/tenure.8.gz"
gzip -9n -c "$root/Tools/package/man/tenure.conf.5" > "$destdir$prefix/share/man/man5/tenure.conf.5.gz"

d "$prefix/share/bash-completion/completions"; d "$prefix/share/zsh/vendor-completions"; d "$prefix/share/fish/vendor_completions.d"
"$binary" --generate-completion-script bash > "$destdir$prefix/share/bash-completion/completions/tenure"
"$binary" --generate-completion-script zsh > "$destdir$prefix/share/zsh/vendor-completions/_tenure"
"$binary" --generate-completion-script fish > "$destdir$prefix/share/fish/vendor_completions.d/tenure.fish"

d "$prefix/share/doc/tenure"
for doc in "$root"/docs/*.md "$root/README.md"; do f 0644 "$doc" "$prefix/share/doc/tenure/$(basename "$doc")"; done

if [ -z "$destdir" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi
step "done: $prefix/sbin/tenure $("$binary" --version)"
