#!/usr/bin/env bash
# Installs what is missing, builds the quickstart example and runs it on its built-in records.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/quickstart -DCMAKE_BUILD_TYPE=Release -DDM2S2_BUILD_TESTS=OFF -DDM2S2_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build/quickstart --target dm2s2_quickstart -j"$(nproc)" >/dev/null
./build/quickstart/examples/dm2s2_quickstart
