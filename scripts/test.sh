#!/usr/bin/env bash
# Installs what is missing, checks the code's format, then builds and runs the test suite in four
# lanes: g++ (with the CUDA backend where nvcc is installed) and clang++ with warnings as errors
# against Debian bookworm's versions of the header dependencies, g++ with AddressSanitizer +
# UndefinedBehaviorSanitizer against the newest versions, and the fuzz targets under clang. Prints
# each lane's build and test times at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/format.sh
jobs=$(nproc)
timings=()

# run_suite NAME COMPILER "CTEST ARGS" CMAKE ARGS...
run_suite() {
  local name=$1 compiler=$2 ctest_args=$3; shift 3
  local start=${SECONDS}
  echo "== ${name}: configure and build"
  cmake -S . -B "build/${name}" -G Ninja -DCMAKE_CXX_COMPILER="${compiler}" -DDM2S2_WARNINGS_AS_ERRORS=ON "$@" >/dev/null
  cmake --build "build/${name}" -j"${jobs}"
  local built=${SECONDS}
  echo "== ${name}: test"
  # shellcheck disable=SC2086
  (cd "build/${name}" && ctest --output-on-failure -j"${jobs}" ${ctest_args})
  timings+=("${name}: build $((built - start)) s, test $((SECONDS - built)) s")
}

# gcc: everything, with the MPI target and its 2-rank tests (label mpi), the benchmarks' smoke runs,
# the package tests (install tree, vcpkg port, Conan recipe) and the CUDA backend: dm2s2::cuda built by
# nvcc for sm_80 and sm_90 with warnings as errors, its test program and G1's timing program; the
# GPU tests (label gpu) skip, saying why, where no device is usable.
cuda=()
nvcc=$(command -v nvcc || true)
[[ -n ${nvcc} || ! -x /usr/local/cuda/bin/nvcc ]] || nvcc=/usr/local/cuda/bin/nvcc
if [[ -n ${nvcc} ]]; then
  cuda=(-DDM2S2_CUDA=ON -DCMAKE_CUDA_COMPILER="${nvcc}")
else
  echo "== gcc: no nvcc on this machine: dm2s2::cuda is not built"
fi
run_suite gcc g++ "" -DCMAKE_BUILD_TYPE=Release -DDM2S2_MPI=ON "${cuda[@]}"
# clang: the library, tests, tools and MPI under clang's warnings; the benchmarks and the package
# tests, which the gcc lane runs, are left out.
run_suite clang clang++ "" -DCMAKE_BUILD_TYPE=Release -DDM2S2_MPI=ON -DDM2S2_BUILD_BENCHMARKS=OFF -DDM2S2_PACKAGE_TESTS=OFF
# sanitize: the library's own test program under the sanitizers, at -Og (half the build time of -O1
# with the sanitizers' instrumentation, tests a little slower) with line tables only (-g1), which is what
# their reports print, against the newest versions of the header dependencies, as vcpkg and Conan ship
# them (Debian unstable's packages, unpacked under build/); with the package tests, whose installed
# package and vcpkg port are consumed against those versions (built without the sanitizers). Left to
# the lanes above: the tools and examples and their tests (the readers and pipelines they run are
# tested in the test program here), the planted-task training runs (planted signal, planted cues,
# every baseline training; minutes under the sanitizers, their code exercised here by the gradient,
# dropout, accumulation, trainer and attribution tests) and the benchmarks.
bash scripts/newest_dependencies.sh build/newest-dependencies
run_suite sanitize g++ "-E planted-signal|planted.cues|every.baseline.trains" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-Og -g1" -DDM2S2_SANITIZE=ON -DCMAKE_PREFIX_PATH="${PWD}/build/newest-dependencies/usr" \
  -DDM2S2_BUILD_EXAMPLES=OFF -DDM2S2_BUILD_BENCHMARKS=OFF
# fuzz: the libFuzzer targets of the readers of outside data (tests/fuzz: safetensors, HF checkpoint
# directories, model directories, training checkpoints, schema.json, JSON Lines records, the
# tokenizer, dm2s2_tokenize's lines), built with clang under ASan and UBSan, each run from its seed
# corpus for DM2S2_FUZZ_SECONDS (15). Longer campaigns: scripts/fuzz.sh.
run_suite fuzz clang++ "" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1" -DDM2S2_FUZZ=ON \
  -DDM2S2_BUILD_TESTS=OFF -DDM2S2_BUILD_EXAMPLES=OFF -DDM2S2_BUILD_BENCHMARKS=OFF -DDM2S2_INSTALL=OFF -DDM2S2_XTENSOR=OFF

printf '== %s\n' "${timings[@]}"
