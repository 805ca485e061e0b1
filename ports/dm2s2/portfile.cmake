# vcpkg overlay port of dm2s2, a header-only CMake library (with the feature "cuda", also the static
# library of dm2s2::cuda): the sources are this repository, so
#   vcpkg install dm2s2 --overlay-ports=<repository>/ports
# installs the checkout the port sits in.
set(VCPKG_BUILD_TYPE release)  # headers, and dm2s2::cuda's library in its release build only
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    simd DM2S2_USE_XSIMD
    text DM2S2_TEXT
    xtensor DM2S2_XTENSOR
    cuda DM2S2_CUDA
)
if("cuda" IN_LIST FEATURES)
  vcpkg_check_linkage(ONLY_STATIC_LIBRARY)  # dm2s2::cuda is a static library on every triplet
  # The toolkit the cuda port found; the architectures are the project's (80 and 90) unless a triplet
  # sets CMAKE_CUDA_ARCHITECTURES through VCPKG_CMAKE_CONFIGURE_OPTIONS.
  vcpkg_find_cuda(OUT_CUDA_TOOLKIT_ROOT cuda_toolkit_root)
  list(APPEND FEATURE_OPTIONS "-DCMAKE_CUDA_COMPILER=${NVCC}")
endif()

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

# No debug tree; lib/ holds dm2s2::cuda's library with the feature "cuda", else nothing.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug")
if(NOT "cuda" IN_LIST FEATURES)
  file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib")
endif()

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
