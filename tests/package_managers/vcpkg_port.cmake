# Runs the repository's vcpkg overlay port (ports/dm2s2/portfile.cmake) the way vcpkg would, with
# the vcpkg helper functions it calls emulated here, since vcpkg cannot run without its registry:
# features become CMake options as vcpkg_check_features makes them, the project is configured with
# the port's options and installed into a package directory, then vcpkg's post-build rules are
# checked (config under share/<port>, copyright and usage there, no lib/ or debug/ for a header-only
# port, no absolute build paths in installed files), the package is copied into an installed tree
# laid out as vcpkg's (installed/<triplet>/...), and a consumer is built and run against it with
# find_package, with the dependencies found in DEPENDENCY_PREFIX (the newest versions in the sanitize
# lane).
# With CUDA_COMPILER (nvcc), the feature "cuda" is asked for too, as vcpkg's cuda port would find that
# toolkit, and built for sm_90 as a triplet's VCPKG_CMAKE_CONFIGURE_OPTIONS would ask; without it, every
# other feature.
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch> -DCXX_COMPILER=<c++> -DGENERATOR=<generator>
#         "-DDEPENDENCY_PREFIX=<prefixes>" [-DCUDA_COMPILER=<nvcc>] -P tests/package_managers/vcpkg_port.cmake
cmake_minimum_required(VERSION 3.20)
file(REMOVE_RECURSE ${WORK_DIR})
set(here ${CMAKE_CURRENT_LIST_DIR})

set(PORT dm2s2)
set(TARGET_TRIPLET x64-linux)
set(CURRENT_BUILDTREES_DIR ${WORK_DIR}/buildtrees/${PORT})
set(CURRENT_PACKAGES_DIR ${WORK_DIR}/packages/${PORT}_${TARGET_TRIPLET})
set(CURRENT_INSTALLED_DIR ${WORK_DIR}/installed/${TARGET_TRIPLET})
set(port_dir ${SOURCE_DIR}/ports/${PORT})

include(${here}/../run_step.cmake)

# ---- the manifest --------------------------------------------------------------------------------
file(READ ${port_dir}/vcpkg.json manifest)
string(JSON name GET "${manifest}" name)
string(JSON version GET "${manifest}" version)
file(STRINGS ${SOURCE_DIR}/CMakeLists.txt project_line REGEX "^project\\(dm2s2 VERSION")
string(REGEX MATCH "VERSION ([0-9.]+)" _ "${project_line}")
if(NOT name STREQUAL PORT OR NOT version STREQUAL CMAKE_MATCH_1)
  message(FATAL_ERROR "vcpkg.json names ${name} ${version}; the project is ${PORT} ${CMAKE_MATCH_1}")
endif()
string(JSON feature_count LENGTH "${manifest}" features)
set(manifest_features "")
math(EXPR last "${feature_count} - 1")
foreach(i RANGE ${last})
  string(JSON feature MEMBER "${manifest}" features ${i})
  list(APPEND manifest_features ${feature})
endforeach()
# Every feature, as vcpkg install dm2s2[simd,text,xtensor,cuda] asks for them; "cuda" only with a toolkit.
set(FEATURES core ${manifest_features})
if(CUDA_COMPILER)
  set(VCPKG_CMAKE_CONFIGURE_OPTIONS -DCMAKE_CUDA_ARCHITECTURES=90)
else()
  list(REMOVE_ITEM FEATURES cuda)
endif()

# ---- vcpkg's helpers, emulated -------------------------------------------------------------------
function(vcpkg_check_features)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "OUT_FEATURE_OPTIONS" "FEATURES")
  set(options "")
  set(pairs ${arg_FEATURES})
  while(pairs)
    list(POP_FRONT pairs feature option)
    if(feature IN_LIST FEATURES)
      list(APPEND options -D${option}=ON)
    else()
      list(APPEND options -D${option}=OFF)
    endif()
    set_property(GLOBAL APPEND PROPERTY mapped_features ${feature})
  endwhile()
  set(${arg_OUT_FEATURE_OPTIONS} ${options} PARENT_SCOPE)
endfunction()

function(vcpkg_check_linkage)  # x64-linux links statically already: only the argument is checked
  if(NOT ARGN STREQUAL "ONLY_STATIC_LIBRARY")
    message(FATAL_ERROR "vcpkg_check_linkage(${ARGN}): this emulation knows ONLY_STATIC_LIBRARY")
  endif()
endfunction()

function(vcpkg_find_cuda)  # the cuda port's helper: NVCC and the toolkit's root, or an error
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "OUT_CUDA_TOOLKIT_ROOT" "")
  if(NOT CUDA_COMPILER)
    message(FATAL_ERROR "Could not find CUDA")
  endif()
  set(NVCC ${CUDA_COMPILER} PARENT_SCOPE)
  get_filename_component(bin ${CUDA_COMPILER} DIRECTORY)
  get_filename_component(root ${bin} DIRECTORY)
  set(${arg_OUT_CUDA_TOOLKIT_ROOT} ${root} PARENT_SCOPE)
endfunction()

function(vcpkg_cmake_configure)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "SOURCE_PATH" "OPTIONS;OPTIONS_RELEASE;OPTIONS_DEBUG")
  set(configurations rel)
  if(NOT VCPKG_BUILD_TYPE STREQUAL "release")
    list(APPEND configurations dbg)
  endif()
  foreach(configuration IN LISTS configurations)
    set(prefix ${CURRENT_PACKAGES_DIR})
    set(type Release)
    if(configuration STREQUAL "dbg")
      set(prefix ${CURRENT_PACKAGES_DIR}/debug)
      set(type Debug)
    endif()
    string(REPLACE ";" "\\;" prefix_path "${CURRENT_INSTALLED_DIR};${DEPENDENCY_PREFIX}")
    run_step(${CMAKE_COMMAND} -S ${arg_SOURCE_PATH} -B ${CURRENT_BUILDTREES_DIR}/${TARGET_TRIPLET}-${configuration}
      -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=${type} -DCMAKE_INSTALL_PREFIX=${prefix}
      "-DCMAKE_PREFIX_PATH=${prefix_path}" ${arg_OPTIONS} ${VCPKG_CMAKE_CONFIGURE_OPTIONS})
    set_property(GLOBAL APPEND PROPERTY configured_builds ${CURRENT_BUILDTREES_DIR}/${TARGET_TRIPLET}-${configuration})
  endforeach()
endfunction()

function(vcpkg_cmake_install)
  get_property(builds GLOBAL PROPERTY configured_builds)
  foreach(build IN LISTS builds)
    run_step(${CMAKE_COMMAND} --build ${build})
    run_step(${CMAKE_COMMAND} --install ${build})
  endforeach()
endfunction()

function(vcpkg_cmake_config_fixup)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "CONFIG_PATH;PACKAGE_NAME" "")
  if(NOT arg_CONFIG_PATH STREQUAL "share/${PORT}")
    message(FATAL_ERROR "the port installs its CMake files to ${arg_CONFIG_PATH}; this emulation expects share/${PORT}, "
      "where they need no path rewriting")
  endif()
  if(NOT EXISTS ${CURRENT_PACKAGES_DIR}/share/${PORT}/dm2s2Config.cmake)
    message(FATAL_ERROR "vcpkg_cmake_config_fixup: no dm2s2Config.cmake in ${CURRENT_PACKAGES_DIR}/share/${PORT}")
  endif()
  file(REMOVE_RECURSE ${CURRENT_PACKAGES_DIR}/debug/share)
endfunction()

function(vcpkg_install_copyright)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "FILE_LIST")
  file(READ ${arg_FILE_LIST} text)
  file(WRITE ${CURRENT_PACKAGES_DIR}/share/${PORT}/copyright "${text}")
endfunction()

# ---- the port ------------------------------------------------------------------------------------
include(${port_dir}/portfile.cmake)

get_property(mapped GLOBAL PROPERTY mapped_features)
list(SORT mapped)
list(SORT manifest_features)
if(NOT mapped STREQUAL manifest_features)
  message(FATAL_ERROR "vcpkg.json declares features '${manifest_features}', the portfile maps '${mapped}'")
endif()

# ---- vcpkg's post-build rules for a header-only CMake port (with "cuda", one static library) -----
set(share ${CURRENT_PACKAGES_DIR}/share/${PORT})
foreach(required include/dm2s2/dm2s2.hpp include/dm2s2/interop/xtensor.hpp share/${PORT}/dm2s2Config.cmake
                 share/${PORT}/dm2s2ConfigVersion.cmake share/${PORT}/dm2s2Targets.cmake share/${PORT}/copyright share/${PORT}/usage)
  if(NOT EXISTS ${CURRENT_PACKAGES_DIR}/${required})
    message(FATAL_ERROR "the package lacks ${required}")
  endif()
endforeach()
file(GLOB top RELATIVE ${CURRENT_PACKAGES_DIR} ${CURRENT_PACKAGES_DIR}/*)
list(SORT top)
if("cuda" IN_LIST FEATURES)
  file(GLOB_RECURSE libraries RELATIVE ${CURRENT_PACKAGES_DIR} ${CURRENT_PACKAGES_DIR}/lib/*)
  if(NOT top STREQUAL "include;lib;share" OR NOT libraries STREQUAL "lib/libdm2s2_cuda.a")
    message(FATAL_ERROR "with cuda, the package holds include/, share/ and lib/libdm2s2_cuda.a only, not: ${top} (lib: "
      "${libraries})")
  endif()
elseif(NOT top STREQUAL "include;share")
  message(FATAL_ERROR "a header-only package holds include/ and share/ only, not: ${top}")
endif()
file(GLOB share_entries RELATIVE ${CURRENT_PACKAGES_DIR}/share ${CURRENT_PACKAGES_DIR}/share/*)
if(NOT share_entries STREQUAL PORT)
  message(FATAL_ERROR "share/ holds ${share_entries}; vcpkg expects share/${PORT} only")
endif()
file(READ ${SOURCE_DIR}/LICENSE license)
file(READ ${share}/copyright copyright)
if(NOT license STREQUAL copyright)
  message(FATAL_ERROR "share/${PORT}/copyright is not the project's LICENSE")
endif()
file(READ ${share}/usage usage)
file(READ ${share}/dm2s2Targets.cmake targets_file)
string(REGEX MATCHALL "add_library\\(dm2s2::[a-z0-9_]+" exported "${targets_file}")
list(TRANSFORM exported REPLACE "add_library\\(" "")
foreach(target IN LISTS exported)
  if(NOT usage MATCHES "${target}")
    message(FATAL_ERROR "the usage file does not mention the exported target ${target}")
  endif()
endforeach()
file(GLOB_RECURSE installed_files ${share}/*)
foreach(f IN LISTS installed_files)
  file(READ ${f} text)
  foreach(path ${CURRENT_PACKAGES_DIR} ${CURRENT_BUILDTREES_DIR} ${SOURCE_DIR})
    string(FIND "${text}" "${path}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${f} holds the absolute path ${path}: the package would not move")
    endif()
  endforeach()
endforeach()

string(REPLACE ";" "," exported_targets "${exported}")  # one argument through run_step
set(consumer_cuda -DWITH_CUDA=OFF)
if("cuda" IN_LIST FEATURES)
  set(consumer_cuda -DWITH_CUDA=ON -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER})
endif()

# ---- installed/<triplet>, and a consumer -----------------------------------------------------------
file(COPY ${CURRENT_PACKAGES_DIR}/ DESTINATION ${CURRENT_INSTALLED_DIR})
file(REMOVE_RECURSE ${CURRENT_PACKAGES_DIR})  # the consumer must not find the package directory
run_step(${CMAKE_COMMAND} -E env "CMAKE_PREFIX_PATH=${DEPENDENCY_PREFIX}"
  ${CMAKE_COMMAND} -S ${here}/vcpkg_consumer -B ${WORK_DIR}/consumer -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${CURRENT_INSTALLED_DIR}
  -DSOURCE_DIR=${SOURCE_DIR} -DEXPECTED_TARGETS=${exported_targets} ${consumer_cuda})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run_step(${WORK_DIR}/consumer/test_package)
run_step(${WORK_DIR}/consumer/xtensor_features)
if("cuda" IN_LIST FEATURES)
  run_step(${WORK_DIR}/consumer/cuda_consumer)
endif()
list(REMOVE_ITEM FEATURES core)
message(STATUS "vcpkg port: features ${FEATURES}; targets ${exported}; consumer built and ran against ${CURRENT_INSTALLED_DIR}")
