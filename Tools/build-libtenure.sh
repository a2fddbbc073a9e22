#!/usr/bin/env bash
# Builds libtenure.so (the C client library) with cc, from the same sources
# SwiftPM compiles: linked by cc, it needs only libc and no Swift runtime, so
# libvirt's forked children and hosts without a Swift toolchain can load it.
#
#   Tools/build-libtenure.sh [OUT_DIR]      (default: .build/libtenure)
#
# OUT_DIR gets lib/libtenure.so, include/{tenure.h,tenure_proto.h},
# lib/pkgconfig/tenure.pc, and the libvirt lock-driver plugin
# lib/libvirt/lock-driver/tenure.so (libtenure compiled in, so it needs only
# libc; install it to /usr/lib/x86_64-linux-gnu/libvirt/lock-driver/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.build/libtenure}
mkdir -p "$out/lib/pkgconfig" "$out/include" "$out/lib/libvirt/lock-driver"
cc=${CC:-cc}
$cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fPIC -shared -Wl,-soname,libtenure.so.1 -Wl,--no-undefined \
  -I "$root/Sources/CTenureProto/include" -I "$root/Sources/CTenureClient/include" \
  -o "$out/lib/libtenure.so.1" "$root/Sources/CTenureClient/tenure.c"
ln -sf libtenure.so.1 "$out/lib/libtenure.so"
$cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -fPIC -shared -Wl,--no-undefined -fvisibility=hidden \
  -I "$root/Sources/CTenureProto/include" -I "$root/Sources/CTenureClient/include" \
  -o "$out/lib/libvirt/lock-driver/tenure.so" \
  "$root/Sources/TenureLibvirt/tenure_lock_driver.c" "$root/Sources/CTenureClient/tenure.c" -ldl
cp "$root/Sources/CTenureClient/include/tenure.h" "$root/Sources/CTenureProto/include/tenure_proto.h" "$out/include/"
cat > "$out/lib/pkgconfig/tenure.pc" <<PC
prefix=$out
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: tenure
Description: Client library of the Tenure lease manager
Version: 0.2.0
Libs: -L\${libdir} -ltenure
Cflags: -I\${includedir}
PC
echo "$out/lib/libtenure.so.1"
