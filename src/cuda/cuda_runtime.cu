// The process's CUDA device state behind `cuda_backend` and `cuda_space`: the stream, the cuBLAS
// handle, stream-ordered allocation, transfers, and the matrix products.

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <link.h>

#include <climits>
#include <cstdint>
#include <mutex>
#include <string>

#include "context.cuh"
#include "dm2s2/core/error.hpp"

namespace dm2s2 {
namespace detail::cuda {

void check(cudaError_t status, const char* what)
{
    if (status != cudaSuccess)
        throw error(std::string("cuda_backend: ") + what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                    ")");
}

void check_blas(cublasStatus_t status, const char* what)
{
    if (status != CUBLAS_STATUS_SUCCESS)
        throw error(std::string("cuda_backend: ") + what + ": cuBLAS status " + std::to_string(static_cast<int>(status)));
}

namespace {

/// cublasGemmEx with a cuBLAS compute type, the library's function (the header adds an inline C++
/// overload taking a cudaDataType).
using gemm_ex_function = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

/// The cuBLAS functions the backend calls, from the library loaded at the first context. Linked
/// instead, cuBLAS and cuBLASLt (over half a gigabyte) would be loaded and initialised at the start
/// of every program that links `dm2s2::cuda`, whether it uses a GPU or not.
struct cublas_library {
    std::string file;
    decltype(&cublasCreate) create;
    decltype(&cublasSetStream) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSgemm) sgemm;
    decltype(&cublasDgemm) dgemm;
    decltype(static_cast<gemm_ex_function>(&cublasGemmEx)) gemm_ex;  // the header's declaration, checked
};

// The name a cuBLAS function has in the library: cublas_v2.h maps some names to versioned ones
// (cublasCreate to cublasCreate_v2), which the macro's argument is expanded to before it is quoted.
#define DM2S2_CUBLAS_SYMBOL(function) DM2S2_CUBLAS_QUOTED(function)
#define DM2S2_CUBLAS_QUOTED(name) #name

template <class Function>
Function cublas_symbol(void* library, const char* name, const std::string& file)
{
    void* address = dlsym(library, name);
    if (address == nullptr) throw error("cuda_backend: " + file + " has no function " + name);
    return reinterpret_cast<Function>(address);
}

/// The path the dynamic linker loaded `library` from, or `asked` when it does not say.
std::string loaded_path(void* library, const std::string& asked)
{
    link_map* map = nullptr;
    if (dlinfo(library, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr && *map->l_name != '\0')
        return map->l_name;
    return asked;
}

/// Opens the cuBLAS of the toolkit the library was built with: by the dynamic linker's search (the
/// program's run path, LD_LIBRARY_PATH, the system's cache), else beside the CUDA runtime the
/// program loaded, where the toolkit keeps it. The library stays loaded until the process ends.
void* open_cublas(std::string& file)
{
    const std::string name = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    if (void* library = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        file = loaded_path(library, name);
        return library;
    }
    const std::string why = dlerror();
    Dl_info runtime{};
    if (dladdr(reinterpret_cast<const void*>(&cudaGetDeviceCount), &runtime) != 0 && runtime.dli_fname != nullptr) {
        std::string beside = runtime.dli_fname;
        beside = beside.substr(0, beside.rfind('/') + 1) + name;
        if (void* library = dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL)) {
            file = loaded_path(library, beside);
            return library;
        }
    }
    throw error("cuda_backend: cannot load cuBLAS (" + name + "), which the CUDA backend needs: " + why);
}

const cublas_library& cublas()
{
    static const cublas_library loaded = [] {
        cublas_library l;
        void* library = open_cublas(l.file);
        l.create = cublas_symbol<decltype(l.create)>(library, DM2S2_CUBLAS_SYMBOL(cublasCreate), l.file);
        l.set_stream = cublas_symbol<decltype(l.set_stream)>(library, DM2S2_CUBLAS_SYMBOL(cublasSetStream), l.file);
        l.set_math_mode = cublas_symbol<decltype(l.set_math_mode)>(library, DM2S2_CUBLAS_SYMBOL(cublasSetMathMode), l.file);
        l.sgemm = cublas_symbol<decltype(l.sgemm)>(library, DM2S2_CUBLAS_SYMBOL(cublasSgemm), l.file);
        l.dgemm = cublas_symbol<decltype(l.dgemm)>(library, DM2S2_CUBLAS_SYMBOL(cublasDgemm), l.file);
        l.gemm_ex = cublas_symbol<decltype(l.gemm_ex)>(library, DM2S2_CUBLAS_SYMBOL(cublasGemmEx), l.file);
        return l;
    }();
    return loaded;
}

}  // namespace

std::string cublas_file()
{
    return cublas().file;
}

int checked_int(std::size_t value, const char* what)
{
    if (value > static_cast<std::size_t>(INT_MAX))
        throw error(std::string("cuda_backend: ") + what + " = " + std::to_string(value) +
                    " exceeds what cuBLAS takes (2^31 - 1)");
    return static_cast<int>(value);
}

context::context(int device) : device_(device)
{
    int count = 0;
    if (const cudaError_t status = cudaGetDeviceCount(&count); status != cudaSuccess)
        throw error(std::string("cuda_backend: no usable CUDA device: ") + cudaGetErrorName(status) + " (" +
                    cudaGetErrorString(status) + ")");
    if (count == 0) throw error("cuda_backend: no usable CUDA device: the runtime found none");
    if (device < 0 || device >= count)
        throw error("cuda_backend: device " + std::to_string(device) + " does not exist (this machine has " +
                    std::to_string(count) + ")");
    check(cudaSetDevice(device), "cudaSetDevice");
    cudaDeviceProp properties{};
    check(cudaGetDeviceProperties(&properties, device), "cudaGetDeviceProperties");
    name_ = properties.name;
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    // Keep released memory in the pool for the next allocation instead of returning it at every
    // synchronisation: a model allocates the same sizes pass after pass.
    cudaMemPool_t pool{};
    check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
    std::uint64_t keep = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
    check_blas(cublas().create(&blas_), "cublasCreate");
    check_blas(cublas().set_stream(blas_, stream_), "cublasSetStream");
    // fp32 products in fp32: no TF32 tensor-core rounding.
    check_blas(cublas().set_math_mode(blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
}

cudaStream_t context::stream()
{
    check(cudaSetDevice(device_), "cudaSetDevice");
    return stream_;
}

cublasHandle_t context::blas()
{
    check(cudaSetDevice(device_), "cudaSetDevice");
    return blas_;
}

namespace {

/// The process's context, made by the first backend (or the first device allocation, on device 0)
/// and never destroyed: tensors in cuda_space may be released during static destruction, after which
/// the context must still be there; the driver reclaims everything at exit.
struct process_state {
    std::mutex mutex;
    context* made = nullptr;
};

process_state& state()
{
    static process_state s;
    return s;
}

}  // namespace

context& process_context(int device)
{
    auto& s = state();
    const std::lock_guard lock(s.mutex);
    if (s.made == nullptr) {
        s.made = new context(device);
    } else if (s.made->device() != device) {
        throw error("cuda_backend: this process runs on device " + std::to_string(s.made->device()) + "; device " +
                    std::to_string(device) + " was asked for");
    }
    return *s.made;
}

context& current_context()
{
    auto& s = state();
    const std::lock_guard lock(s.mutex);
    if (s.made == nullptr) s.made = new context(0);
    return *s.made;
}

void check_launch(const char* kernel)
{
    check(cudaGetLastError(), kernel);
}

void upload_bytes(context& c, const void* from, std::size_t bytes, void* to)
{
    if (bytes == 0) return;
    check(cudaMemcpyAsync(to, from, bytes, cudaMemcpyHostToDevice, c.stream()), "upload");
}

void download_bytes(context& c, const void* from, std::size_t bytes, void* to)
{
    if (bytes != 0) check(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToHost, c.stream()), "download");
    check(cudaStreamSynchronize(c.stream()), "download (an earlier operation failed)");
}

void copy_bytes(context& c, const void* from, std::size_t bytes, void* to)
{
    if (bytes == 0 || from == to) return;
    check(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, c.stream()), "copy");
}

void synchronize(context& c)
{
    check(cudaStreamSynchronize(c.stream()), "synchronize");
}

std::string device_name(context& c)
{
    return c.name();
}

std::size_t memory_high_water(context& c)
{
    cudaMemPool_t pool{};
    check(cudaDeviceGetDefaultMemPool(&pool, c.device()), "cudaDeviceGetDefaultMemPool");
    std::uint64_t bytes = 0;
    check(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &bytes), "cudaMemPoolGetAttribute");
    return static_cast<std::size_t>(bytes);
}

void reset_memory_high_water(context& c)
{
    cudaMemPool_t pool{};
    check(cudaDeviceGetDefaultMemPool(&pool, c.device()), "cudaDeviceGetDefaultMemPool");
    std::uint64_t zero = 0;  // the only value the attribute takes: the mark restarts from the current use
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), "cudaMemPoolSetAttribute");
}

device_buffer::device_buffer(context& c, std::size_t bytes) : stream_(c.stream())
{
    if (bytes != 0) check(cudaMallocAsync(&data_, bytes, stream_), "cudaMallocAsync (scratch)");
}

device_buffer::~device_buffer()
{
    // Unchecked: after a fault the runtime reports that fault here, and a destructor must not throw.
    if (data_ != nullptr) cudaFreeAsync(data_, stream_);
}

namespace {

/// The compute type of a float product in `precision` (tf32 or bf16): the tensor cores' TF32 or
/// bfloat16 rounding of the fp32 operands, with fp32 sums.
cublasComputeType_t rounded_compute_type(matmul_precision precision)
{
    return precision == matmul_precision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_FAST_16BF;
}

}  // namespace

template <class T>
void kernels<T>::gemm(context& c, matmul_precision precision, transpose ta, transpose tb, std::size_t m, std::size_t n,
                      std::size_t k, T alpha, const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* out,
                      std::size_t ldc)
{
    if (m == 0 || n == 0) return;
    if (k == 0) {  // nothing to sum: C = beta C, or 0 when beta is 0 (whatever C held)
        scale_matrix(c, out, m, n, ldc, beta);
        return;
    }
    // Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: the operands swap places.
    const cublasOperation_t op_b = tb == transpose::yes ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_a = ta == transpose::yes ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int in = checked_int(n, "n"), im = checked_int(m, "m"), ik = checked_int(k, "k");
    const int ilda = checked_int(lda, "lda"), ildb = checked_int(ldb, "ldb"), ildc = checked_int(ldc, "ldc");
    if constexpr (std::is_same_v<T, float>) {
        if (precision == matmul_precision::fp32)
            check_blas(cublas().sgemm(c.blas(), op_b, op_a, in, im, ik, &alpha, b, ildb, a, ilda, &beta, out, ildc),
                       "cublasSgemm");
        else
            check_blas(cublas().gemm_ex(c.blas(), op_b, op_a, in, im, ik, &alpha, b, CUDA_R_32F, ildb, a, CUDA_R_32F, ilda, &beta,
                                        out, CUDA_R_32F, ildc, rounded_compute_type(precision), CUBLAS_GEMM_DEFAULT),
                       precision == matmul_precision::tf32 ? "cublasGemmEx (tf32)" : "cublasGemmEx (bf16)");
    } else {
        (void)precision;  // double products are double in every mode
        check_blas(cublas().dgemm(c.blas(), op_b, op_a, in, im, ik, &alpha, b, ildb, a, ilda, &beta, out, ildc), "cublasDgemm");
    }
}

template void kernels<float>::gemm(context&, matmul_precision, transpose, transpose, std::size_t, std::size_t, std::size_t, float,
                                   const float*, std::size_t, const float*, std::size_t, float, float*, std::size_t);
template void kernels<double>::gemm(context&, matmul_precision, transpose, transpose, std::size_t, std::size_t, std::size_t,
                                    double, const double*, std::size_t, const double*, std::size_t, double, double*, std::size_t);

}  // namespace detail::cuda

cuda_device_report cuda_devices() noexcept
{
    cuda_device_report report;
    const cudaError_t status = cudaGetDeviceCount(&report.count);
    if (status != cudaSuccess) {
        report.count = 0;
        report.reason = std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
        return report;
    }
    if (report.count == 0) {
        report.reason = "the runtime found none";
        return report;
    }
    cudaDeviceProp properties{};
    if (cudaGetDeviceProperties(&properties, 0) == cudaSuccess) report.name = properties.name;
    return report;
}

void* cuda_space::allocate(std::size_t bytes)
{
    auto& c = detail::cuda::current_context();
    void* p = nullptr;
    detail::cuda::check(cudaMallocAsync(&p, bytes == 0 ? 1 : bytes, c.stream()), "cudaMallocAsync");
    return p;
}

void cuda_space::deallocate(void* p, std::size_t) noexcept
{
    if (p == nullptr) return;
    // At process exit the runtime may already be gone; the memory goes with it.
    try {
        cudaFreeAsync(p, detail::cuda::current_context().stream());
    } catch (...) {
    }
}

void cuda_space::copy(void* to, const void* from, std::size_t bytes)
{
    detail::cuda::copy_bytes(detail::cuda::current_context(), from, bytes, to);
}

}  // namespace dm2s2
