#pragma once
/// \file
/// The kernels a backward pass needs beyond `gemm`, as portable loops, and the `training_backend_for`
/// concept. Backends inherit `portable_backward_kernels` and may replace a kernel with a faster one;
/// the backward passes are tested against finite differences and HuggingFace gradients.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <vector>

#include "dm2s2/backend/backend.hpp"

namespace dm2s2 {

/// Backward kernels written once for every CPU backend. Sums accumulate in double.
struct portable_backward_kernels {
    /// grad[i] *= GELU'(x[i]) for the erf form: Φ(x) + x φ(x).
    template <scalar T>
    void gelu_backward(const T* x, T* grad, std::size_t n) const
    {
        const double inv_sqrt2 = 1.0 / std::numbers::sqrt2, inv_sqrt_2pi = 0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2;
        for (std::size_t i = 0; i < n; ++i) {
            const double v = x[i];
            grad[i] =
                static_cast<T>(grad[i] * (0.5 * (1.0 + std::erf(v * inv_sqrt2)) + v * inv_sqrt_2pi * std::exp(-0.5 * v * v)));
        }
    }

    /// grad[i] *= 1 − y[i]², with y = tanh(x) the forward output.
    template <scalar T>
    void tanh_backward(const T* y, T* grad, std::size_t n) const
    {
        for (std::size_t i = 0; i < n; ++i) grad[i] *= T(1) - y[i] * y[i];
    }

    /// Softmax backward in place: grad ← p ⊙ (grad − Σ p ⊙ grad), p the forward output (masked entries
    /// have p = 0 and so get zero gradient).
    template <scalar T>
    void masked_softmax_backward(const T* p, T* grad, std::size_t n) const
    {
        double dot = 0;
        for (std::size_t i = 0; i < n; ++i) dot += static_cast<double>(p[i]) * grad[i];
        for (std::size_t i = 0; i < n; ++i) grad[i] = static_cast<T>(p[i] * (grad[i] - dot));
    }

    /// Backward of y = LN(v) per row: dv from dy (dv may be dy), and dγ, dβ accumulated. `v` is the
    /// forward input (x + residual); the row statistics are recomputed from it.
    template <scalar T>
    void layer_norm_backward(const T* v, const T* dy, T* dv, std::size_t rows, std::size_t cols, const T* gamma, T eps, T* dgamma,
                             T* dbeta) const
    {
        for (std::size_t r = 0; r < rows; ++r) {
            const auto stats = layer_norm_statistics(v + r * cols, cols, eps);
            layer_norm_parameter_gradients(v + r * cols, dy + r * cols, 0, cols, stats, dgamma, dbeta);
            layer_norm_input_gradient(v + r * cols, dy + r * cols, dv + r * cols, cols, gamma, stats);
        }
    }

    /// out[j] += Σ_i x[i, j] (bias gradients), one double sum per column adding the rows in order.
    template <scalar T>
    void add_column_sums(const T* x, std::size_t rows, std::size_t cols, std::size_t ldx, T* out) const
    {
        add_column_sums_range(x, rows, ldx, 0, cols, out);
    }

protected:
    /// A row's mean and 1/σ, as layer norm computes them, in double.
    struct row_statistics {
        double mean, inv_sigma;
    };

    /// The statistics of one row of layer norm's input.
    template <scalar T>
    static row_statistics layer_norm_statistics(const T* vr, std::size_t cols, T eps)
    {
        double mean = 0, var = 0;
        for (std::size_t j = 0; j < cols; ++j) mean += vr[j];
        mean /= static_cast<double>(cols);
        for (std::size_t j = 0; j < cols; ++j) var += (vr[j] - mean) * (vr[j] - mean);
        var /= static_cast<double>(cols);
        return {mean, 1.0 / std::sqrt(var + eps)};
    }

    /// One row's dv = (dy γ − mean(dy γ) − x̂ mean(dy γ x̂)) / σ; dvr may be dyr.
    template <scalar T>
    static void layer_norm_input_gradient(const T* vr, const T* dyr, T* dvr, std::size_t cols, const T* gamma,
                                          row_statistics stats)
    {
        double mean_dxhat = 0, mean_dxhat_xhat = 0;
        for (std::size_t j = 0; j < cols; ++j) {
            const double xhat = (vr[j] - stats.mean) * stats.inv_sigma, dxhat = static_cast<double>(dyr[j]) * gamma[j];
            mean_dxhat += dxhat;
            mean_dxhat_xhat += dxhat * xhat;
        }
        mean_dxhat /= static_cast<double>(cols);
        mean_dxhat_xhat /= static_cast<double>(cols);
        for (std::size_t j = 0; j < cols; ++j) {
            const double xhat = (vr[j] - stats.mean) * stats.inv_sigma;
            dvr[j] =
                static_cast<T>(stats.inv_sigma * (static_cast<double>(dyr[j]) * gamma[j] - mean_dxhat - xhat * mean_dxhat_xhat));
        }
    }

    /// One row's share of dγ (dy x̂) and dβ (dy), added for columns [first, last).
    template <scalar T>
    static void layer_norm_parameter_gradients(const T* vr, const T* dyr, std::size_t first, std::size_t last,
                                               row_statistics stats, T* dgamma, T* dbeta)
    {
        for (std::size_t j = first; j < last; ++j) {
            dgamma[j] += static_cast<T>(dyr[j] * ((vr[j] - stats.mean) * stats.inv_sigma));
            dbeta[j] += dyr[j];
        }
    }

    /// `add_column_sums` for columns [first, last) of x (rows × …, row stride ldx), going down the rows
    /// with contiguous reads.
    template <scalar T>
    static void add_column_sums_range(const T* x, std::size_t rows, std::size_t ldx, std::size_t first, std::size_t last, T* out)
    {
        std::vector<double> sums(last - first, 0.0);
        for (std::size_t i = 0; i < rows; ++i) {
            const T* row = x + i * ldx + first;
            for (std::size_t j = 0; j < sums.size(); ++j) sums[j] += row[j];
        }
        for (std::size_t j = 0; j < sums.size(); ++j) out[first + j] += static_cast<T>(sums[j]);
    }
};

/// A backend that can also run backward passes: the kernels of `portable_backward_kernels`, on
/// pointers of its memory space.
template <class B, class T>
concept training_backend_for =
    backend_for<B, T> &&
    requires(const B& backend, backend_pointer<B, T> y, backend_pointer<B, const T> x, std::size_t n, T value,
             const attention_shape& shape, backend_pointer<B, const std::size_t> rows, backend_pointer<B, const row_group> groups,
             backend_pointer<B, const std::uint32_t> argmax, dropout_draw draw) {
        backend.gelu_backward(x, y, n);
        backend.tanh_backward(x, y, n);
        backend.masked_softmax_backward(x, y, n);
        backend.layer_norm_backward(x, x, y, n, n, x, value, y, y);
        backend.add_column_sums(x, n, n, n, y);
        backend.attention_backward(shape, value, x, x, x, x, draw, x, y, y, y);
        backend.scale_shift_rows_backward(x, x, rows, n, n, y, y);
        backend.segment_attention_pool_backward(x, n, groups, n, x, x, x, y, y, y);
        backend.max_pool_backward(x, n, n, argmax, n, y);
    };

/// A training backend whose memory space is `Space` (see `backend_in`).
template <class B, class T, class Space>
concept training_backend_in = training_backend_for<B, T> && std::same_as<backend_space<B>, Space>;

/// A training backend working in host memory (see `host_backend_for`).
template <class B, class T>
concept host_training_backend_for = training_backend_for<B, T> && host_backend_for<B, T>;

}  // namespace dm2s2
