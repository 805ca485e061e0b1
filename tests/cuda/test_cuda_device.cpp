// How cuda_backend meets the machine: made on a usable device, refused with the runtime's reason
// without one (as on every CI and development machine without a GPU); cuBLAS loaded when a device
// context needs it, not when the program starts.

#include <fstream>
#include <iterator>
#include <string>

#include <doctest/doctest.h>

#include "dm2s2/backend/cuda/cuda_backend.hpp"
#include "dm2s2/core/error.hpp"

using namespace dm2s2;

TEST_CASE("cuda_backend is made on a usable device and refused, naming the cause, without a device")
{
    const cuda_device_report devices = cuda_devices();
    if (devices.count == 0) {
        CHECK_FALSE(devices.reason.empty());
        std::string message;
        try {
            const cuda_backend backend;
        } catch (const error& e) {
            message = e.what();
        }
        CAPTURE(message);
        CHECK(message.find("cuda_backend: no usable CUDA device") == 0);
        CHECK(message.find(devices.reason) != std::string::npos);
        // Memory of the device is refused the same way, and so is every later attempt.
        using device_tensor = tensor<float, cuda_space>;
        CHECK_THROWS_AS(device_tensor({4}, uninitialized), error);
        CHECK_THROWS_WITH_AS(cuda_backend(cuda_options{.device = 1}), doctest::Contains("no usable CUDA device"), error);
    } else {
        const cuda_backend backend;
        CHECK(backend.device_name() == devices.name);
        // One device per process: the first backend chose device 0.
        CHECK_THROWS_WITH_AS(cuda_backend(cuda_options{.device = devices.count}),
                             doctest::Contains("this process runs on device 0"), error);
    }
}

namespace {

/// Whether the process has cuBLAS mapped (Linux's list of the process's mappings).
bool cublas_mapped()
{
    std::ifstream maps("/proc/self/maps");
    const std::string text(std::istreambuf_iterator<char>(maps), {});
    return text.find("libcublas.so") != std::string::npos;
}

}  // namespace

TEST_CASE("cuBLAS is loaded on demand with every function the backend calls; without a device only when asked")
{
    if (cuda_devices().count == 0) {
        // No context can be made: nothing has loaded cuBLAS, even after a backend was refused.
        CHECK_THROWS_AS(cuda_backend(), error);
        CHECK_FALSE(cublas_mapped());
    }
    const std::string file = detail::cuda::cublas_file();
    CAPTURE(file);
    CHECK(file.find('/') != std::string::npos);  // the path it was loaded from
    CHECK(file.find("libcublas.so.") != std::string::npos);
    CHECK(cublas_mapped());
    CHECK(detail::cuda::cublas_file() == file);  // loaded once
}
