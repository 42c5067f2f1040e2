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
werror=OFF
if [ -n "${CI:-}" ] || [ "${MESHD_WERROR:-}" = 1 ]; then werror=ON; fi
cmake -S . -B "$dir" -G Ninja "${flags[@]}" -DMESHD_WERROR=$werror >/dev/null
cmake --build "$dir" -j "${MESHD_JOBS:-2}"
echo "$dir"
