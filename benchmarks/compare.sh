#!/usr/bin/env bash
# Side-by-side timing of dm2s2, PyTorch and ONNX Runtime on the same machine and thread count
# (benchmarks/README.md): builds the workload benchmark for this processor, installs PyTorch, OpenBLAS
# and Node.js when missing and onnxruntime-node 1.30 (npm) into build/compare/onnxruntime, runs W1
# (inference) on the three sides, W2 (training step) on the first two and W5 (W1's encoder on equal
# lengths) on dm2s2 and ONNX Runtime, interleaved over several rounds, and ends with
#   W1 fp32 speedup vs PyTorch: <x>
#   W2 fp32 speedup vs PyTorch: <x>
#   W1 bf16 speedup vs PyTorch fp32: <x>
#   W1 fp32 speedup vs ONNX Runtime: <x>
#   W1 bf16 speedup vs ONNX Runtime fp32: <x>
# where x = the other side's median time / dm2s2's (W1: PyTorch's better mode, padded or nested
# tensors; ONNX Runtime padded).
# Options go to benchmarks/compare.py: --threads N (default: every core), --rounds R, --repeats N, --full.
set -euo pipefail
cd "$(dirname "$0")/.."
node_packages=()
command -v node >/dev/null && command -v npm >/dev/null || node_packages=(nodejs npm)
bash scripts/setup.sh python3-torch python3-numpy libopenblas0-openmp "${node_packages[@]}"
build=build/compare
mkdir -p "${build}"

# ONNX Runtime's CPU build ships in the npm package; its install script would fetch CUDA providers.
ort=${build}/onnxruntime
ort_version=1.30
installed=$(node -p "require('./${ort}/node_modules/onnxruntime-node/package.json').version" 2>/dev/null || true)
if [[ "${installed}" != "${ort_version}".* ]]; then
  mkdir -p "${ort}"
  echo "compare: installing onnxruntime-node ${ort_version} into ${ort}"
  if ! ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "${ort}" --no-audit --no-fund --no-save \
       "onnxruntime-node@${ort_version}" >"${ort}/npm.log" 2>&1; then
    cat "${ort}/npm.log" >&2
    echo "compare: npm install onnxruntime-node@${ort_version} failed (log above; it needs the npm registry)" >&2
    exit 1
  fi
fi
if ! { cmake -S . -B "${build}" -DCMAKE_BUILD_TYPE=Release -DDM2S2_NATIVE_ARCH=ON -DDM2S2_BUILD_TESTS=OFF \
         -DDM2S2_BUILD_EXAMPLES=OFF -DDM2S2_BUILD_BENCHMARKS=ON &&
       cmake --build "${build}" --target dm2s2_bench_workloads dm2s2_bench_products -j"$(nproc)"; } >"${build}/build.log" 2>&1; then
  cat "${build}/build.log" >&2
  echo "compare: the build failed (log above)" >&2
  exit 1
fi
exec /usr/bin/python3 benchmarks/compare.py --bench "${build}/benchmarks/dm2s2_bench_workloads" \
  --products "${build}/benchmarks/dm2s2_bench_products" --onnxruntime "${ort}" "$@"
