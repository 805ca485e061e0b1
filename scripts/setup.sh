#!/usr/bin/env bash
# Installs what building dm2s2, its tests, examples and benchmarks needs on Debian (bookworm or
# later), skipping the package manager entirely when everything is already there. Needs root
# (or sudo) only when something is missing. Further packages may be named as arguments
# (benchmarks/compare.sh adds PyTorch and OpenBLAS this way).
set -euo pipefail

packages=(g++ clang cmake make ninja-build libeigen3-dev xtensor-dev libxsimd-dev nlohmann-json3-dev doctest-dev libbenchmark-dev
  libutf8proc-dev libopenmpi-dev openmpi-bin clang-format-19 libclang-rt-14-dev "$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root to install: ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
echo "setup: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
