#!/usr/bin/env bash
# Downloads the newest versions of dm2s2's header dependencies that vcpkg and Conan ship, as Debian
# unstable's packages (Eigen 5.0, xsimd 14, xtl, xtensor 0.27, nlohmann_json), and unpacks them into
# a prefix, without touching the system: apt runs with a private sources list and state directory.
#   bash scripts/newest_dependencies.sh DIR     → prefix DIR/usr (pass -DCMAKE_PREFIX_PATH=DIR/usr)
# Prints the versions it unpacked. Needs apt and dpkg-deb (Debian or Ubuntu) and the Debian archive.
set -euo pipefail
dir=$(mkdir -p "${1:?usage: newest_dependencies.sh DIR}" && cd "$1" && pwd)
packages=(libeigen3-dev libxsimd-dev xtl-dev libxtensor-dev nlohmann-json3-dev)
mkdir -p "${dir}/apt/lists/partial" "${dir}/apt/cache/archives/partial" "${dir}/debs"
echo "deb [trusted=yes] http://deb.debian.org/debian sid main" > "${dir}/apt/sources.list"
apt_options=(-o Dir::Etc::sourcelist="${dir}/apt/sources.list" -o Dir::Etc::sourceparts=/dev/null
  -o Dir::State="${dir}/apt" -o Dir::Cache="${dir}/apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${apt_options[@]}" update -qq
(cd "${dir}/debs" && rm -f ./*.deb && apt-get "${apt_options[@]}" download -qq "${packages[@]}")
rm -rf "${dir}/usr"
for deb in "${dir}"/debs/*.deb; do
  dpkg-deb -x "${deb}" "${dir}"
  dpkg-deb -f "${deb}" Package Version | paste -sd ' '
done
