#pragma once
/// \file
/// The operations of a training step after the backward pass, written once for the host backends:
/// the losses with their gradients, the global gradient norm with its finiteness check, clipping, and
/// AdamW over every parameter at once. Each works on a list of buffers (multi-tensor), so that a device
/// backend can run one launch per list and hand back only a few scalars. The order of every sum
/// depends only on the buffers' sizes, never on the thread count.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/core/simd.hpp"
#include "dm2s2/core/thread_pool.hpp"

namespace dm2s2 {

/// A buffer of `size` values at `data` (a pointer of the backend's space).
template <class Pointer>
struct buffer_view {
    Pointer data{};
    std::size_t size = 0;
};

/// What `sum_of_squares` leaves in the backend's memory: two doubles, Σ x² and the index of the first
/// buffer after which the running sum is not finite (−1 when it stays finite). Clipping and AdamW read
/// them where they are, so a training step needs them on the host only once, at its end.
struct gradient_norm {
    static constexpr std::size_t values = 2;

    static bool finite(const double* norm) noexcept { return norm[1] < 0; }
    static double value(const double* norm) noexcept { return std::sqrt(norm[0]); }
    /// min(1, max_norm / (‖g‖ + 1e-6)), as `torch.nn.utils.clip_grad_norm_`.
    static double clip_coefficient(const double* norm, double max_norm) noexcept
    {
        return std::min(1.0, max_norm / (value(norm) + 1e-6));
    }
};

/// The coefficients of one AdamW update, shared by every element of a parameter.
struct adamw_coefficients {
    double keep;  ///< 1 − lr · weight decay
    double beta1, beta2, step_size, sqrt_correction2, eps;
};

/// One parameter's AdamW buffers: values p, moments m and v, gradient g, all `size` long.
template <class Pointer, class ConstPointer>
struct adamw_buffers {
    Pointer p{}, m{}, v{};
    ConstPointer g{};
    std::size_t size = 0;
    adamw_coefficients coefficients{};
};

namespace detail {

/// The sum of x[i]² over n values, in double. Its order of additions depends only on n. Four vector sums
/// run side by side: one running scalar sum waited on each addition.
template <scalar T>
double sum_of_squares(const T* x, std::size_t n) noexcept
{
    double sum = 0;
    std::size_t i = 0;
#if DM2S2_HAS_XSIMD
    using batch = simd::batch<double>;
    constexpr std::size_t w = batch::size;
    batch s0(0.0), s1(0.0), s2(0.0), s3(0.0);
    for (; i + 4 * w <= n; i += 4 * w) {
        const auto a0 = batch::load_unaligned(x + i), a1 = batch::load_unaligned(x + i + w);
        const auto a2 = batch::load_unaligned(x + i + 2 * w), a3 = batch::load_unaligned(x + i + 3 * w);
        s0 += a0 * a0;
        s1 += a1 * a1;
        s2 += a2 * a2;
        s3 += a3 * a3;
    }
    sum = simd::reduce_sum((s0 + s1) + (s2 + s3));
#endif
    for (; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
    return sum;
}

/// AdamW's update of one element in double, or of a batch of them (`V`: double or simd::batch<double>):
/// the same operations in the same order either way. Which elements take which path depends only on
/// the parameter's size, so results never depend on the thread count.
template <class V>
void adamw_update(V& p, V& m, V& v, const V& g, const adamw_coefficients& c)
{
    using std::sqrt;
    const V one(1.0), beta1(c.beta1), beta2(c.beta2);
    p = p * V(c.keep);
    m = beta1 * m + (one - beta1) * g;
    v = beta2 * v + (one - beta2) * g * g;
    p = p - V(c.step_size) * m / (sqrt(v) / V(c.sqrt_correction2) + V(c.eps));
}

/// AdamW over n elements of a parameter p, its moments m and v and its gradient g, computed in double.
template <scalar T>
void adamw_range(T* p, T* m, T* v, const T* g, std::size_t n, const adamw_coefficients& c)
{
    std::size_t i = 0;
#if DM2S2_HAS_XSIMD
    // Vector square roots and divisions: the scalar loop spent most of its time waiting for them.
    using batch = simd::batch<double>;
    for (; i + batch::size <= n; i += batch::size) {
        auto pb = batch::load_unaligned(p + i), mb = batch::load_unaligned(m + i), vb = batch::load_unaligned(v + i);
        adamw_update(pb, mb, vb, batch::load_unaligned(g + i), c);
        mb.store_unaligned(m + i);
        vb.store_unaligned(v + i);
        pb.store_unaligned(p + i);
    }
#endif
    for (; i < n; ++i) {
        double pi = p[i], mi = m[i], vi = v[i];
        adamw_update(pi, mi, vi, static_cast<double>(g[i]), c);
        m[i] = static_cast<T>(mi);
        v[i] = static_cast<T>(vi);
        p[i] = static_cast<T>(pi);
    }
}

}  // namespace detail

/// The training-step operations of a host backend `Backend`, on its threads (`parallel_for`, in pieces
/// of `parameter_chunk` values); `Backend` derives from it.
template <class Backend>
struct host_training_operations {
    /// Mean softmax cross-entropy of `logits` [batch, outputs] against class ids (`classes` [batch],
    /// integers held as T); writes its gradient to `grad` [batch, outputs] and adds `weight` × the loss
    /// to `*loss` (one double of the backend's memory: a step sums its micro-batches there).
    template <scalar T>
    void softmax_cross_entropy(const T* logits, const T* classes, std::size_t batch, std::size_t outputs, T* grad, double weight,
                               double* loss) const
    {
        double value = 0;
        for (std::size_t b = 0; b < batch; ++b) {
            const auto c = static_cast<std::size_t>(classes[b]);
            const T* row = logits + b * outputs;
            const double max = *std::max_element(row, row + outputs);
            double sum = 0;
            for (std::size_t j = 0; j < outputs; ++j) sum += std::exp(row[j] - max);
            const double log_sum = max + std::log(sum);
            value += log_sum - row[c];
            for (std::size_t j = 0; j < outputs; ++j)
                grad[b * outputs + j] = static_cast<T>((std::exp(row[j] - log_sum) - (j == c ? 1.0 : 0.0)) / batch);
        }
        *loss += weight * (value / static_cast<double>(batch));
    }

    /// Mean binary cross-entropy with logits over n values against 0/1 targets, in the stable form
    /// max(x, 0) − x y + log(1 + e^−|x|); writes the gradient and adds `weight` × the loss to `*loss`.
    template <scalar T>
    void binary_cross_entropy(const T* logits, const T* targets, std::size_t n, T* grad, double weight, double* loss) const
    {
        double value = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const double x = logits[i], y = targets[i];
            value += std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::abs(x)));
            grad[i] = static_cast<T>((1 / (1 + std::exp(-x)) - y) / static_cast<double>(n));
        }
        *loss += weight * (value / static_cast<double>(n));
    }

    /// Mean squared error over n values; writes the gradient and adds `weight` × the loss to `*loss`.
    template <scalar T>
    void squared_error(const T* logits, const T* targets, std::size_t n, T* grad, double weight, double* loss) const
    {
        double value = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const double x = logits[i], y = targets[i];
            value += (x - y) * (x - y);
            grad[i] = static_cast<T>(2 * (x - y) / static_cast<double>(n));
        }
        *loss += weight * (value / static_cast<double>(n));
    }

    /// Σ x² over every buffer in order (each in pieces whose sums are added in order) into `norm[0]`,
    /// and into `norm[1]` the index of the first buffer after which the running sum is not finite, or
    /// −1 (see `gradient_norm`).
    template <scalar T>
    void sum_of_squares(std::span<const buffer_view<const T*>> buffers, double* norm) const
    {
        double sum = 0, first_non_finite = -1;
        std::vector<double> partial;
        for (std::size_t t = 0; t < buffers.size(); ++t) {
            const T* values = buffers[t].data;
            const std::size_t n = buffers[t].size;
            partial.assign((n + parameter_chunk - 1) / parameter_chunk, 0.0);
            for_each_chunk(self(), n, parameter_chunk, [&](std::size_t piece, std::size_t begin, std::size_t end) {
                partial[piece] = detail::sum_of_squares(values + begin, end - begin);
            });
            for (const double s : partial) sum += s;
            if (!std::isfinite(sum) && first_non_finite < 0) first_non_finite = static_cast<double>(t);
        }
        norm[0] = sum;
        norm[1] = first_non_finite;
    }

    /// x = T(x · factor) over every buffer (the weighting of accumulated gradients).
    template <scalar T>
    void scale_buffers(std::span<const buffer_view<T*>> buffers, double factor) const
    {
        for (const auto& buffer : buffers)
            for_each_chunk(self(), buffer.size, parameter_chunk, [&](std::size_t, std::size_t begin, std::size_t end) {
                for (std::size_t i = begin; i < end; ++i) buffer.data[i] = static_cast<T>(buffer.data[i] * factor);
            });
    }

    /// Global-norm clipping from the `norm` that `sum_of_squares` left: when it is finite, every buffer
    /// is scaled by min(1, max_norm / (‖g‖ + 1e-6)) (`torch.nn.utils.clip_grad_norm_`); nothing
    /// changes when the coefficient is 1 or the norm is not finite.
    template <scalar T>
    void clip_buffers(std::span<const buffer_view<T*>> buffers, const double* norm, double max_norm) const
    {
        if (!gradient_norm::finite(norm)) return;
        const double coefficient = gradient_norm::clip_coefficient(norm, max_norm);
        if (coefficient < 1.0) scale_buffers(buffers, coefficient);
    }

    /// One AdamW update of every parameter of the list; none when `norm` (what `sum_of_squares` left,
    /// or null) says the gradients are not finite, so a bad step leaves the parameters as they were.
    template <scalar T>
    void adamw_update(std::span<const adamw_buffers<T*, const T*>> parameters, const double* norm = nullptr) const
    {
        if (norm != nullptr && !gradient_norm::finite(norm)) return;
        for (const auto& b : parameters)
            for_each_chunk(self(), b.size, parameter_chunk, [&](std::size_t, std::size_t begin, std::size_t end) {
                detail::adamw_range(b.p + begin, b.m + begin, b.v + begin, b.g + begin, end - begin, b.coefficients);
            });
    }

private:
    const Backend& self() const noexcept { return static_cast<const Backend&>(*this); }
};

/// A backend that can run a whole training step: `training_backend_for` and the operations of
/// `host_training_operations` (losses, gradient norm, clipping, `scale_buffers`, AdamW) on buffers of
/// its space, leaving their scalar results (loss, norm) in its memory.
template <class B, class T>
concept optimizing_backend_for =
    training_backend_for<B, T> &&
    requires(const B& backend, backend_pointer<B, T> y, backend_pointer<B, const T> x, std::size_t n,
             backend_pointer<B, double> scalar, backend_pointer<B, const double> norm,
             std::span<const buffer_view<backend_pointer<B, const T>>> inputs,
             std::span<const buffer_view<backend_pointer<B, T>>> outputs,
             std::span<const adamw_buffers<backend_pointer<B, T>, backend_pointer<B, const T>>> parameters) {
        backend.softmax_cross_entropy(x, x, n, n, y, 1.0, scalar);
        backend.binary_cross_entropy(x, x, n, y, 1.0, scalar);
        backend.squared_error(x, x, n, y, 1.0, scalar);
        backend.sum_of_squares(inputs, scalar);
        backend.clip_buffers(outputs, norm, 1.0);
        backend.scale_buffers(outputs, 1.0);
        backend.adamw_update(parameters, norm);
    };

}  // namespace dm2s2
