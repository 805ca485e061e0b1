# dm2s2::cuda: cuda_backend's kernels (src/cuda), compiled by nvcc into a static library that links
# the CUDA runtime; cuBLAS is loaded by the first device context (dlopen), not linked, so that programs
# running on the CPU do not load it. Its header (dm2s2/backend/cuda/cuda_backend.hpp) needs neither
# nvcc nor the CUDA headers, so programs using it are built by the C++ compiler as usual.
#
# Architectures: CMAKE_CUDA_ARCHITECTURES, by default Hopper (sm_90) and Ampere (sm_80).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

add_library(dm2s2_cuda STATIC src/cuda/cuda_runtime.cu src/cuda/cuda_kernels.cu)
add_library(dm2s2::cuda ALIAS dm2s2_cuda)
set_target_properties(dm2s2_cuda PROPERTIES EXPORT_NAME cuda POSITION_INDEPENDENT_CODE ON)
target_link_libraries(dm2s2_cuda PUBLIC dm2s2 PRIVATE CUDA::cudart ${CMAKE_DL_LIBS})
target_compile_definitions(dm2s2_cuda PUBLIC DM2S2_HAS_CUDA)
# CMake 3.25 does not tell nvcc 13 which C++ standard to use: say it here. The kernels call the
# library's constexpr functions (the dropout generator) on the device. No fused multiply-adds: the
# kernels round each product and sum as the host definitions do.
target_compile_options(dm2s2_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --expt-relaxed-constexpr --fmad=false -Xcompiler=-Wall,-Wextra>
  $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${DM2S2_WARNINGS_AS_ERRORS}>>:-Werror=all-warnings -Xcompiler=-Werror>)
