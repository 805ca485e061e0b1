#pragma once
// The parts of the CUDA backend that only its own translation units see: the device context, a
// stream-ordered scratch buffer, error checks and launch sizes.

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "dm2s2/backend/cuda/cuda_backend.hpp"

namespace dm2s2::detail::cuda {

/// The process's device: one non-blocking stream and a cuBLAS handle bound to it.
class context {
public:
    explicit context(int device);
    context(const context&) = delete;
    context& operator=(const context&) = delete;

    int device() const noexcept { return device_; }
    const std::string& name() const noexcept { return name_; }
    /// The stream, with the context's device made current for the calling thread.
    cudaStream_t stream();
    cublasHandle_t blas();

private:
    int device_;
    std::string name_;
    cudaStream_t stream_{};
    cublasHandle_t blas_{};
};

/// The process's context for `cuda_space`: the one a backend made, or one on device 0 when no
/// backend has been made yet.
context& current_context();

/// Throws `dm2s2::error` naming `what` and the runtime's error when `status` is not success.
void check(cudaError_t status, const char* what);
/// Throws when a kernel launch failed (bad configuration, no device, an earlier fault).
void check_launch(const char* kernel);

/// Device memory for one operation's scratch, allocated and released in stream order.
class device_buffer {
public:
    device_buffer(context& c, std::size_t bytes);
    ~device_buffer();
    device_buffer(device_buffer&& other) noexcept : stream_(other.stream_), data_(std::exchange(other.data_, nullptr)) {}
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    device_buffer& operator=(device_buffer&&) = delete;

    template <class T>
    T* as() const noexcept
    {
        return static_cast<T*>(data_);
    }

private:
    cudaStream_t stream_;
    void* data_ = nullptr;
};

/// C[m, n] (row stride ldc) = beta C, or 0 when beta is 0.
template <class T>
void scale_matrix(context& c, T* out, std::size_t m, std::size_t n, std::size_t ldc, T beta);

}  // namespace dm2s2::detail::cuda
