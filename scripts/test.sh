#!/usr/bin/env bash
# Installs what is missing, then builds and runs the whole test suite three times: g++ and clang++
# with warnings as errors, and g++ with AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)

run_suite() {
  local name=$1 compiler=$2; shift 2
  echo "== ${name}: configure and build"
  cmake -S . -B "build/${name}" -DCMAKE_CXX_COMPILER="${compiler}" -DDM2S2_WARNINGS_AS_ERRORS=ON "$@" >/dev/null
  cmake --build "build/${name}" -j"${jobs}"
  echo "== ${name}: test"
  (cd "build/${name}" && ctest --output-on-failure -j"${jobs}")
}

run_suite gcc g++ -DCMAKE_BUILD_TYPE=Release
run_suite clang clang++ -DCMAKE_BUILD_TYPE=Release
run_suite sanitize g++ -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DDM2S2_SANITIZE=ON
