#!/usr/bin/env bash
# A fuzzing campaign: builds the libFuzzer targets (tests/fuzz) under build/fuzz and runs each for
# SECONDS (default 600) on one core, keeping its corpus in build/fuzz/campaign/<target> between
# campaigns and any failing input there as crash-*, leak-*, timeout-* or oom-*. Prints each target's
# executions, coverage and corpus at the end. The file readers' targets write each input to files in
# a scratch directory under TMPDIR; where TMPDIR is unset it is /dev/shm (memory) when that exists,
# which spares them the file system's journal (docs/reliability.md).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     (targets: safetensors hf_checkpoint model_directory
#                                                    training_checkpoint schema json_records wordpiece
#                                                    tokenize_lines; default all)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(safetensors hf_checkpoint model_directory training_checkpoint schema json_records
  wordpiece tokenize_lines)
cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1" \
  -DDM2S2_FUZZ=ON -DDM2S2_BUILD_TESTS=OFF -DDM2S2_BUILD_EXAMPLES=OFF -DDM2S2_BUILD_BENCHMARKS=OFF -DDM2S2_INSTALL=OFF \
  -DDM2S2_XTENSOR=OFF >/dev/null
cmake --build build/fuzz -j"$(nproc)"
if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]]; then
  export TMPDIR=/dev/shm
fi
summary=()
status=0
for target in "${targets[@]}"; do
  work=build/fuzz/campaign/${target}
  mkdir -p "${work}/corpus"
  echo "== ${target}: ${seconds} s"
  log=${work}/last_run.log
  if ! build/fuzz/tests/fuzz/dm2s2_fuzz_"${target}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=1024 -dict=tests/fuzz/dm2s2.dict -artifact_prefix="${work}/" -print_final_stats=1 \
      "${work}/corpus" "tests/fuzz/corpus/${target}" >"${log}" 2>&1; then
    status=1
    tail -n 40 "${log}"
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "${log}" | grep -o '[0-9]*$' || echo "?")
  final=$(grep -E '^#[0-9]+\s+DONE' "${log}" | tail -n 1 || true)
  summary+=("${target}: ${runs} executions; ${final}")
done
printf '== %s\n' "${summary[@]}"
exit "${status}"
