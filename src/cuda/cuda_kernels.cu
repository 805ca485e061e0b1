// The kernels of `cuda_backend` (all but the products, which are cuBLAS's: cuda_runtime.cu). Each
// follows the host definition of its operation (reference_backend, row_kernels.hpp,
// backward_kernels.hpp, training_kernels.hpp): the same roundings to T at the same points, sums in
// double, except the column sums of dγ and dβ, which add in double and round to T once where the host
// rounds each row's term. Every reduction is a fixed tree or a fixed sequence: no atomics, so results
// repeat bit for bit.

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "context.cuh"
#include "dm2s2/core/error.hpp"
#include "dm2s2/core/random.hpp"

namespace dm2s2::detail::cuda {

namespace {

constexpr unsigned threads = 256;  // every block-wide kernel uses this many threads

/// Blocks for a grid-stride loop over n elements.
unsigned blocks_for(std::size_t n)
{
    return static_cast<unsigned>(std::clamp<std::size_t>((n + threads - 1) / threads, 1, 1u << 16));
}

/// Throws when a grid of `x` blocks by `y` is beyond what a launch takes.
void check_grid(std::size_t x, std::size_t y, const char* what)
{
    if (x > 0x7fffffffu || y > 65535)
        throw error(std::string("cuda_backend: ") + what + ": a grid of " + std::to_string(x) + " × " + std::to_string(y) +
                    " blocks is beyond a launch's limits");
}

/// `count` blocks, one per row, group or piece, checked against a launch's limit.
unsigned blocks_of(std::size_t count, const char* what)
{
    check_grid(count, 1, what);
    return static_cast<unsigned>(count);
}

/// The row an index array names for position i.
__device__ std::size_t row_at(index_array rows, std::size_t i)
{
    switch (rows.type) {
    case index_type::identity: return i;
    case index_type::u32: return static_cast<const std::uint32_t*>(rows.data)[i];
    case index_type::i32: return static_cast<std::size_t>(static_cast<const std::int32_t*>(rows.data)[i]);
    case index_type::u64: return static_cast<std::size_t>(static_cast<const std::uint64_t*>(rows.data)[i]);
    case index_type::i64: return static_cast<std::size_t>(static_cast<const std::int64_t*>(rows.data)[i]);
    }
    return i;
}

/// Dropout's factor for element i of `draw`, as `dropout_draw::factor` computes it.
template <class T>
__device__ T dropout_factor(dropout_draw draw, std::uint64_t i)
{
    if (!(draw.p > 0)) return T(1);
    return counter_uniform(draw.seed, draw.first + i) < draw.p ? T(0) : static_cast<T>(1.0 / (1.0 - draw.p));
}

/// The sum of every thread's `value` over the block, in a fixed tree; every thread gets it.
__device__ double block_sum(double value)
{
    __shared__ double partial[threads];
    partial[threadIdx.x] = value;
    __syncthreads();
    for (unsigned s = threads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    const double total = partial[0];
    __syncthreads();
    return total;
}

/// The maximum of every thread's `value` over the block; every thread gets it.
__device__ double block_max(double value)
{
    __shared__ double partial[threads];
    partial[threadIdx.x] = value;
    __syncthreads();
    for (unsigned s = threads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] = fmax(partial[threadIdx.x], partial[threadIdx.x + s]);
        __syncthreads();
    }
    const double total = partial[0];
    __syncthreads();
    return total;
}

/// `reference_backend::masked_softmax` of one row of n by the whole block, in place: entries whose
/// `keep` byte is 0 (keep may be null) get exactly 0, and a row with nothing kept becomes all zeros.
template <class T>
__device__ void block_masked_softmax(T* x, std::size_t n, const std::uint8_t* keep)
{
    double max = -INFINITY;
    for (std::size_t i = threadIdx.x; i < n; i += threads)
        if ((keep == nullptr || keep[i] != 0) && static_cast<double>(x[i]) > max) max = x[i];
    max = block_max(max);
    if (max == -INFINITY) {  // the same for the whole block
        for (std::size_t i = threadIdx.x; i < n; i += threads) x[i] = T(0);
        __syncthreads();
        return;
    }
    double sum = 0;
    for (std::size_t i = threadIdx.x; i < n; i += threads)
        if (keep == nullptr || keep[i] != 0) sum += exp(static_cast<double>(x[i]) - max);
    sum = block_sum(sum);
    for (std::size_t i = threadIdx.x; i < n; i += threads)
        x[i] = keep == nullptr || keep[i] != 0 ? static_cast<T>(exp(static_cast<double>(x[i]) - max) / sum) : T(0);
    __syncthreads();
}

/// Softmax backward of one row by the whole block: grad ← p ⊙ (grad − Σ p grad).
template <class T>
__device__ void block_softmax_backward(const T* p, T* grad, std::size_t n)
{
    double dot = 0;
    for (std::size_t i = threadIdx.x; i < n; i += threads) dot += static_cast<double>(p[i]) * grad[i];
    dot = block_sum(dot);
    for (std::size_t i = threadIdx.x; i < n; i += threads) grad[i] = static_cast<T>(p[i] * (grad[i] - dot));
    __syncthreads();
}

#define DM2S2_GRID_STRIDE(i, n)                                                                    \
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < (n); \
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x)

template <class T>
__global__ void scale_matrix_kernel(T* out, std::size_t m, std::size_t n, std::size_t ldc, T beta)
{
    DM2S2_GRID_STRIDE(e, m * n)
    {
        T& value = out[(e / n) * ldc + e % n];
        value = beta == T(0) ? T(0) : static_cast<T>(beta * value);
    }
}

template <class T>
__global__ void add_row_vector_kernel(T* x, std::size_t rows, std::size_t cols, std::size_t ldx, const T* v)
{
    DM2S2_GRID_STRIDE(e, rows * cols)
    {
        x[(e / cols) * ldx + e % cols] += v[e % cols];
    }
}

template <class T>
__global__ void gelu_kernel(T* x, std::size_t n)
{
    DM2S2_GRID_STRIDE(i, n)
    {
        const double v = x[i];
        x[i] = static_cast<T>(0.5 * v * (1.0 + erf(v / sqrt(2.0))));
    }
}

template <class T>
__global__ void tanh_kernel(T* x, std::size_t n)
{
    DM2S2_GRID_STRIDE(i, n)
    {
        x[i] = static_cast<T>(::tanh(static_cast<double>(x[i])));
    }
}

template <class T>
__global__ void masked_softmax_kernel(T* x, std::size_t n, const std::uint8_t* keep)
{
    block_masked_softmax(x, n, keep);
}

/// One row per block: y = LN(x + residual) with the biased variance.
template <class T>
__global__ void layer_norm_kernel(const T* x, const T* residual, T* y, std::size_t cols, const T* gamma, const T* beta, T eps)
{
    const std::size_t r = blockIdx.x;
    const T* xr = x + r * cols;
    const T* rr = residual ? residual + r * cols : nullptr;
    auto value = [&](std::size_t j) { return static_cast<double>(xr[j]) + (rr ? static_cast<double>(rr[j]) : 0.0); };
    double sum = 0;
    for (std::size_t j = threadIdx.x; j < cols; j += threads) sum += value(j);
    const double mean = block_sum(sum) / static_cast<double>(cols);
    double squares = 0;
    for (std::size_t j = threadIdx.x; j < cols; j += threads) squares += (value(j) - mean) * (value(j) - mean);
    const double var = block_sum(squares) / static_cast<double>(cols);
    const double inv = 1.0 / sqrt(var + static_cast<double>(eps));
    for (std::size_t j = threadIdx.x; j < cols; j += threads)
        y[r * cols + j] = static_cast<T>((value(j) - mean) * inv * gamma[j] + beta[j]);
}

/// Where the query rows of the attention kernels come from: sequence `b` holds units
/// [units_before, units_before + length) of the grid.
struct attention_extent {
    std::uint64_t first_row, length, map_offset, units_before;
};

__device__ std::size_t extent_of(const attention_extent* extents, std::size_t count, std::size_t unit)
{
    std::size_t low = 0, high = count;  // the last extent whose units_before <= unit
    while (high - low > 1) {
        const std::size_t mid = (low + high) / 2;
        if (extents[mid].units_before <= unit) low = mid;
        else high = mid;
    }
    return low;
}

/// Attention forward for one query row of one head per block (blockIdx.x: the row among every
/// sequence's rows; blockIdx.y: the head). Shared memory holds the row's scores.
template <class T>
__global__ void attention_forward_kernel(const attention_extent* extents, std::size_t count, std::size_t heads, std::size_t d,
                                         T scale, const T* q, const T* k, const T* v, const std::uint8_t* key_mask,
                                         T* probabilities, dropout_draw dropout, T* context_out)
{
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    T* scores = reinterpret_cast<T*>(shared_bytes);
    const attention_extent e = extents[extent_of(extents, count, blockIdx.x)];
    const std::size_t i = blockIdx.x - e.units_before, head = blockIdx.y, len = e.length, h = heads * d;
    const std::size_t offset = e.first_row * h + head * d;
    const std::size_t map_row = e.map_offset + head * len * len + i * len;
    const T* qi = q + offset + i * h;
    for (std::size_t j = threadIdx.x; j < len; j += threads) {
        const T* kj = k + offset + j * h;
        double dot = 0;
        for (std::size_t p = 0; p < d; ++p) dot += static_cast<double>(qi[p]) * kj[p];
        scores[j] = static_cast<T>(scale * dot);
    }
    __syncthreads();
    block_masked_softmax(scores, len, key_mask ? key_mask + e.first_row : nullptr);
    for (std::size_t j = threadIdx.x; j < len; j += threads) {
        if (probabilities) probabilities[map_row + j] = scores[j];
        if (dropout.p > 0) scores[j] *= dropout_factor<T>(dropout, map_row + j);
    }
    __syncthreads();
    for (std::size_t c = threadIdx.x; c < d; c += threads) {
        double sum = 0;
        for (std::size_t j = 0; j < len; ++j) sum += static_cast<double>(scores[j]) * v[offset + j * h + c];
        context_out[offset + i * h + c] = static_cast<T>(sum);
    }
}

/// Attention backward, first half, one query row i of one head per block: the row of dS (dropout's
/// factors and the softmax backward applied) into `d_scores` (laid out as the maps), and dQ's row.
template <class T>
__global__ void attention_backward_rows_kernel(const attention_extent* extents, std::size_t count, std::size_t heads,
                                               std::size_t d, T scale, const T* k, const T* v, const T* probabilities,
                                               dropout_draw dropout, const T* d_context, T* d_scores, T* dq)
{
    const attention_extent e = extents[extent_of(extents, count, blockIdx.x)];
    const std::size_t i = blockIdx.x - e.units_before, head = blockIdx.y, len = e.length, h = heads * d;
    const std::size_t offset = e.first_row * h + head * d;
    const std::size_t map_row = e.map_offset + head * len * len + i * len;
    const T* dci = d_context + offset + i * h;
    T* ds = d_scores + map_row;
    for (std::size_t j = threadIdx.x; j < len; j += threads) {  // dP' = dcontext Vᵀ, then ⊙ dropout
        const T* vj = v + offset + j * h;
        double dot = 0;
        for (std::size_t p = 0; p < d; ++p) dot += static_cast<double>(dci[p]) * vj[p];
        ds[j] = static_cast<T>(dot);
        if (dropout.p > 0) ds[j] *= dropout_factor<T>(dropout, map_row + j);
    }
    __syncthreads();
    block_softmax_backward(probabilities + map_row, ds, len);
    for (std::size_t c = threadIdx.x; c < d; c += threads) {  // dQ = scale dS K
        double sum = 0;
        for (std::size_t j = 0; j < len; ++j) sum += static_cast<double>(ds[j]) * k[offset + j * h + c];
        dq[offset + i * h + c] = static_cast<T>(scale * sum);
    }
}

/// Attention backward, second half, one key row j of one head per block: dV = P'ᵀ dcontext and
/// dK = scale dSᵀ Q, summing over the query rows in order.
template <class T>
__global__ void attention_backward_columns_kernel(const attention_extent* extents, std::size_t count, std::size_t heads,
                                                  std::size_t d, T scale, const T* q, const T* probabilities,
                                                  dropout_draw dropout, const T* d_context, const T* d_scores, T* dk, T* dv)
{
    const attention_extent e = extents[extent_of(extents, count, blockIdx.x)];
    const std::size_t j = blockIdx.x - e.units_before, head = blockIdx.y, len = e.length, h = heads * d;
    const std::size_t offset = e.first_row * h + head * d;
    const std::size_t map = e.map_offset + head * len * len;
    for (std::size_t c = threadIdx.x; c < d; c += threads) {
        double sum_v = 0, sum_k = 0;
        for (std::size_t i = 0; i < len; ++i) {
            const std::size_t at = map + i * len + j;
            T used = probabilities[at];
            if (dropout.p > 0) used = static_cast<T>(used * dropout_factor<T>(dropout, at));
            sum_v += static_cast<double>(used) * d_context[offset + i * h + c];
            sum_k += static_cast<double>(d_scores[at]) * q[offset + i * h + c];
        }
        dv[offset + j * h + c] = static_cast<T>(sum_v);
        dk[offset + j * h + c] = static_cast<T>(scale * sum_k);
    }
}

template <class T>
__global__ void scale_rows_kernel(T* x, const T* factors, std::size_t rows, std::size_t width)
{
    DM2S2_GRID_STRIDE(e, rows * width)
    {
        x[e] *= factors[e / width];
    }
}

template <class T>
__global__ void add_kernel(const T* a, const T* b, T* out, std::size_t n)
{
    DM2S2_GRID_STRIDE(i, n)
    {
        out[i] = a[i] + b[i];
    }
}

template <class T>
__global__ void dropout_kernel(T* x, std::size_t n, dropout_draw draw, std::size_t offset)
{
    DM2S2_GRID_STRIDE(i, n)
    {
        x[i] *= dropout_factor<T>(draw, offset + i);
    }
}

template <class T>
__global__ void copy_rows_kernel(const T* from, index_array from_rows, T* to, index_array to_rows, std::size_t count,
                                 std::size_t width)
{
    DM2S2_GRID_STRIDE(e, count * width)
    {
        const std::size_t i = e / width, j = e % width;
        to[row_at(to_rows, i) * width + j] = from[row_at(from_rows, i) * width + j];
    }
}

/// One thread per column, adding the rows in the order of the index arrays (targets may repeat).
template <class T>
__global__ void add_rows_kernel(const T* from, index_array from_rows, T* to, index_array to_rows, std::size_t count,
                                std::size_t width)
{
    DM2S2_GRID_STRIDE(j, width)
    {
        for (std::size_t i = 0; i < count; ++i) to[row_at(to_rows, i) * width + j] += from[row_at(from_rows, i) * width + j];
    }
}

template <class T>
__global__ void add_type_and_position_rows_kernel(T* rows, std::size_t count, std::size_t width, const T* types,
                                                  index_array type_ids, const T* positions, index_array position_ids)
{
    DM2S2_GRID_STRIDE(e, count * width)
    {
        const std::size_t i = e / width, j = e % width;
        rows[e] = (rows[e] + types[row_at(type_ids, i) * width + j]) + positions[row_at(position_ids, i) * width + j];
    }
}

template <class T>
__global__ void scale_shift_rows_kernel(const T* values, const T* scale, const T* shift, T* to, index_array to_rows,
                                        std::size_t count, std::size_t width)
{
    DM2S2_GRID_STRIDE(e, count * width)
    {
        const std::size_t i = e / width, j = e % width;
        to[row_at(to_rows, i) * width + j] = values[i] * scale[j] + shift[j];
    }
}

template <class T>
__global__ void scale_shift_rows_backward_kernel(const T* values, const T* d_rows, index_array from_rows, std::size_t count,
                                                 std::size_t width, T* d_scale, T* d_shift)
{
    DM2S2_GRID_STRIDE(j, width)
    {
        for (std::size_t i = 0; i < count; ++i) {
            const T d = d_rows[row_at(from_rows, i) * width + j];
            d_scale[j] += values[i] * d;
            d_shift[j] += d;
        }
    }
}

/// One group per block: its scores become softmax weights in place, then pooled = Σ (wᵢ + r / n) rowᵢ.
template <class T>
__global__ void segment_attention_pool_kernel(const T* rows, std::size_t width, const row_group* groups, T* scores,
                                              const T* residual_at, T* pooled)
{
    const row_group g = groups[blockIdx.x];
    const T residual = residual_at ? *residual_at : T(0);
    block_masked_softmax(scores + g.begin, g.length, static_cast<const std::uint8_t*>(nullptr));
    const T share = residual / static_cast<T>(g.length);
    for (std::size_t j = threadIdx.x; j < width; j += threads) {
        double sum = 0;
        for (std::size_t i = 0; i < g.length; ++i)
            sum += static_cast<double>(static_cast<T>(scores[g.begin + i] + share)) * rows[(g.begin + i) * width + j];
        pooled[blockIdx.x * width + j] = static_cast<T>(sum);
    }
}

/// Backward of the pooling, one group per block: d rowsᵢ += cᵢ d pooled and d cᵢ = rowsᵢ · d pooled
/// (into d_scores, before the softmax backward).
template <class T>
__global__ void segment_pool_backward_rows_kernel(const T* rows, std::size_t width, const row_group* groups, const T* weights,
                                                  const T* residual_at, const T* d_pooled, T* d_rows, T* d_scores)
{
    const row_group g = groups[blockIdx.x];
    const T residual = residual_at ? *residual_at : T(0);
    const T share = residual / static_cast<T>(g.length);
    const T* dp = d_pooled + blockIdx.x * width;
    for (std::size_t i = 0; i < g.length; ++i) {
        const T c = weights[g.begin + i] + share;
        T* dr = d_rows + (g.begin + i) * width;
        const T* row = rows + (g.begin + i) * width;
        double dot = 0;
        for (std::size_t j = threadIdx.x; j < width; j += threads) {
            dr[j] = static_cast<T>(static_cast<double>(c) * dp[j] + static_cast<double>(dr[j]));
            dot += static_cast<double>(row[j]) * dp[j];
        }
        dot = block_sum(dot);
        if (threadIdx.x == 0) d_scores[g.begin + i] = static_cast<T>(dot);
    }
}

/// d residual += Σ over groups, in order, of mean d cᵢ (one thread: a handful of groups).
template <class T>
__global__ void segment_pool_backward_residual_kernel(const row_group* groups, std::size_t group_count, const T* d_scores,
                                                      T* d_residual)
{
    for (std::size_t g = 0; g < group_count; ++g) {
        T sum = 0;
        for (std::size_t i = 0; i < groups[g].length; ++i) sum += d_scores[groups[g].begin + i];
        *d_residual += sum / static_cast<T>(groups[g].length);
    }
}

template <class T>
__global__ void segment_pool_backward_softmax_kernel(const row_group* groups, const T* weights, T* d_scores)
{
    const row_group g = groups[blockIdx.x];
    block_softmax_backward(weights + g.begin, d_scores + g.begin, g.length);
}

template <class T>
__global__ void max_pool_kernel(const T* x, std::size_t width, const row_group* groups, std::size_t group_count, T* out,
                                std::uint32_t* argmax)
{
    DM2S2_GRID_STRIDE(e, group_count * width)
    {
        const std::size_t g = e / width, j = e % width;
        T best = -INFINITY;
        auto arg = static_cast<std::uint32_t>(groups[g].begin);
        for (std::size_t i = groups[g].begin; i < groups[g].begin + groups[g].length; ++i)
            if (x[i * width + j] > best) {
                best = x[i * width + j];
                arg = static_cast<std::uint32_t>(i);
            }
        out[e] = best;
        argmax[e] = arg;
    }
}

/// Routes each output gradient to its row; groups never share rows, so no two threads meet.
template <class T>
__global__ void max_pool_backward_kernel(const T* d_out, std::size_t width, std::size_t n, const std::uint32_t* argmax, T* dx)
{
    DM2S2_GRID_STRIDE(e, n)
    {
        dx[static_cast<std::size_t>(argmax[e]) * width + e % width] += d_out[e];
    }
}

template <class T>
__global__ void gelu_backward_kernel(const T* x, T* grad, std::size_t n)
{
    DM2S2_GRID_STRIDE(i, n)
    {
        const double v = x[i];
        // As the host computes them: 1 / √2 and 1 / √(2π) = ½ · (1 / √π) · √2.
        const double inv_sqrt2 = 1.0 / 1.41421356237309504880,
                     inv_sqrt_2pi = 0.5 * 0.56418958354775628695 * 1.41421356237309504880;
        grad[i] = static_cast<T>(grad[i] * (0.5 * (1.0 + erf(v * inv_sqrt2)) + v * inv_sqrt_2pi * exp(-0.5 * v * v)));
    }
}

template <class T>
__global__ void tanh_backward_kernel(const T* y, T* grad, std::size_t n)
{
    DM2S2_GRID_STRIDE(i, n)
    {
        grad[i] *= T(1) - y[i] * y[i];
    }
}

template <class T>
__global__ void masked_softmax_backward_kernel(const T* p, T* grad, std::size_t n)
{
    block_softmax_backward(p, grad, n);
}

/// Each row's mean and 1/σ (two doubles per row), one row per block.
template <class T>
__global__ void row_statistics_kernel(const T* v, std::size_t cols, T eps, double* statistics)
{
    const T* vr = v + blockIdx.x * cols;
    double sum = 0;
    for (std::size_t j = threadIdx.x; j < cols; j += threads) sum += vr[j];
    const double mean = block_sum(sum) / static_cast<double>(cols);
    double squares = 0;
    for (std::size_t j = threadIdx.x; j < cols; j += threads) squares += (vr[j] - mean) * (vr[j] - mean);
    const double var = block_sum(squares) / static_cast<double>(cols);
    if (threadIdx.x == 0) {
        statistics[2 * blockIdx.x] = mean;
        statistics[2 * blockIdx.x + 1] = 1.0 / sqrt(var + static_cast<double>(eps));
    }
}

/// Rows a block of the column sums' first stage adds: 32, or more where 65 535 chunks (a grid's height)
/// would not cover the rows. A column's sum is the ordered sum of its chunks' sums, each summed in
/// order, so every column has many threads, and the order is fixed by the shape.
std::size_t column_chunk_rows(std::size_t rows)
{
    constexpr std::size_t least = 32, most_chunks = 65535;
    return std::max(least, (rows + most_chunks - 1) / most_chunks);
}

std::size_t column_chunks(std::size_t rows)
{
    return (rows + column_chunk_rows(rows) - 1) / column_chunk_rows(rows);
}

/// The first stage's grid: blocks of `threads` columns by chunks of rows.
dim3 column_chunk_grid(std::size_t rows, std::size_t cols, const char* what)
{
    const std::size_t x = (cols + threads - 1) / threads, y = column_chunks(rows);
    check_grid(x, y, what);
    return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y));
}

/// First stage of dγ and dβ: for the chunk of rows of block y, Σ dy x̂ into partial[y·cols + j] and
/// Σ dy into partial[(chunks + y)·cols + j], in row order.
template <class T>
__global__ void layer_norm_partial_gradients_kernel(const T* v, const T* dy, std::size_t rows, std::size_t cols,
                                                    std::size_t chunk_rows, const double* statistics, double* partial)
{
    const std::size_t j = blockIdx.x * static_cast<std::size_t>(threads) + threadIdx.x;
    if (j >= cols) return;
    const std::size_t first = blockIdx.y * chunk_rows, last = first + chunk_rows < rows ? first + chunk_rows : rows;
    double gamma_sum = 0, beta_sum = 0;
    for (std::size_t r = first; r < last; ++r) {
        const double g = dy[r * cols + j];
        gamma_sum += g * ((v[r * cols + j] - statistics[2 * r]) * statistics[2 * r + 1]);
        beta_sum += g;
    }
    partial[blockIdx.y * cols + j] = gamma_sum;
    partial[(gridDim.y + blockIdx.y) * cols + j] = beta_sum;
}

/// First stage of the column sums of x [rows, cols] (row stride ldx): the chunk of rows of block y
/// into partial[y·cols + j], in row order.
template <class T>
__global__ void column_partial_sums_kernel(const T* x, std::size_t rows, std::size_t cols, std::size_t ldx,
                                           std::size_t chunk_rows, double* partial)
{
    const std::size_t j = blockIdx.x * static_cast<std::size_t>(threads) + threadIdx.x;
    if (j >= cols) return;
    const std::size_t first = blockIdx.y * chunk_rows, last = first + chunk_rows < rows ? first + chunk_rows : rows;
    double sum = 0;
    for (std::size_t i = first; i < last; ++i) sum += x[i * ldx + j];
    partial[blockIdx.y * cols + j] = sum;
}

/// Second stage: out[j] += Σ over the chunks of partial[c·cols + j], in chunk order.
template <class T>
__global__ void add_partial_sums_kernel(const double* partial, std::size_t chunks, std::size_t cols, T* out)
{
    DM2S2_GRID_STRIDE(j, cols)
    {
        double sum = 0;
        for (std::size_t c = 0; c < chunks; ++c) sum += partial[c * cols + j];
        out[j] += static_cast<T>(sum);
    }
}

/// dv = (dy γ − mean(dy γ) − x̂ mean(dy γ x̂)) / σ, one row per block (dv may be dy).
template <class T>
__global__ void layer_norm_input_gradient_kernel(const T* v, const T* dy, T* dv, std::size_t cols, const T* gamma,
                                                 const double* statistics)
{
    const std::size_t r = blockIdx.x;
    const double mean = statistics[2 * r], inv_sigma = statistics[2 * r + 1];
    const T* vr = v + r * cols;
    const T* dyr = dy + r * cols;
    double sum_dxhat = 0, sum_dxhat_xhat = 0;
    for (std::size_t j = threadIdx.x; j < cols; j += threads) {
        const double xhat = (vr[j] - mean) * inv_sigma, dxhat = static_cast<double>(dyr[j]) * gamma[j];
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
    }
    const double mean_dxhat = block_sum(sum_dxhat) / static_cast<double>(cols);
    const double mean_dxhat_xhat = block_sum(sum_dxhat_xhat) / static_cast<double>(cols);
    for (std::size_t j = threadIdx.x; j < cols; j += threads) {
        const double xhat = (vr[j] - mean) * inv_sigma;
        dv[r * cols + j] =
            static_cast<T>(inv_sigma * (static_cast<double>(dyr[j]) * gamma[j] - mean_dxhat - xhat * mean_dxhat_xhat));
    }
}

/// The losses run on one thread: a batch of logits is small, and the loss is one ordered sum.
template <class T>
__global__ void softmax_cross_entropy_kernel(const T* logits, const T* classes, std::size_t batch, std::size_t outputs, T* grad,
                                             double weight, double* loss)
{
    double value = 0;
    for (std::size_t b = 0; b < batch; ++b) {
        const auto c = static_cast<std::size_t>(classes[b]);
        const T* row = logits + b * outputs;
        T max_value = row[0];
        for (std::size_t j = 1; j < outputs; ++j)
            if (max_value < row[j]) max_value = row[j];
        const double max = max_value;
        double sum = 0;
        for (std::size_t j = 0; j < outputs; ++j) sum += exp(row[j] - max);
        const double log_sum = max + log(sum);
        value += log_sum - row[c];
        for (std::size_t j = 0; j < outputs; ++j)
            grad[b * outputs + j] = static_cast<T>((exp(row[j] - log_sum) - (j == c ? 1.0 : 0.0)) / static_cast<double>(batch));
    }
    *loss += weight * (value / static_cast<double>(batch));
}

template <class T>
__global__ void binary_cross_entropy_kernel(const T* logits, const T* targets, std::size_t n, T* grad, double weight,
                                            double* loss)
{
    double value = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double x = logits[i], y = targets[i];
        value += fmax(x, 0.0) - x * y + log1p(exp(-fabs(x)));
        grad[i] = static_cast<T>((1 / (1 + exp(-x)) - y) / static_cast<double>(n));
    }
    *loss += weight * (value / static_cast<double>(n));
}

template <class T>
__global__ void squared_error_kernel(const T* logits, const T* targets, std::size_t n, T* grad, double weight, double* loss)
{
    double value = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double x = logits[i], y = targets[i];
        value += (x - y) * (x - y);
        grad[i] = static_cast<T>(2 * (x - y) / static_cast<double>(n));
    }
    *loss += weight * (value / static_cast<double>(n));
}

/// A piece of at most `parameter_chunk` values of one buffer of a multi-tensor operation.
template <class T>
struct piece {
    T* data;
    std::size_t size;
    std::uint64_t buffer;  ///< the index of the buffer in the list
    bool last;             ///< the buffer's last piece
};

/// Σ x² of each piece, one piece per block.
template <class T>
__global__ void piece_squares_kernel(const piece<const T>* pieces, double* sums)
{
    const piece<const T> p = pieces[blockIdx.x];
    double sum = 0;
    for (std::size_t i = threadIdx.x; i < p.size; i += threads) sum += static_cast<double>(p.data[i]) * p.data[i];
    sum = block_sum(sum);
    if (threadIdx.x == 0) sums[blockIdx.x] = sum;
}

/// The pieces' sums added in order, with the first buffer after which the sum is not finite.
template <class T>
__global__ void norm_total_kernel(const piece<const T>* pieces, std::size_t count, const double* sums, double* norm)
{
    double sum = 0, first_non_finite = -1;
    for (std::size_t c = 0; c < count; ++c) {
        sum += sums[c];
        if (pieces[c].last && !isfinite(sum) && first_non_finite < 0) first_non_finite = static_cast<double>(pieces[c].buffer);
    }
    norm[0] = sum;
    norm[1] = first_non_finite;
}

/// x = T(x · factor) over every piece (one piece per block); with `norm`, the factor is the clipping
/// coefficient and nothing changes when the norm is not finite or the coefficient is 1.
template <class T>
__global__ void scale_pieces_kernel(const piece<T>* pieces, double factor, const double* norm, double max_norm)
{
    if (norm != nullptr) {
        if (!(norm[1] < 0)) return;
        factor = fmin(1.0, max_norm / (sqrt(norm[0]) + 1e-6));
        if (!(factor < 1.0)) return;
    }
    const piece<T> p = pieces[blockIdx.x];
    for (std::size_t i = threadIdx.x; i < p.size; i += threads) p.data[i] = static_cast<T>(p.data[i] * factor);
}

/// AdamW over a piece of one parameter per block, in double, as `detail::adamw_update`.
template <class T>
struct adamw_piece {
    T* p;
    T* m;
    T* v;
    const T* g;
    std::size_t size;
    adamw_coefficients c;
};

template <class T>
__global__ void adamw_kernel(const adamw_piece<T>* pieces, const double* norm)
{
    if (norm != nullptr && !(norm[1] < 0)) return;
    const adamw_piece<T> a = pieces[blockIdx.x];
    for (std::size_t i = threadIdx.x; i < a.size; i += threads) {
        double p = a.p[i], m = a.m[i], v = a.v[i];
        const double g = a.g[i];
        p = p * a.c.keep;
        m = a.c.beta1 * m + (1.0 - a.c.beta1) * g;
        v = a.c.beta2 * v + (1.0 - a.c.beta2) * g * g;
        p = p - a.c.step_size * m / (sqrt(v) / a.c.sqrt_correction2 + a.c.eps);
        a.m[i] = static_cast<T>(m);
        a.v[i] = static_cast<T>(v);
        a.p[i] = static_cast<T>(p);
    }
}

__global__ void fill_kernel(void* x, std::size_t n, std::size_t element_bytes, std::uint64_t bits)
{
    DM2S2_GRID_STRIDE(i, n)
    {
        switch (element_bytes) {
        case 1: static_cast<std::uint8_t*>(x)[i] = static_cast<std::uint8_t>(bits); break;
        case 2: static_cast<std::uint16_t*>(x)[i] = static_cast<std::uint16_t>(bits); break;
        case 4: static_cast<std::uint32_t*>(x)[i] = static_cast<std::uint32_t>(bits); break;
        default: static_cast<std::uint64_t*>(x)[i] = bits;
        }
    }
}

/// Uploads `values` into a scratch buffer of the operation.
template <class V>
device_buffer upload_list(context& c, const std::vector<V>& values)
{
    device_buffer buffer(c, values.size() * sizeof(V));
    upload_bytes(c, values.data(), values.size() * sizeof(V), buffer.as<void>());
    return buffer;
}

/// The extents of the attention kernels, uploaded, and the number of rows (grid units) they cover.
struct uploaded_extents {
    device_buffer buffer;
    std::size_t count = 0, units = 0;
};

uploaded_extents upload_extents(context& c, const std::vector<sequence_extent>& sequences)
{
    std::vector<attention_extent> extents;
    std::size_t units = 0;
    for (const auto& s : sequences) {
        if (s.length == 0) continue;
        extents.push_back({s.first_row, s.length, s.map_offset, units});
        units += s.length;
    }
    return {upload_list(c, extents), extents.size(), units};
}

/// Pieces of at most `parameter_chunk` values of each buffer, in order.
template <class T>
std::vector<piece<T>> pieces_of(const std::vector<buffer_view<T*>>& buffers)
{
    std::vector<piece<T>> pieces;
    for (std::size_t t = 0; t < buffers.size(); ++t) {
        const std::size_t n = buffers[t].size;
        if (n == 0) {
            pieces.push_back({buffers[t].data, 0, t, true});
            continue;
        }
        for (std::size_t begin = 0; begin < n; begin += parameter_chunk)
            pieces.push_back({buffers[t].data + begin, std::min(parameter_chunk, n - begin), t, begin + parameter_chunk >= n});
    }
    return pieces;
}

template <class T>
void scale_or_clip(context& c, const std::vector<buffer_view<T*>>& buffers, double factor, const double* norm, double max_norm)
{
    const auto pieces = pieces_of(buffers);
    if (pieces.empty()) return;
    const device_buffer list = upload_list(c, pieces);
    scale_pieces_kernel<T>
        <<<blocks_of(pieces.size(), "pieces"), threads, 0, c.stream()>>>(list.as<const piece<T>>(), factor, norm, max_norm);
    check_launch("scale_buffers");
}

}  // namespace

template <class T>
void scale_matrix(context& c, T* out, std::size_t m, std::size_t n, std::size_t ldc, T beta)
{
    scale_matrix_kernel<T><<<blocks_for(m * n), threads, 0, c.stream()>>>(out, m, n, ldc, beta);
    check_launch("gemm (k = 0)");
}
template void scale_matrix<float>(context&, float*, std::size_t, std::size_t, std::size_t, float);
template void scale_matrix<double>(context&, double*, std::size_t, std::size_t, std::size_t, double);

void fill_bits(context& c, void* x, std::size_t n, std::size_t element_bytes, std::uint64_t bits)
{
    if (n == 0) return;
    fill_kernel<<<blocks_for(n), threads, 0, c.stream()>>>(x, n, element_bytes, bits);
    check_launch("fill");
}

template <class T>
void kernels<T>::add_row_vector(context& c, T* x, std::size_t rows, std::size_t cols, std::size_t ldx, const T* v)
{
    if (rows * cols == 0) return;
    add_row_vector_kernel<T><<<blocks_for(rows * cols), threads, 0, c.stream()>>>(x, rows, cols, ldx, v);
    check_launch("add_row_vector");
}

template <class T>
void kernels<T>::gelu(context& c, T* x, std::size_t n)
{
    if (n == 0) return;
    gelu_kernel<T><<<blocks_for(n), threads, 0, c.stream()>>>(x, n);
    check_launch("gelu");
}

template <class T>
void kernels<T>::tanh(context& c, T* x, std::size_t n)
{
    if (n == 0) return;
    tanh_kernel<T><<<blocks_for(n), threads, 0, c.stream()>>>(x, n);
    check_launch("tanh");
}

template <class T>
void kernels<T>::masked_softmax(context& c, T* x, std::size_t n, const std::uint8_t* keep)
{
    if (n == 0) return;
    masked_softmax_kernel<T><<<1, threads, 0, c.stream()>>>(x, n, keep);
    check_launch("masked_softmax");
}

template <class T>
void kernels<T>::layer_norm(context& c, const T* x, const T* residual, T* y, std::size_t rows, std::size_t cols, const T* gamma,
                            const T* beta, T eps)
{
    if (rows == 0 || cols == 0) return;
    layer_norm_kernel<T><<<blocks_of(rows, "rows"), threads, 0, c.stream()>>>(x, residual, y, cols, gamma, beta, eps);
    check_launch("layer_norm");
}

template <class T>
void kernels<T>::attention_forward(context& c, const std::vector<sequence_extent>& sequences, std::size_t, std::size_t heads,
                                   std::size_t head_dim, T scale, const T* q, const T* k, const T* v,
                                   const std::uint8_t* key_mask, T* probabilities, dropout_draw dropout, T* context_out)
{
    const uploaded_extents extents = upload_extents(c, sequences);
    if (extents.units == 0 || heads == 0) return;
    std::size_t longest = 0;  // the kernel's scores: one per key of the longest sequence
    for (const auto& s : sequences) longest = std::max<std::size_t>(longest, s.length);
    const std::size_t shared = longest * sizeof(T);
    // A block's shared memory beyond the default must be asked for; the reductions take their own.
    int limit = 0;
    check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, c.device()), "cudaDeviceGetAttribute");
    const std::size_t reductions = 2 * threads * sizeof(double);
    if (shared + reductions > static_cast<std::size_t>(limit))
        throw error("cuda_backend: attention_forward: a sequence of " + std::to_string(longest) + " rows needs " +
                    std::to_string(shared + reductions) + " bytes of shared memory per block; the device has " +
                    std::to_string(limit));
    check(
        cudaFuncSetAttribute(attention_forward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)),
        "attention_forward: cudaFuncSetAttribute");
    check_grid(extents.units, heads, "attention_forward");
    const dim3 grid(static_cast<unsigned>(extents.units), static_cast<unsigned>(heads));
    attention_forward_kernel<T><<<grid, threads, shared, c.stream()>>>(extents.buffer.as<const attention_extent>(), extents.count,
                                                                       heads, head_dim, scale, q, k, v, key_mask, probabilities,
                                                                       dropout, context_out);
    check_launch("attention_forward");
}

template <class T>
void kernels<T>::attention_backward(context& c, const std::vector<sequence_extent>& sequences, std::size_t, std::size_t heads,
                                    std::size_t head_dim, T scale, const T* q, const T* k, const T* v, const T* probabilities,
                                    dropout_draw dropout, const T* d_context, T* dq, T* dk, T* dv)
{
    const uploaded_extents extents = upload_extents(c, sequences);
    if (extents.units == 0 || heads == 0) return;
    std::size_t map_elements = 0;
    for (const auto& s : sequences)
        map_elements = std::max<std::size_t>(map_elements, s.map_offset + heads * s.length * s.length);
    const device_buffer d_scores(c, map_elements * sizeof(T));
    check_grid(extents.units, heads, "attention_backward");
    const dim3 grid(static_cast<unsigned>(extents.units), static_cast<unsigned>(heads));
    attention_backward_rows_kernel<T><<<grid, threads, 0, c.stream()>>>(extents.buffer.as<const attention_extent>(),
                                                                        extents.count, heads, head_dim, scale, k, v,
                                                                        probabilities, dropout, d_context, d_scores.as<T>(), dq);
    check_launch("attention_backward (rows)");
    attention_backward_columns_kernel<T>
        <<<grid, threads, 0, c.stream()>>>(extents.buffer.as<const attention_extent>(), extents.count, heads, head_dim, scale, q,
                                           probabilities, dropout, d_context, d_scores.as<const T>(), dk, dv);
    check_launch("attention_backward (columns)");
}

template <class T>
void kernels<T>::scale_rows(context& c, T* x, const T* factors, std::size_t rows, std::size_t width)
{
    if (rows * width == 0) return;
    scale_rows_kernel<T><<<blocks_for(rows * width), threads, 0, c.stream()>>>(x, factors, rows, width);
    check_launch("scale_rows");
}

template <class T>
void kernels<T>::add(context& c, const T* a, const T* b, T* out, std::size_t n)
{
    if (n == 0) return;
    add_kernel<T><<<blocks_for(n), threads, 0, c.stream()>>>(a, b, out, n);
    check_launch("add");
}

template <class T>
void kernels<T>::dropout(context& c, T* x, std::size_t n, dropout_draw draw, std::size_t offset)
{
    if (n == 0 || !draw.active()) return;
    dropout_kernel<T><<<blocks_for(n), threads, 0, c.stream()>>>(x, n, draw, offset);
    check_launch("dropout");
}

template <class T>
void kernels<T>::copy_rows(context& c, const T* from, index_array from_rows, T* to, index_array to_rows, std::size_t count,
                           std::size_t width)
{
    if (count * width == 0) return;
    copy_rows_kernel<T><<<blocks_for(count * width), threads, 0, c.stream()>>>(from, from_rows, to, to_rows, count, width);
    check_launch("copy_rows");
}

template <class T>
void kernels<T>::add_rows(context& c, const T* from, index_array from_rows, T* to, index_array to_rows, std::size_t count,
                          std::size_t width)
{
    if (count * width == 0) return;
    add_rows_kernel<T><<<blocks_for(width), threads, 0, c.stream()>>>(from, from_rows, to, to_rows, count, width);
    check_launch("add_rows");
}

template <class T>
void kernels<T>::add_type_and_position_rows(context& c, T* rows, std::size_t count, std::size_t width, const T* types,
                                            index_array type_ids, const T* positions, index_array position_ids)
{
    if (count * width == 0) return;
    add_type_and_position_rows_kernel<T>
        <<<blocks_for(count * width), threads, 0, c.stream()>>>(rows, count, width, types, type_ids, positions, position_ids);
    check_launch("add_type_and_position_rows");
}

template <class T>
void kernels<T>::scale_shift_rows(context& c, const T* values, const T* scale, const T* shift, T* to, index_array to_rows,
                                  std::size_t count, std::size_t width)
{
    if (count * width == 0) return;
    scale_shift_rows_kernel<T>
        <<<blocks_for(count * width), threads, 0, c.stream()>>>(values, scale, shift, to, to_rows, count, width);
    check_launch("scale_shift_rows");
}

template <class T>
void kernels<T>::scale_shift_rows_backward(context& c, const T* values, const T* d_rows, index_array from_rows, std::size_t count,
                                           std::size_t width, T* d_scale, T* d_shift)
{
    if (count * width == 0) return;
    scale_shift_rows_backward_kernel<T>
        <<<blocks_for(width), threads, 0, c.stream()>>>(values, d_rows, from_rows, count, width, d_scale, d_shift);
    check_launch("scale_shift_rows_backward");
}

template <class T>
void kernels<T>::segment_attention_pool(context& c, const T* rows, std::size_t width, const row_group* groups,
                                        std::size_t group_count, T* scores, const T* residual, T* pooled)
{
    if (group_count == 0) return;
    segment_attention_pool_kernel<T>
        <<<blocks_of(group_count, "groups"), threads, 0, c.stream()>>>(rows, width, groups, scores, residual, pooled);
    check_launch("segment_attention_pool");
}

template <class T>
void kernels<T>::segment_attention_pool_backward(context& c, const T* rows, std::size_t width, const row_group* groups,
                                                 std::size_t group_count, const T* weights, const T* residual, const T* d_pooled,
                                                 T* d_rows, T* d_scores, T* d_residual)
{
    if (group_count == 0) return;
    const auto blocks = blocks_of(group_count, "groups");
    segment_pool_backward_rows_kernel<T>
        <<<blocks, threads, 0, c.stream()>>>(rows, width, groups, weights, residual, d_pooled, d_rows, d_scores);
    check_launch("segment_attention_pool_backward");
    if (d_residual != nullptr) {
        segment_pool_backward_residual_kernel<T><<<1, 1, 0, c.stream()>>>(groups, group_count, d_scores, d_residual);
        check_launch("segment_attention_pool_backward (residual)");
    }
    segment_pool_backward_softmax_kernel<T><<<blocks, threads, 0, c.stream()>>>(groups, weights, d_scores);
    check_launch("segment_attention_pool_backward (softmax)");
}

template <class T>
void kernels<T>::max_pool(context& c, const T* x, std::size_t width, const row_group* groups, std::size_t group_count, T* out,
                          std::uint32_t* argmax)
{
    if (group_count * width == 0) return;
    max_pool_kernel<T><<<blocks_for(group_count * width), threads, 0, c.stream()>>>(x, width, groups, group_count, out, argmax);
    check_launch("max_pool");
}

template <class T>
void kernels<T>::max_pool_backward(context& c, const T* d_out, std::size_t width, std::size_t group_count,
                                   const std::uint32_t* argmax, std::size_t rows, T* dx)
{
    fill_bits(c, dx, rows * width, sizeof(T), 0);  // +0.0 is all zero bits
    if (group_count * width == 0) return;
    max_pool_backward_kernel<T>
        <<<blocks_for(group_count * width), threads, 0, c.stream()>>>(d_out, width, group_count * width, argmax, dx);
    check_launch("max_pool_backward");
}

template <class T>
void kernels<T>::gelu_backward(context& c, const T* x, T* grad, std::size_t n)
{
    if (n == 0) return;
    gelu_backward_kernel<T><<<blocks_for(n), threads, 0, c.stream()>>>(x, grad, n);
    check_launch("gelu_backward");
}

template <class T>
void kernels<T>::tanh_backward(context& c, const T* y, T* grad, std::size_t n)
{
    if (n == 0) return;
    tanh_backward_kernel<T><<<blocks_for(n), threads, 0, c.stream()>>>(y, grad, n);
    check_launch("tanh_backward");
}

template <class T>
void kernels<T>::masked_softmax_backward(context& c, const T* p, T* grad, std::size_t n)
{
    if (n == 0) return;
    masked_softmax_backward_kernel<T><<<1, threads, 0, c.stream()>>>(p, grad, n);
    check_launch("masked_softmax_backward");
}

template <class T>
void kernels<T>::layer_norm_backward(context& c, const T* v, const T* dy, T* dv, std::size_t rows, std::size_t cols,
                                     const T* gamma, T eps, T* dgamma, T* dbeta)
{
    if (rows == 0 || cols == 0) return;
    const device_buffer statistics(c, 2 * rows * sizeof(double));
    row_statistics_kernel<T><<<blocks_of(rows, "rows"), threads, 0, c.stream()>>>(v, cols, eps, statistics.as<double>());
    check_launch("layer_norm_backward (statistics)");
    // dγ and dβ read dy before dv, which may be dy, is written.
    const std::size_t chunks = column_chunks(rows);
    const device_buffer partial(c, 2 * chunks * cols * sizeof(double));
    layer_norm_partial_gradients_kernel<T>
        <<<column_chunk_grid(rows, cols, "layer_norm_backward (parameters)"), threads, 0, c.stream()>>>(
            v, dy, rows, cols, column_chunk_rows(rows), statistics.as<const double>(), partial.as<double>());
    check_launch("layer_norm_backward (parameters)");
    add_partial_sums_kernel<T><<<blocks_for(cols), threads, 0, c.stream()>>>(partial.as<const double>(), chunks, cols, dgamma);
    add_partial_sums_kernel<T>
        <<<blocks_for(cols), threads, 0, c.stream()>>>(partial.as<const double>() + chunks * cols, chunks, cols, dbeta);
    check_launch("layer_norm_backward (parameter sums)");
    layer_norm_input_gradient_kernel<T>
        <<<blocks_of(rows, "rows"), threads, 0, c.stream()>>>(v, dy, dv, cols, gamma, statistics.as<const double>());
    check_launch("layer_norm_backward (input)");
}

template <class T>
void kernels<T>::add_column_sums(context& c, const T* x, std::size_t rows, std::size_t cols, std::size_t ldx, T* out)
{
    if (cols == 0 || rows == 0) return;  // out += 0
    const std::size_t chunks = column_chunks(rows);
    const device_buffer partial(c, chunks * cols * sizeof(double));
    column_partial_sums_kernel<T><<<column_chunk_grid(rows, cols, "add_column_sums"), threads, 0, c.stream()>>>(
        x, rows, cols, ldx, column_chunk_rows(rows), partial.as<double>());
    check_launch("add_column_sums (chunks)");
    add_partial_sums_kernel<T><<<blocks_for(cols), threads, 0, c.stream()>>>(partial.as<const double>(), chunks, cols, out);
    check_launch("add_column_sums");
}

template <class T>
void kernels<T>::softmax_cross_entropy(context& c, const T* logits, const T* classes, std::size_t batch, std::size_t outputs,
                                       T* grad, double weight, double* loss)
{
    softmax_cross_entropy_kernel<T><<<1, 1, 0, c.stream()>>>(logits, classes, batch, outputs, grad, weight, loss);
    check_launch("softmax_cross_entropy");
}

template <class T>
void kernels<T>::binary_cross_entropy(context& c, const T* logits, const T* targets, std::size_t n, T* grad, double weight,
                                      double* loss)
{
    binary_cross_entropy_kernel<T><<<1, 1, 0, c.stream()>>>(logits, targets, n, grad, weight, loss);
    check_launch("binary_cross_entropy");
}

template <class T>
void kernels<T>::squared_error(context& c, const T* logits, const T* targets, std::size_t n, T* grad, double weight, double* loss)
{
    squared_error_kernel<T><<<1, 1, 0, c.stream()>>>(logits, targets, n, grad, weight, loss);
    check_launch("squared_error");
}

template <class T>
void kernels<T>::sum_of_squares(context& c, const std::vector<buffer_view<const T*>>& buffers, double* norm)
{
    const auto pieces = pieces_of(buffers);
    const device_buffer list = upload_list(c, pieces);
    const device_buffer sums(c, pieces.size() * sizeof(double));
    if (!pieces.empty()) {
        piece_squares_kernel<T>
            <<<blocks_of(pieces.size(), "pieces"), threads, 0, c.stream()>>>(list.as<const piece<const T>>(), sums.as<double>());
        check_launch("sum_of_squares");
    }
    norm_total_kernel<T><<<1, 1, 0, c.stream()>>>(list.as<const piece<const T>>(), pieces.size(), sums.as<const double>(), norm);
    check_launch("sum_of_squares (total)");
}

template <class T>
void kernels<T>::scale_buffers(context& c, const std::vector<buffer_view<T*>>& buffers, double factor)
{
    scale_or_clip(c, buffers, factor, nullptr, 0);
}

template <class T>
void kernels<T>::clip_buffers(context& c, const std::vector<buffer_view<T*>>& buffers, const double* norm, double max_norm)
{
    scale_or_clip(c, buffers, 1.0, norm, max_norm);
}

template <class T>
void kernels<T>::adamw_update(context& c, const std::vector<adamw_buffers<T*, const T*>>& parameters, const double* norm)
{
    std::vector<adamw_piece<T>> pieces;
    for (const auto& b : parameters)
        for (std::size_t begin = 0; begin < b.size; begin += parameter_chunk)
            pieces.push_back(
                {b.p + begin, b.m + begin, b.v + begin, b.g + begin, std::min(parameter_chunk, b.size - begin), b.coefficients});
    if (pieces.empty()) return;
    const device_buffer list = upload_list(c, pieces);
    adamw_kernel<T><<<blocks_of(pieces.size(), "pieces"), threads, 0, c.stream()>>>(list.as<const adamw_piece<T>>(), norm);
    check_launch("adamw_update");
}

template struct kernels<float>;
template struct kernels<double>;

}  // namespace dm2s2::detail::cuda
