# vcpkg overlay port of dm2s2, a header-only CMake library: the sources are this repository, so
#   vcpkg install dm2s2 --overlay-ports=<repository>/ports
# installs the checkout the port sits in.
set(VCPKG_BUILD_TYPE release)  # header-only: one configuration, nothing under debug/
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    simd DM2S2_USE_XSIMD
    text DM2S2_TEXT
    xtensor DM2S2_XTENSOR
)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DDM2S2_BUILD_TESTS=OFF
    -DDM2S2_BUILD_EXAMPLES=OFF
    -DDM2S2_BUILD_BENCHMARKS=OFF
    -DDM2S2_INSTALL=ON
    -DDM2S2_INSTALL_DOCS=OFF
    -DDM2S2_INSTALL_CMAKEDIR=share/${PORT}
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH share/${PORT})

# Header-only: no libraries, no debug tree.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib" "${CURRENT_PACKAGES_DIR}/debug")

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
