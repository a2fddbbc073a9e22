#!/usr/bin/env bash
# Builds the Debian package and tests it as a user gets it: installed on this
# machine, run, removed and purged (PackageTests). Needs root (it installs
# the package). Run by Tools/release-checks.sh; TENURE_SKIP_PACKAGE=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "package-check: needs root to install the package; skipped" >&2; exit 0; }
echo "package-check: the release binary with the static Swift standard library"
swift build -c release --static-swift-stdlib --product tenure --scratch-path .build/static
swift build -c release --static-swift-stdlib --product tenured --scratch-path .build/static
deb=$(Tools/build-deb.sh .build/deb --binary .build/static/release/tenure)
echo "package-check: $deb"
dpkg -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' | grep -v '/$' | sort
TENURE_DEB=$deb swift test --filter PackageTests
