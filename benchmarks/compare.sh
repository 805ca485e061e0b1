#!/usr/bin/env bash
# Side-by-side timing of dm2s2 and PyTorch on the same machine and thread count (benchmarks/README.md):
# builds the workload benchmark for this processor, installs PyTorch and OpenBLAS when missing, runs
# W1 (inference) and W2 (training step) on both sides, interleaved over several rounds, and ends with
#   W1 fp32 speedup vs PyTorch: <x>
#   W2 fp32 speedup vs PyTorch: <x>
#   W1 bf16 speedup vs PyTorch fp32: <x>
# where x = PyTorch's median time / dm2s2's (W1: PyTorch's better mode, padded or nested tensors).
# Options go to benchmarks/compare.py: --threads N (default: every core), --rounds R, --repeats N.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh python3-torch python3-numpy libopenblas0-openmp
build=build/compare
mkdir -p "${build}"
if ! { cmake -S . -B "${build}" -DCMAKE_BUILD_TYPE=Release -DDM2S2_NATIVE_ARCH=ON -DDM2S2_BUILD_TESTS=OFF \
         -DDM2S2_BUILD_EXAMPLES=OFF -DDM2S2_BUILD_BENCHMARKS=ON &&
       cmake --build "${build}" --target dm2s2_bench_workloads dm2s2_bench_products -j"$(nproc)"; } >"${build}/build.log" 2>&1; then
  cat "${build}/build.log" >&2
  echo "compare: the build failed (log above)" >&2
  exit 1
fi
exec /usr/bin/python3 benchmarks/compare.py --bench "${build}/benchmarks/dm2s2_bench_workloads" \
  --products "${build}/benchmarks/dm2s2_bench_products" "$@"
