#!/usr/bin/env bash
# Configures and builds one flavour of meshd: release (default) or sanitize
# (AddressSanitizer + UndefinedBehaviorSanitizer). Usage: scripts/build.sh [release|sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
case "$flavour" in
  release)  dir=build;          flags=(-DCMAKE_BUILD_TYPE=Release) ;;
  sanitize) dir=build-sanitize; flags=(-DCMAKE_BUILD_TYPE=Debug -DMESHD_SANITIZE=ON) ;;
  debug)    dir=build-debug;    flags=(-DCMAKE_BUILD_TYPE=Debug) ;;
  *) echo "usage: $0 [release|sanitize|debug]" >&2; exit 2 ;;
esac
# Warnings are errors in CI (and with MESHD_WERROR=1); otherwise the build dir keeps
# whatever it was configured with, so the demo after the tests does not rebuild.
if [ -n "${CI:-}" ] || [ "${MESHD_WERROR:-}" = 1 ]; then flags+=(-DMESHD_WERROR=ON); fi
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir" -j "${MESHD_JOBS:-2}" >&2  # the log on stderr; stdout is the build dir
echo "$dir"
