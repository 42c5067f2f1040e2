#!/usr/bin/env bash
# Installs everything meshd's build, tests, demo and benchmarks need on Debian 12.
# Idempotent: packages already present are left alone. Run as root (or with sudo).
# Only Boost 1.81 packages: an unversioned libboost-*-dev would pull 1.74 and conflict.
set -euo pipefail

PKGS=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git python3 curl procps iproute2
  # libraries (see docs/dependencies.md)
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  node-llhttp libnghttp2-dev libssl-dev libyaml-cpp-dev prometheus-cpp-dev
  catch2 libre2-dev libc-ares-dev
  # tests: promtool lints /metrics; haproxy is the transparency tests' reference proxy
  prometheus python3-yaml haproxy
  # HTTP/2 and gRPC peers: python3-h2 (hand-made frames), nghttp and h2load
  python3-h2 nghttp2-client python3-grpcio
  # benchmarks: Google Benchmark for the microbenchmarks
  libbenchmark-dev
  # fuzzing: clang and its runtime (libFuzzer), named explicitly (only a recommendation of clang)
  clang-14 libclang-rt-14-dev
  # slow-client tests
  slowhttptest
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
