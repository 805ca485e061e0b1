# Configures and installs dm2s2 into a scratch prefix, then configures, builds and runs a consumer
# project that finds it with find_package(dm2s2 CONFIG REQUIRED). Any failing step fails the test.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

include(${CMAKE_CURRENT_LIST_DIR}/../run_step.cmake)

# CUDA_COMPILER (when the build has DM2S2_CUDA): the package then holds dm2s2::cuda too, built for one
# architecture, and the consumer links it as well.
set(cuda_options "")
set(consumer_cuda -DWITH_CUDA=OFF)
if(CUDA_COMPILER)
  set(cuda_options -DDM2S2_CUDA=ON -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER} -DCMAKE_CUDA_ARCHITECTURES=90)
  set(consumer_cuda -DWITH_CUDA=ON -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER})
endif()

# DEPENDENCY_PREFIX (the build's CMAKE_PREFIX_PATH): where the dependencies were found, for both.
run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/library -G ${GENERATOR}
  -DCMAKE_INSTALL_PREFIX=${prefix} -DDM2S2_BUILD_TESTS=OFF -DDM2S2_BUILD_EXAMPLES=OFF -DDM2S2_BUILD_BENCHMARKS=OFF
  -DDM2S2_INSTALL=ON "-DCMAKE_PREFIX_PATH=${DEPENDENCY_PREFIX}" ${cuda_options})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/library)  # dm2s2::cuda's library, when there is one
run_step(${CMAKE_COMMAND} --install ${WORK_DIR}/library)
if(NOT EXISTS ${prefix}/share/cmake/dm2s2/dm2s2Config.cmake OR NOT EXISTS ${prefix}/include/dm2s2/dm2s2.hpp)
  message(FATAL_ERROR "install tree is incomplete under ${prefix}")
endif()
# The dependencies' prefix goes by environment: a list in one argument would not survive run_step.
run_step(${CMAKE_COMMAND} -E env "CMAKE_PREFIX_PATH=${DEPENDENCY_PREFIX}"
  ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR}/consumer -B ${WORK_DIR}/consumer -G ${GENERATOR}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_PACKAGE_PREFER_CONFIG=ON ${consumer_cuda})
file(STRINGS ${WORK_DIR}/consumer/CMakeCache.txt eigen REGEX "^Eigen3_DIR:")
message(STATUS "consumer's ${eigen}")
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run_step(${WORK_DIR}/consumer/consumer)
run_step(${WORK_DIR}/consumer/text_consumer)
if(CUDA_COMPILER)
  run_step(${WORK_DIR}/consumer/cuda_consumer)
endif()
message(STATUS "consumer built and ran against ${prefix}")
