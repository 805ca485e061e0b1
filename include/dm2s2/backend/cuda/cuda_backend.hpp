#pragma once
/// \file
/// `cuda_backend`: the backend policy for NVIDIA GPUs, and `cuda_space`, the GPU memory its tensors
/// live in.
///
/// The kernels are compiled once, by nvcc, into the library target `dm2s2::cuda` (CMake option
/// `DM2S2_CUDA`); this header declares them and needs neither nvcc nor the CUDA headers, so code using
/// the backend is ordinary C++ built by any compiler. What it promises:
/// - one non-blocking stream per process carries every kernel, copy, allocation and release in order
///   (`cudaMallocAsync`/`cudaFreeAsync`: stream-ordered, no managed memory), with cuBLAS bound to it;
///   the host waits only when a result is downloaded (or `synchronize` is called);
/// - float products follow `cuda_options::precision`: fp32 (TF32 off, the default), tf32 or bf16
///   (tensor cores, fp32 sums); double products are double;
/// - every reduction runs in a fixed order, without atomics, so the same inputs give the same bits from
///   run to run;
/// - constructing a backend where there is no usable device throws `dm2s2::error` naming the cause.
///
/// The kernels follow the host backends' definitions (`reference_backend`, `row_kernels.hpp`,
/// `backward_kernels.hpp`, `training_kernels.hpp`) operation for operation; sums accumulate in double.
/// `add_rows`, whose targets could repeat, sums each target in the order of the index array, as on the
/// host; column sums (bias gradients, dγ, dβ) add chunks of rows, then the chunks, in a fixed order
/// (dγ and dβ in double, rounded once: the host rounds each row's term, so their last bits differ).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "dm2s2/backend/backend.hpp"
#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/backend/precision.hpp"
#include "dm2s2/backend/training_kernels.hpp"
#include "dm2s2/core/memory_space.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2 {

/// The memory of the process's CUDA device. Host code may not touch it; tensors in it are reached
/// through a `cuda_backend`. Allocations and releases are ordered on the backend's stream, so a
/// buffer released while kernels that use it are queued stays valid until they have run.
struct cuda_space {
    static constexpr const char* name() noexcept { return "cuda"; }
    static constexpr bool host_accessible = false;

    static void* allocate(std::size_t bytes);
    static void deallocate(void* p, std::size_t bytes) noexcept;
    /// Copies bytes between two buffers of the space, in stream order.
    static void copy(void* to, const void* from, std::size_t bytes);
};

/// Settings of a `cuda_backend`.
struct cuda_options {
    /// The device to run on. A process runs on one device: the first backend made picks it (device 0
    /// when a tensor of `cuda_space` is made before any backend), and a later one naming another is
    /// refused.
    int device = 0;
    /// How float products are computed: fp32 (exact fp32 products, for parity), tf32 or bf16 (cuBLAS
    /// rounds the fp32 operands to TF32 or bfloat16 for the tensor cores and sums in fp32). The
    /// backend's other kernels compute in fp32 in every mode, as the CPU backend's do.
    matmul_precision precision = matmul_precision::fp32;
};

/// What the CUDA runtime reports about the devices of this machine.
struct cuda_device_report {
    int count = 0;       ///< usable devices
    std::string reason;  ///< why there is none, when count is 0 (the runtime's words)
    std::string name;    ///< the first device's name, when there is one
};

/// Asks the CUDA runtime how many devices it can use; never throws.
cuda_device_report cuda_devices() noexcept;

namespace detail::cuda {

/// The process's device state: its stream, cuBLAS handle and scratch buffers (defined in the library).
class context;

/// The path of the cuBLAS the process loaded, loading it with every function the backend calls
/// when no context has yet; throws `dm2s2::error` naming the library and what is missing. cuBLAS
/// is loaded by the first context, not when the program starts: a program that links `dm2s2::cuda`
/// and runs on the CPU never loads it.
std::string cublas_file();

/// The context of the process's device `device`, made on first use; asking for another device than
/// the one in use throws.
context& process_context(int device);

/// The element type of an index array, known to the kernels at run time (one compiled kernel serves
/// every index type a module uses).
enum class index_type : std::uint8_t { identity, u32, i32, u64, i64 };

/// An index array of the device (null: the identity, "row i").
struct index_array {
    const void* data = nullptr;
    index_type type = index_type::identity;
};

template <class Index>
index_array make_index_array(device_ptr<const Index, cuda_space> p) noexcept
{
    static_assert(std::is_integral_v<Index> && (sizeof(Index) == 4 || sizeof(Index) == 8),
                  "cuda_backend: index arrays hold 32- or 64-bit integers");
    if (!p) return {};
    constexpr bool is_signed = std::is_signed_v<Index>;
    constexpr index_type type =
        sizeof(Index) == 4 ? (is_signed ? index_type::i32 : index_type::u32) : (is_signed ? index_type::i64 : index_type::u64);
    return {p.device_address(), type};
}

/// Where each sequence of a batch lies: its first row, its length and the offset of its attention maps.
struct sequence_extent {
    std::uint64_t first_row = 0, length = 0, map_offset = 0;
};

/// The kernels for scalar T, on raw device addresses (defined and instantiated for float and double
/// in the library). The `cuda_backend` members below forward to them.
template <class T>
struct kernels {
    static void gemm(context&, matmul_precision precision, transpose ta, transpose tb, std::size_t m, std::size_t n,
                     std::size_t k, T alpha, const T* a, std::size_t lda, const T* b, std::size_t ldb, T beta, T* c,
                     std::size_t ldc);
    static void add_row_vector(context&, T* x, std::size_t rows, std::size_t cols, std::size_t ldx, const T* v);
    static void gelu(context&, T* x, std::size_t n);
    static void tanh(context&, T* x, std::size_t n);
    static void masked_softmax(context&, T* x, std::size_t n, const std::uint8_t* keep);
    static void layer_norm(context&, const T* x, const T* residual, T* y, std::size_t rows, std::size_t cols, const T* gamma,
                           const T* beta, T eps);
    static void attention_forward(context&, const std::vector<sequence_extent>& sequences, std::size_t longest, std::size_t heads,
                                  std::size_t head_dim, T scale, const T* q, const T* k, const T* v, const std::uint8_t* key_mask,
                                  T* probabilities, dropout_draw dropout, T* context_out);
    static void attention_backward(context&, const std::vector<sequence_extent>& sequences, std::size_t longest,
                                   std::size_t heads, std::size_t head_dim, T scale, const T* q, const T* k, const T* v,
                                   const T* probabilities, dropout_draw dropout, const T* d_context, T* dq, T* dk, T* dv);
    static void scale_rows(context&, T* x, const T* factors, std::size_t rows, std::size_t width);
    static void add(context&, const T* a, const T* b, T* out, std::size_t n);
    static void dropout(context&, T* x, std::size_t n, dropout_draw draw, std::size_t offset);
    static void copy_rows(context&, const T* from, index_array from_rows, T* to, index_array to_rows, std::size_t count,
                          std::size_t width);
    static void add_rows(context&, const T* from, index_array from_rows, T* to, index_array to_rows, std::size_t count,
                         std::size_t width);
    static void add_type_and_position_rows(context&, T* rows, std::size_t count, std::size_t width, const T* types,
                                           index_array type_ids, const T* positions, index_array position_ids);
    static void scale_shift_rows(context&, const T* values, const T* scale, const T* shift, T* to, index_array to_rows,
                                 std::size_t count, std::size_t width);
    static void scale_shift_rows_backward(context&, const T* values, const T* d_rows, index_array from_rows, std::size_t count,
                                          std::size_t width, T* d_scale, T* d_shift);
    static void segment_attention_pool(context&, const T* rows, std::size_t width, const row_group* groups,
                                       std::size_t group_count, T* scores, const T* residual, T* pooled);
    static void segment_attention_pool_backward(context&, const T* rows, std::size_t width, const row_group* groups,
                                                std::size_t group_count, const T* weights, const T* residual, const T* d_pooled,
                                                T* d_rows, T* d_scores, T* d_residual);
    static void max_pool(context&, const T* x, std::size_t width, const row_group* groups, std::size_t group_count, T* out,
                         std::uint32_t* argmax);
    static void max_pool_backward(context&, const T* d_out, std::size_t width, std::size_t group_count,
                                  const std::uint32_t* argmax, std::size_t rows, T* dx);
    static void gelu_backward(context&, const T* x, T* grad, std::size_t n);
    static void tanh_backward(context&, const T* y, T* grad, std::size_t n);
    static void masked_softmax_backward(context&, const T* p, T* grad, std::size_t n);
    static void layer_norm_backward(context&, const T* v, const T* dy, T* dv, std::size_t rows, std::size_t cols, const T* gamma,
                                    T eps, T* dgamma, T* dbeta);
    static void add_column_sums(context&, const T* x, std::size_t rows, std::size_t cols, std::size_t ldx, T* out);
    static void softmax_cross_entropy(context&, const T* logits, const T* classes, std::size_t batch, std::size_t outputs,
                                      T* grad, double weight, double* loss);
    static void binary_cross_entropy(context&, const T* logits, const T* targets, std::size_t n, T* grad, double weight,
                                     double* loss);
    static void squared_error(context&, const T* logits, const T* targets, std::size_t n, T* grad, double weight, double* loss);
    static void sum_of_squares(context&, const std::vector<buffer_view<const T*>>& buffers, double* norm);
    static void scale_buffers(context&, const std::vector<buffer_view<T*>>& buffers, double factor);
    static void clip_buffers(context&, const std::vector<buffer_view<T*>>& buffers, const double* norm, double max_norm);
    static void adamw_update(context&, const std::vector<adamw_buffers<T*, const T*>>& parameters, const double* norm);
};

extern template struct kernels<float>;
extern template struct kernels<double>;

/// Byte transfers and fills on the process's stream (defined in the library). A download waits for
/// the stream; an upload returns once the host bytes have been taken.
void upload_bytes(context&, const void* from, std::size_t bytes, void* to);
void download_bytes(context&, const void* from, std::size_t bytes, void* to);
void copy_bytes(context&, const void* from, std::size_t bytes, void* to);
/// Sets n elements of `element_bytes` (1, 2, 4 or 8) each to the bit pattern `bits`.
void fill_bits(context&, void* x, std::size_t n, std::size_t element_bytes, std::uint64_t bits);
void synchronize(context&);
std::string device_name(context&);
/// The most bytes of the device's memory pool in use at once since the last reset.
std::size_t memory_high_water(context&);
void reset_memory_high_water(context&);

}  // namespace detail::cuda

/// The backend policy for an NVIDIA GPU: `backend_for`, `training_backend_for` and
/// `optimizing_backend_for` over `cuda_space` (float and double). Copies share the process's device
/// state; they are cheap to pass by value.
class cuda_backend : public device_tensor_transfers<cuda_backend, cuda_space> {
public:
    using memory_space = cuda_space;
    template <class T>
    using pointer = device_ptr<T, cuda_space>;

    static constexpr const char* name() noexcept { return "cuda"; }

    /// The backend on device 0; throws `dm2s2::error` when no usable device is there, naming why.
    cuda_backend() : cuda_backend(cuda_options{}) {}
    explicit cuda_backend(cuda_options options)
        : context_(&detail::cuda::process_context(options.device)), precision_(options.precision)
    {
    }

    /// How float products are computed.
    matmul_precision precision() const noexcept { return precision_; }

    /// The device's name, as the driver reports it.
    std::string device_name() const { return detail::cuda::device_name(*context_); }
    /// Waits until everything queued so far has run (a download does this by itself).
    void synchronize() const { detail::cuda::synchronize(*context_); }
    /// The most bytes of device memory the process's tensors and scratch held at once since the start
    /// or the last `reset_memory_high_water` (the stream-ordered pool's high-water mark).
    std::size_t memory_high_water() const { return detail::cuda::memory_high_water(*context_); }
    void reset_memory_high_water() const { detail::cuda::reset_memory_high_water(*context_); }

    using device_tensor_transfers<cuda_backend, cuda_space>::upload;
    using device_tensor_transfers<cuda_backend, cuda_space>::download;
    template <class T>
    void upload(const T* from, std::size_t n, pointer<T> to) const
    {
        detail::cuda::upload_bytes(*context_, from, n * sizeof(T), to.device_address());
    }
    template <class T>
    void download(pointer<const T> from, std::size_t n, T* to) const
    {
        detail::cuda::download_bytes(*context_, from.device_address(), n * sizeof(T), to);
    }

    template <scalar T>
    void gemm(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, T alpha, pointer<const T> a,
              std::size_t lda, pointer<const T> b, std::size_t ldb, T beta, pointer<T> c, std::size_t ldc) const
    {
        K<T>::gemm(*context_, precision_, ta, tb, m, n, k, alpha, raw(a), lda, raw(b), ldb, beta, raw(c), ldc);
    }
    template <scalar T>
    void add_row_vector(pointer<T> x, std::size_t rows, std::size_t cols, std::size_t ldx, pointer<const T> v) const
    {
        K<T>::add_row_vector(*context_, raw(x), rows, cols, ldx, raw(v));
    }
    template <scalar T>
    void gelu(pointer<T> x, std::size_t n) const
    {
        K<T>::gelu(*context_, raw(x), n);
    }
    template <scalar T>
    void tanh(pointer<T> x, std::size_t n) const
    {
        K<T>::tanh(*context_, raw(x), n);
    }
    template <scalar T>
    void masked_softmax(pointer<T> x, std::size_t n, pointer<const std::uint8_t> keep) const
    {
        K<T>::masked_softmax(*context_, raw(x), n, raw(keep));
    }
    template <scalar T>
    void layer_norm(pointer<const T> x, pointer<const T> residual, pointer<T> y, std::size_t rows, std::size_t cols,
                    pointer<const T> gamma, pointer<const T> beta, T eps) const
    {
        K<T>::layer_norm(*context_, raw(x), raw(residual), raw(y), rows, cols, raw(gamma), raw(beta), eps);
    }
    template <scalar T>
    void attention_forward(const attention_shape& shape, T scale, pointer<const T> q, pointer<const T> k, pointer<const T> v,
                           pointer<const std::uint8_t> key_mask, pointer<T> probabilities, dropout_draw dropout,
                           pointer<T> context) const
    {
        K<T>::attention_forward(*context_, extents(shape), shape.layout.length, shape.heads, shape.head_dim, scale, raw(q),
                                raw(k), raw(v), raw(key_mask), raw(probabilities), dropout, raw(context));
    }
    template <scalar T>
    void attention_backward(const attention_shape& shape, T scale, pointer<const T> q, pointer<const T> k, pointer<const T> v,
                            pointer<const T> probabilities, dropout_draw dropout, pointer<const T> d_context, pointer<T> dq,
                            pointer<T> dk, pointer<T> dv) const
    {
        K<T>::attention_backward(*context_, extents(shape), shape.layout.length, shape.heads, shape.head_dim, scale, raw(q),
                                 raw(k), raw(v), raw(probabilities), dropout, raw(d_context), raw(dq), raw(dk), raw(dv));
    }

    template <class T>
    void copy(pointer<const T> from, std::size_t n, pointer<T> to) const
    {
        detail::cuda::copy_bytes(*context_, from.device_address(), n * sizeof(T), to.device_address());
    }
    template <class T>
    void fill(pointer<T> x, std::size_t n, T value) const
    {
        static_assert(std::is_trivially_copyable_v<T> && (sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8),
                      "cuda_backend::fill: elements of 1, 2, 4 or 8 bytes");
        std::uint64_t bits = 0;
        static_assert(sizeof(bits) >= sizeof(T));
        std::memcpy(&bits, &value, sizeof(T));
        detail::cuda::fill_bits(*context_, x.device_address(), n, sizeof(T), bits);
    }
    template <scalar T>
    void scale_rows(pointer<T> x, pointer<const T> factors, std::size_t rows, std::size_t width) const
    {
        K<T>::scale_rows(*context_, raw(x), raw(factors), rows, width);
    }
    template <scalar T>
    void add(pointer<const T> a, pointer<const T> b, pointer<T> out, std::size_t n) const
    {
        K<T>::add(*context_, raw(a), raw(b), raw(out), n);
    }
    template <scalar T>
    void dropout(pointer<T> x, std::size_t n, dropout_draw draw, std::size_t offset = 0) const
    {
        K<T>::dropout(*context_, raw(x), n, draw, offset);
    }
    /// Row to_rows[i] of `to` = row from_rows[i] of `from`; the target rows must be distinct (the rows
    /// are copied in parallel).
    template <scalar T, class FromIndex, class ToIndex>
    void copy_rows(pointer<const T> from, pointer<const FromIndex> from_rows, pointer<T> to, pointer<const ToIndex> to_rows,
                   std::size_t count, std::size_t width) const
    {
        K<T>::copy_rows(*context_, raw(from), index(from_rows), raw(to), index(to_rows), count, width);
    }
    template <scalar T, class FromIndex, class ToIndex>
    void add_rows(pointer<const T> from, pointer<const FromIndex> from_rows, pointer<T> to, pointer<const ToIndex> to_rows,
                  std::size_t count, std::size_t width) const
    {
        K<T>::add_rows(*context_, raw(from), index(from_rows), raw(to), index(to_rows), count, width);
    }
    template <scalar T, class Index>
    void add_type_and_position_rows(pointer<T> rows, std::size_t count, std::size_t width, pointer<const T> types,
                                    pointer<const Index> type_ids, pointer<const T> positions,
                                    pointer<const Index> position_ids) const
    {
        K<T>::add_type_and_position_rows(*context_, raw(rows), count, width, raw(types), index(type_ids), raw(positions),
                                         index(position_ids));
    }
    template <scalar T, class ToIndex>
    void scale_shift_rows(pointer<const T> values, pointer<const T> scale, pointer<const T> shift, pointer<T> to,
                          pointer<const ToIndex> to_rows, std::size_t count, std::size_t width) const
    {
        K<T>::scale_shift_rows(*context_, raw(values), raw(scale), raw(shift), raw(to), index(to_rows), count, width);
    }
    template <scalar T, class FromIndex>
    void scale_shift_rows_backward(pointer<const T> values, pointer<const T> d_rows, pointer<const FromIndex> from_rows,
                                   std::size_t count, std::size_t width, pointer<T> d_scale, pointer<T> d_shift) const
    {
        K<T>::scale_shift_rows_backward(*context_, raw(values), raw(d_rows), index(from_rows), count, width, raw(d_scale),
                                        raw(d_shift));
    }
    template <scalar T>
    void segment_attention_pool(pointer<const T> rows, std::size_t width, pointer<const row_group> groups,
                                std::size_t group_count, pointer<T> scores, pointer<const T> residual, pointer<T> pooled) const
    {
        K<T>::segment_attention_pool(*context_, raw(rows), width, raw(groups), group_count, raw(scores), raw(residual),
                                     raw(pooled));
    }
    template <scalar T>
    void segment_attention_pool_backward(pointer<const T> rows, std::size_t width, pointer<const row_group> groups,
                                         std::size_t group_count, pointer<const T> weights, pointer<const T> residual,
                                         pointer<const T> d_pooled, pointer<T> d_rows, pointer<T> d_scores,
                                         pointer<T> d_residual) const
    {
        K<T>::segment_attention_pool_backward(*context_, raw(rows), width, raw(groups), group_count, raw(weights), raw(residual),
                                              raw(d_pooled), raw(d_rows), raw(d_scores), raw(d_residual));
    }
    template <scalar T>
    void max_pool(pointer<const T> x, std::size_t width, pointer<const row_group> groups, std::size_t group_count, pointer<T> out,
                  pointer<std::uint32_t> argmax) const
    {
        K<T>::max_pool(*context_, raw(x), width, raw(groups), group_count, raw(out), raw(argmax));
    }
    /// Backward of `max_pool`; the groups must not share rows (as `max_pool`'s groups never do).
    template <scalar T>
    void max_pool_backward(pointer<const T> d_out, std::size_t width, std::size_t group_count,
                           pointer<const std::uint32_t> argmax, std::size_t rows, pointer<T> dx) const
    {
        K<T>::max_pool_backward(*context_, raw(d_out), width, group_count, raw(argmax), rows, raw(dx));
    }

    template <scalar T>
    void gelu_backward(pointer<const T> x, pointer<T> grad, std::size_t n) const
    {
        K<T>::gelu_backward(*context_, raw(x), raw(grad), n);
    }
    template <scalar T>
    void tanh_backward(pointer<const T> y, pointer<T> grad, std::size_t n) const
    {
        K<T>::tanh_backward(*context_, raw(y), raw(grad), n);
    }
    template <scalar T>
    void masked_softmax_backward(pointer<const T> p, pointer<T> grad, std::size_t n) const
    {
        K<T>::masked_softmax_backward(*context_, raw(p), raw(grad), n);
    }
    template <scalar T>
    void layer_norm_backward(pointer<const T> v, pointer<const T> dy, pointer<T> dv, std::size_t rows, std::size_t cols,
                             pointer<const T> gamma, T eps, pointer<T> dgamma, pointer<T> dbeta) const
    {
        K<T>::layer_norm_backward(*context_, raw(v), raw(dy), raw(dv), rows, cols, raw(gamma), eps, raw(dgamma), raw(dbeta));
    }
    template <scalar T>
    void add_column_sums(pointer<const T> x, std::size_t rows, std::size_t cols, std::size_t ldx, pointer<T> out) const
    {
        K<T>::add_column_sums(*context_, raw(x), rows, cols, ldx, raw(out));
    }

    template <scalar T>
    void softmax_cross_entropy(pointer<const T> logits, pointer<const T> classes, std::size_t batch, std::size_t outputs,
                               pointer<T> grad, double weight, pointer<double> loss) const
    {
        K<T>::softmax_cross_entropy(*context_, raw(logits), raw(classes), batch, outputs, raw(grad), weight, raw(loss));
    }
    template <scalar T>
    void binary_cross_entropy(pointer<const T> logits, pointer<const T> targets, std::size_t n, pointer<T> grad, double weight,
                              pointer<double> loss) const
    {
        K<T>::binary_cross_entropy(*context_, raw(logits), raw(targets), n, raw(grad), weight, raw(loss));
    }
    template <scalar T>
    void squared_error(pointer<const T> logits, pointer<const T> targets, std::size_t n, pointer<T> grad, double weight,
                       pointer<double> loss) const
    {
        K<T>::squared_error(*context_, raw(logits), raw(targets), n, raw(grad), weight, raw(loss));
    }
    template <scalar T>
    void sum_of_squares(std::span<const buffer_view<pointer<const T>>> buffers, pointer<double> norm) const
    {
        K<T>::sum_of_squares(*context_, raw_views(buffers), raw(norm));
    }
    template <scalar T>
    void scale_buffers(std::span<const buffer_view<pointer<T>>> buffers, double factor) const
    {
        K<T>::scale_buffers(*context_, raw_views(buffers), factor);
    }
    template <scalar T>
    void clip_buffers(std::span<const buffer_view<pointer<T>>> buffers, pointer<const double> norm, double max_norm) const
    {
        K<T>::clip_buffers(*context_, raw_views(buffers), raw(norm), max_norm);
    }
    template <scalar T>
    void adamw_update(std::span<const adamw_buffers<pointer<T>, pointer<const T>>> parameters,
                      pointer<const double> norm = nullptr) const
    {
        std::vector<adamw_buffers<T*, const T*>> views;
        views.reserve(parameters.size());
        for (const auto& b : parameters) views.push_back({raw(b.p), raw(b.m), raw(b.v), raw(b.g), b.size, b.coefficients});
        K<T>::adamw_update(*context_, views, raw(norm));
    }

private:
    template <class T>
    using K = detail::cuda::kernels<T>;

    template <class T>
    static T* raw(device_ptr<T, cuda_space> p) noexcept
    {
        return p.device_address();
    }
    template <class Index>
    static detail::cuda::index_array index(device_ptr<const Index, cuda_space> p) noexcept
    {
        return detail::cuda::make_index_array(p);
    }
    template <class T>
    static std::vector<buffer_view<T*>> raw_views(std::span<const buffer_view<device_ptr<T, cuda_space>>> buffers)
    {
        std::vector<buffer_view<T*>> views;
        views.reserve(buffers.size());
        for (const auto& b : buffers) views.push_back({raw(b.data), b.size});
        return views;
    }
    /// Where each sequence of the batch lies, as the kernels read it.
    static std::vector<detail::cuda::sequence_extent> extents(const attention_shape& shape)
    {
        const batch_layout& layout = shape.layout;
        std::vector<detail::cuda::sequence_extent> out(layout.batch);
        std::uint64_t map_offset = 0;
        for (std::size_t b = 0; b < layout.batch; ++b) {
            const std::size_t len = layout.length_of(b);
            out[b] = {layout.first_row(b), len, map_offset};
            map_offset += shape.heads * len * len;
        }
        return out;
    }

    detail::cuda::context* context_;
    matmul_precision precision_ = matmul_precision::fp32;
};

static_assert(optimizing_backend_for<cuda_backend, float> && optimizing_backend_for<cuda_backend, double>);
static_assert(!host_backend_for<cuda_backend, float>);

}  // namespace dm2s2
