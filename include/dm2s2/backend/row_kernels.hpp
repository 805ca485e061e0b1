#pragma once
/// \file
/// Operations on rows and segments of rows that the modules need besides products and the element-wise
/// kernels, written once for the host backends: copies and sums of rows through index arrays (embedding
/// lookups, scatters of gradients), counter-based dropout, the segmented softmax and weighted
/// sum of IntraMRA/InterMRA with its backward, and max-pooling with its argmax. Every sum runs in a fixed
/// order (the order of the index array or of the rows), so results do not depend on threads.
///
/// Index arrays and row groups are in the backend's memory like the values; a null index array means
/// "row i" (the identity).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "dm2s2/backend/backend.hpp"
#include "dm2s2/core/batch_layout.hpp"
#include "dm2s2/core/random.hpp"
#include "dm2s2/core/thread_pool.hpp"

namespace dm2s2 {

/// The row operations of a host backend `Backend` on its own kernels; `Backend` derives from it.
template <class Backend>
struct host_row_operations {
    /// to[0..n) = from[0..n).
    template <class T>
    void copy(const T* from, std::size_t n, T* to) const
    {
        std::copy_n(from, n, to);
    }

    /// x[0..n) = value, in pieces of `parameter_chunk` values on the backend's threads.
    template <class T>
    void fill(T* x, std::size_t n, T value) const
    {
        for_each_chunk(self(), n, parameter_chunk,
                       [&](std::size_t, std::size_t begin, std::size_t end) { std::fill(x + begin, x + end, value); });
    }

    /// Row i of x ([rows, width]) *= factors[i].
    template <scalar T>
    void scale_rows(T* x, const T* factors, std::size_t rows, std::size_t width) const
    {
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t j = 0; j < width; ++j) x[i * width + j] *= factors[i];
    }

    /// out[i] = a[i] + b[i] for i < n (out may alias a or b).
    template <scalar T>
    void add(const T* a, const T* b, T* out, std::size_t n) const
    {
        for (std::size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
    }

    /// x[i] *= the factor of element `offset + i` of `draw` (dropout, and its backward: the same call
    /// regenerates the same factors).
    template <scalar T>
    void dropout(T* x, std::size_t n, dropout_draw draw, std::size_t offset = 0) const
    {
        if (!draw.active()) return;
        for_each_chunk(self(), n, parameter_chunk, [&](std::size_t, std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) x[i] *= draw.factor<T>(offset + i);
        });
    }

    /// Row to_rows[i] of `to` = row from_rows[i] of `from`, for i < count; rows of `width` values. A null
    /// index array is the identity.
    template <scalar T, class FromIndex, class ToIndex>
    void copy_rows(const T* from, const FromIndex* from_rows, T* to, const ToIndex* to_rows, std::size_t count,
                   std::size_t width) const
    {
        for (std::size_t i = 0; i < count; ++i)
            std::copy_n(from + row_of(from_rows, i) * width, width, to + row_of(to_rows, i) * width);
    }

    /// Row to_rows[i] of `to` += row from_rows[i] of `from`, for i = 0, 1, … in order (rows that meet
    /// the same target add up in that order).
    template <scalar T, class FromIndex, class ToIndex>
    void add_rows(const T* from, const FromIndex* from_rows, T* to, const ToIndex* to_rows, std::size_t count,
                  std::size_t width) const
    {
        for (std::size_t i = 0; i < count; ++i) {
            const T* f = from + row_of(from_rows, i) * width;
            T* t = to + row_of(to_rows, i) * width;
            for (std::size_t j = 0; j < width; ++j) t[j] += f[j];
        }
    }

    /// BERT's embedding sum in HuggingFace's order: rows[i] = (rows[i] + types[type_ids[i]]) +
    /// positions[position_ids[i]], for `count` rows of `width`.
    template <scalar T, class Index>
    void add_type_and_position_rows(T* rows, std::size_t count, std::size_t width, const T* types, const Index* type_ids,
                                    const T* positions, const Index* position_ids) const
    {
        for (std::size_t i = 0; i < count; ++i) {
            T* row = rows + i * width;
            const T* type_row = types + static_cast<std::size_t>(type_ids[i]) * width;
            const T* position_row = positions + static_cast<std::size_t>(position_ids[i]) * width;
            for (std::size_t j = 0; j < width; ++j) row[j] = (row[j] + type_row[j]) + position_row[j];
        }
    }

    /// Row to_rows[i] of `to` = values[i] · scale + shift (numeric elements), for i < count.
    template <scalar T, class ToIndex>
    void scale_shift_rows(const T* values, const T* scale, const T* shift, T* to, const ToIndex* to_rows, std::size_t count,
                          std::size_t width) const
    {
        for (std::size_t i = 0; i < count; ++i) {
            T* row = to + row_of(to_rows, i) * width;
            for (std::size_t j = 0; j < width; ++j) row[j] = values[i] * scale[j] + shift[j];
        }
    }

    /// Backward of `scale_shift_rows` for the output gradients in rows from_rows[i] of `d_rows`:
    /// d_scale += values[i] · d, d_shift += d, for i = 0, 1, … in order.
    template <scalar T, class FromIndex>
    void scale_shift_rows_backward(const T* values, const T* d_rows, const FromIndex* from_rows, std::size_t count,
                                   std::size_t width, T* d_scale, T* d_shift) const
    {
        for (std::size_t i = 0; i < count; ++i) {
            const T* d = d_rows + row_of(from_rows, i) * width;
            for (std::size_t j = 0; j < width; ++j) {
                d_scale[j] += values[i] * d[j];
                d_shift[j] += d[j];
            }
        }
    }

    /// For each group g of consecutive rows of `rows` ([n, width]): the group's `scores` become softmax
    /// weights (in place), and pooled[g] = Σ weightᵢ rowᵢ + r · mean rowᵢ (IntraMRA, InterMRA), r the one
    /// value at `residual` (in the backend's memory, since it may be learned; null: 0).
    /// Groups must not be empty.
    template <scalar T>
    void segment_attention_pool(const T* rows, std::size_t width, const row_group* groups, std::size_t group_count, T* scores,
                                const T* residual_at, T* pooled) const
    {
        const Backend& backend = self();
        const T residual = residual_at != nullptr ? *residual_at : T(0);
        std::vector<T> coefficients;
        for (std::size_t g = 0; g < group_count; ++g) {
            const auto [begin, length] = groups[g];
            backend.masked_softmax(scores + begin, length, static_cast<const std::uint8_t*>(nullptr));
            // One product per group: the residual mean folds into the coefficients.
            coefficients.assign(scores + begin, scores + begin + length);
            for (auto& c : coefficients) c += residual / static_cast<T>(length);
            backend.gemm(transpose::no, transpose::no, 1, width, length, T(1), coefficients.data(), length, rows + begin * width,
                         width, T(0), pooled + g * width, width);
        }
    }

    /// Backward of `segment_attention_pool` from the weights it left in its scores: adds d(rows) to
    /// `d_rows`, writes d(scores) and, when `d_residual` is not null, adds d(residual) to it.
    template <scalar T>
    void segment_attention_pool_backward(const T* rows, std::size_t width, const row_group* groups, std::size_t group_count,
                                         const T* weights, const T* residual_at, const T* d_pooled, T* d_rows, T* d_scores,
                                         T* d_residual) const
    {
        const Backend& backend = self();
        const T residual = residual_at != nullptr ? *residual_at : T(0);
        std::vector<T> coefficients;
        for (std::size_t g = 0; g < group_count; ++g) {
            const auto [begin, length] = groups[g];
            coefficients.assign(weights + begin, weights + begin + length);
            for (auto& c : coefficients) c += residual / static_cast<T>(length);
            // pooled = Σ c_i rows_i: d rows_i += c_i d pooled, d c_i = rows_i · d pooled.
            backend.gemm(transpose::no, transpose::no, length, width, 1, T(1), coefficients.data(), 1, d_pooled + g * width,
                         width, T(1), d_rows + begin * width, width);
            backend.gemm(transpose::no, transpose::no, length, 1, width, T(1), rows + begin * width, width, d_pooled + g * width,
                         1, T(0), d_scores + begin, 1);
            if (d_residual != nullptr) {  // d r = mean(rows) · d pooled = mean of d c_i
                T sum = 0;
                for (std::size_t i = 0; i < length; ++i) sum += d_scores[begin + i];
                *d_residual += sum / static_cast<T>(length);
            }
            backend.masked_softmax_backward(weights + begin, d_scores + begin, length);
        }
    }

    /// Element-wise maximum over each group of rows of `x` ([rows, width]) into `out` ([groups, width]);
    /// `argmax` ([groups · width]) receives the row each maximum came from (the first on ties).
    template <scalar T>
    void max_pool(const T* x, std::size_t width, const row_group* groups, std::size_t group_count, T* out,
                  std::uint32_t* argmax) const
    {
        for (std::size_t g = 0; g < group_count; ++g) {
            T* o = out + g * width;
            std::uint32_t* arg = argmax + g * width;
            for (std::size_t j = 0; j < width; ++j) {
                o[j] = -std::numeric_limits<T>::infinity();
                arg[j] = static_cast<std::uint32_t>(groups[g].begin);
            }
            for (std::size_t i = groups[g].begin; i < groups[g].begin + groups[g].length; ++i) {
                const T* row = x + i * width;
                for (std::size_t j = 0; j < width; ++j)
                    if (row[j] > o[j]) {
                        o[j] = row[j];
                        arg[j] = static_cast<std::uint32_t>(i);
                    }
            }
        }
    }

    /// Backward of `max_pool`: dx ([rows, width]) is overwritten with each output gradient routed to the
    /// row its maximum came from.
    template <scalar T>
    void max_pool_backward(const T* d_out, std::size_t width, std::size_t group_count, const std::uint32_t* argmax,
                           std::size_t rows, T* dx) const
    {
        std::fill(dx, dx + rows * width, T(0));
        for (std::size_t k = 0; k < group_count * width; ++k) dx[argmax[k] * width + k % width] += d_out[k];
    }

private:
    const Backend& self() const noexcept { return static_cast<const Backend&>(*this); }

    template <class Index>
    static std::size_t row_of(const Index* rows, std::size_t i) noexcept
    {
        return rows == nullptr ? i : static_cast<std::size_t>(rows[i]);
    }
};

}  // namespace dm2s2
