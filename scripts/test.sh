#!/usr/bin/env bash
# The README's test command: installs what is missing, builds meshd twice (Release,
# and AddressSanitizer + UndefinedBehaviorSanitizer) and runs every test on both.
# Memory and descriptor checks run only on the Release build (MESHD_SANITIZED=1
# tells tests they are under the sanitizers). Usage: scripts/test.sh [release|sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
flavours=("$@")
[ ${#flavours[@]} -eq 0 ] && flavours=(release sanitize)
for flavour in "${flavours[@]}"; do
  echo "=== $flavour build"
  dir=$(bash scripts/build.sh "$flavour" | tail -n 1)
  echo "=== $flavour tests"
  if [ "$flavour" = sanitize ]; then
    export MESHD_SANITIZED=1
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  fi
  (cd "$dir" && ctest --output-on-failure -j "${MESHD_JOBS:-2}" --timeout 600)
done
