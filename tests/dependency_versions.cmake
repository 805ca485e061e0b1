# dm2s2 finds its dependencies at any supported version and refuses others by name: configuring it
# against a stand-in Eigen3 package of version 2.9 or 6.0 must fail with the range and what was found.
#   cmake -DSOURCE_DIR=<repository> -DWORK_DIR=<scratch> -P dependency_versions.cmake
foreach(version 2.9.0 6.0.0)
  set(fake ${WORK_DIR}/eigen-${version})
  file(REMOVE_RECURSE ${fake})
  file(WRITE ${fake}/share/eigen3/cmake/Eigen3Config.cmake "add_library(Eigen3::Eigen INTERFACE IMPORTED)\n")
  file(WRITE ${fake}/share/eigen3/cmake/Eigen3ConfigVersion.cmake
    "set(PACKAGE_VERSION ${version})\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n")
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${fake}/build -DCMAKE_PREFIX_PATH=${fake}
      -DDM2S2_BUILD_TESTS=OFF -DDM2S2_BUILD_EXAMPLES=OFF -DDM2S2_BUILD_BENCHMARKS=OFF -DDM2S2_INSTALL=OFF
    RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(result EQUAL 0)
    message(FATAL_ERROR "dm2s2 configured against Eigen3 ${version}, which it does not support")
  endif()
  if(NOT out MATCHES "dm2s2 supports Eigen3 from 3.4 up to, not including, 6; found ${version}")
    message(FATAL_ERROR "configuring against Eigen3 ${version} failed without naming the range:\n${out}")
  endif()
  message(STATUS "Eigen3 ${version} refused by name")
endforeach()
