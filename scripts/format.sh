#!/usr/bin/env bash
# Checks that every C++ and CUDA file of the repository is formatted as .clang-format says, with clang-format 19
# (Debian: clang-format-19, which scripts/setup.sh installs; CLANG_FORMAT names another binary).
#   bash scripts/format.sh          lists the files that differ and fails if there is one
#   bash scripts/format.sh --fix    rewrites them
set -euo pipefail
cd "$(dirname "$0")/.."
format=${CLANG_FORMAT:-clang-format-19}
if ! command -v "${format}" >/dev/null; then
  echo "format: ${format} not found (Debian: clang-format-19; or set CLANG_FORMAT)" >&2
  exit 1
fi
mapfile -t files < <(find include src tests examples benchmarks test_package -name '*.hpp' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' | sort)
if [ "${1:-}" = "--fix" ]; then
  "${format}" -i "${files[@]}"
  echo "format: ${#files[@]} files formatted"
  exit 0
fi
differ=()
for f in "${files[@]}"; do
  "${format}" "${f}" | cmp -s - "${f}" || differ+=("${f}")
done
if [ ${#differ[@]} -ne 0 ]; then
  printf 'format: not formatted as .clang-format says: %s\n' "${differ[@]}" >&2
  echo "format: ${#differ[@]} of ${#files[@]} files differ; bash scripts/format.sh --fix rewrites them" >&2
  exit 1
fi
echo "format: ${#files[@]} files formatted as .clang-format says"
