#!/usr/bin/env bash
# The checks of the CUDA backend that need a GPU, as one script for a machine that has one. Writes
# its report to REPORT_DIR/gpu_check_report.txt (default build/gpu-check) and exits non-zero when a
# step fails. On the GPU machine, in the repository's root:
#   bash scripts/gpu_check.sh [REPORT_DIR]
# The machine needs nvcc, CMake, a C++20 compiler and, for the speed lines, PyTorch with CUDA. The
# library's header dependencies (Eigen, nlohmann_json, xsimd, xtl, doctest) are taken from the
# system, or from the prefix that `bash scripts/gpu_check.sh --prepare` unpacks under build/gpu-deps
# on a Debian machine (carry that folder to a GPU machine without them).
#
# Steps: the machine (nvidia-smi, nvcc); the build (dm2s2::cuda for sm_90, its tests and G1's timing
# program, with every core); the kernel tests against the plain-loop reference and the model tests
# against the CPU model (every pooling's logits, α/β/γ and gradients, training steps and a short fit,
# fp32 within 1e-5 relative, f64 within 1e-12; tf32 and bf16 products within 5e-3 and 5e-2 of the
# CPU's fp32 model); HF parity on tests/data/bert_tiny_a (f64 ≤ 1e-10, f32 ≤ 2e-5); run-to-run bit
# identity in every precision; then G1's speed in fp32 and bf16 against PyTorch on the same machine,
# ending with the three speedup lines of the CUDA issue (x = PyTorch's median / ours).
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  dir=build/gpu-deps
  mkdir -p "${dir}/debs"
  (cd "${dir}/debs" && rm -f ./*.deb && apt-get download -qq libeigen3-dev nlohmann-json3-dev libxsimd-dev xtl-dev doctest-dev)
  rm -rf "${dir:?}/usr"
  for deb in "${dir}"/debs/*.deb; do
    dpkg-deb -x "${deb}" "${dir}"
    dpkg-deb -f "${deb}" Package Version | paste -sd ' '
  done
  rm -rf "${dir}/debs" "${dir}/usr/share/doc"
  du -sh "${dir}"
  exit 0
fi

command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:${PATH}  # the toolkit's usual place
out=${1:-build/gpu-check}
mkdir -p "${out}"
report=${out}/gpu_check_report.txt
: >"${report}"
status=0
say() { echo "$*" | tee -a "${report}"; }
# step NAME COMMAND...: runs a step, its output into the report, and records a failure.
step() {
  local name=$1; shift
  local start=${SECONDS}
  say "== ${name}"
  "$@" 2>&1 | tee -a "${report}"
  local rc=${PIPESTATUS[0]}
  say "== ${name}: exit ${rc}, $((SECONDS - start)) s"
  [[ ${rc} -eq 0 ]] || status=1
  return "${rc}"
}

step "machine" bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nvcc --version | tail -n 2; ${CXX:-c++} --version | head -n 1; nproc'

prefix=()
[[ -d build/gpu-deps/usr ]] && prefix=(-DCMAKE_PREFIX_PATH="${PWD}/build/gpu-deps/usr")
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
step "build" bash -c "cmake -S . -B build/gpu ${generator[*]} -DCMAKE_BUILD_TYPE=Release -DDM2S2_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DDM2S2_CUDA_MODEL_TESTS=ON ${prefix[*]} -DDM2S2_WARNINGS_AS_ERRORS=ON -DDM2S2_BUILD_EXAMPLES=OFF \
  -DDM2S2_BUILD_BENCHMARKS=OFF -DDM2S2_PACKAGE_TESTS=OFF -DDM2S2_INSTALL=OFF -DDM2S2_TEXT=OFF -DDM2S2_XTENSOR=OFF \
  >/dev/null && cmake --build build/gpu -j$(nproc) --target dm2s2_cuda_tests dm2s2_bench_gpu" || {
  say "build failed: nothing else can run"
  exit 1
}

tests=build/gpu/tests/dm2s2_cuda_tests
step "construction" "${tests}" --without-device
# Kernels, models, HF parity and bit identity; the staging backend's transfer counts are the main
# program's, not this one's.
step "kernels and models" "${tests}" "--test-case-exclude=*staging backend*" --duration=true

bench=build/gpu/tests/dm2s2_bench_gpu
shapes=${out}/g1_shapes.json
step "G1 shapes" "${bench}" --lengths "${shapes}"
step "G1 on dm2s2" bash -o pipefail -c "${bench} | tee ${out}/g1_dm2s2.jsonl"
: >"${out}/g1_torch.jsonl"
for workload in infer train; do
  for precision in fp32 bf16; do
    step "G1 on PyTorch: ${workload} ${precision}" bash -o pipefail -c "python3 benchmarks/torch_gpu.py --shapes ${shapes} \
      --workload ${workload} --precision ${precision} | tee -a ${out}/g1_torch.jsonl"
  done
done

python3 - "${out}/g1_dm2s2.jsonl" "${out}/g1_torch.jsonl" <<'EOF' | tee -a "${report}"
import json, sys
ours = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line)
        if "workload" in r:
            ours[r["workload"]] = r
theirs = {json.loads(l)["workload"]: json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")}
for name, r in sorted({**ours, **theirs}.items()):
    print(f"{name}: median {r['median_ms']:.2f} ms, peak device memory {r['peak_device_mib']:.0f} MiB"
          + (f" ({r['mode']})" if "mode" in r else ""))
lines = [("GPU inference bf16 speedup vs PyTorch bf16", "gpu-infer-bf16", "torch-infer-bf16"),
         ("GPU inference fp32 speedup vs PyTorch fp32", "gpu-infer-fp32", "torch-infer-fp32"),
         ("GPU training bf16 speedup vs PyTorch bf16", "gpu-train-bf16", "torch-train-bf16")]
for label, mine, other in lines:
    if mine in ours and other in theirs:
        print(f"{label}: {theirs[other]['median_ms'] / ours[mine]['median_ms']:.2f}")
    else:
        missing = mine if mine not in ours else other
        print(f"{label}: not measured ({missing} did not run)")
EOF

say "== gpu_check: $([[ ${status} -eq 0 ]] && echo passed || echo FAILED)"
exit "${status}"
