#!/usr/bin/env bash
# Installs what is missing, then builds and runs the whole test suite four times: g++ and clang++
# with warnings as errors, g++ against the newest versions of the header dependencies, and g++ with
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)

# run_suite NAME COMPILER "CTEST ARGS" CMAKE ARGS...
run_suite() {
  local name=$1 compiler=$2 ctest_args=$3; shift 3
  echo "== ${name}: configure and build"
  cmake -S . -B "build/${name}" -DCMAKE_CXX_COMPILER="${compiler}" -DDM2S2_WARNINGS_AS_ERRORS=ON "$@" >/dev/null
  cmake --build "build/${name}" -j"${jobs}"
  echo "== ${name}: test"
  # shellcheck disable=SC2086
  (cd "build/${name}" && ctest --output-on-failure -j"${jobs}" ${ctest_args})
}

# The two release builds also build the MPI target and run its 2-rank tests (label mpi).
run_suite gcc g++ "" -DCMAKE_BUILD_TYPE=Release -DDM2S2_MPI=ON
run_suite clang clang++ "" -DCMAKE_BUILD_TYPE=Release -DDM2S2_MPI=ON
# The newest versions of the header dependencies, as vcpkg and Conan ship them (Debian unstable's
# packages, unpacked under build/): the library's test suite and the installed package's consumer.
bash scripts/newest_dependencies.sh build/newest-dependencies
run_suite newest g++ "" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${PWD}/build/newest-dependencies/usr" \
  -DDM2S2_BUILD_EXAMPLES=OFF -DDM2S2_BUILD_BENCHMARKS=OFF
# The planted-task training runs (planted signal and planted cues) and the training example (minutes
# under the sanitizers) are left to the two builds above; the code they run is exercised under the
# sanitizers by the gradient, dropout, accumulation, trainer and attribution tests. The benchmarks'
# smoke runs are left to the builds above too.
run_suite sanitize g++ "-E planted-signal|planted.cues|every.baseline.trains|training.example" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
  -DDM2S2_SANITIZE=ON -DDM2S2_BUILD_BENCHMARKS=OFF
