#pragma once
/// \file
/// `reference_backend`: every kernel as the plainest loop, accumulating in double (long double for
/// double). Slow by design; it is the yardstick the fast backends are tested against.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "dm2s2/backend/attention_kernels.hpp"
#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/backend/row_kernels.hpp"
#include "dm2s2/backend/training_kernels.hpp"

namespace dm2s2 {

/// Plain-loop backend used as the reference in tests.
struct reference_backend : portable_backward_kernels,
                           host_memory_transfers,
                           host_attention_operations<reference_backend>,
                           host_row_operations<reference_backend>,
                           host_training_operations<reference_backend> {
    static constexpr const char* name() noexcept { return "reference"; }

    /// One thread: tasks run in order.
    template <class F>
    void parallel_for(std::size_t count, F&& task) const
    {
        for (std::size_t i = 0; i < count; ++i) task(i);
    }

    template <scalar T>
    using accumulator = std::conditional_t<std::is_same_v<T, float>, double, long double>;

    template <scalar T>
    void gemm(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
              const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) const
    {
        for (std::size_t i = 0; i < m; ++i)
            for (std::size_t j = 0; j < n; ++j) {
                accumulator<T> sum = 0;
                for (std::size_t p = 0; p < k; ++p) {
                    const T av = ta == transpose::yes ? a[p * lda + i] : a[i * lda + p];
                    const T bv = tb == transpose::yes ? b[j * ldb + p] : b[p * ldb + j];
                    sum += static_cast<accumulator<T>>(av) * bv;
                }
                T& out = c[i * ldc + j];
                out = static_cast<T>(alpha * sum + (beta == T(0) ? accumulator<T>(0) : beta * accumulator<T>(out)));
            }
    }

    template <scalar T>
    void add_row_vector(T* x, std::size_t rows, std::size_t cols, std::size_t ldx, const T* v) const
    {
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t j = 0; j < cols; ++j) x[i * ldx + j] += v[j];
    }

    template <scalar T>
    void gelu(T* x, std::size_t n) const
    {
        for (std::size_t i = 0; i < n; ++i) {
            const accumulator<T> v = x[i];
            x[i] = static_cast<T>(0.5L * v * (1.0L + std::erf(v / std::sqrt(accumulator<T>(2)))));
        }
    }

    template <scalar T>
    void tanh(T* x, std::size_t n) const
    {
        for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<T>(std::tanh(static_cast<accumulator<T>>(x[i])));
    }

    template <scalar T>
    void masked_softmax(T* x, std::size_t n, const std::uint8_t* keep) const
    {
        auto kept = [&](std::size_t i) { return keep == nullptr || keep[i] != 0; };
        accumulator<T> max = -std::numeric_limits<accumulator<T>>::infinity();
        for (std::size_t i = 0; i < n; ++i)
            if (kept(i) && x[i] > max) max = x[i];
        if (max == -std::numeric_limits<accumulator<T>>::infinity()) {
            for (std::size_t i = 0; i < n; ++i) x[i] = T(0);
            return;
        }
        std::vector<accumulator<T>> e(n, 0);
        accumulator<T> sum = 0;
        for (std::size_t i = 0; i < n; ++i)
            if (kept(i)) sum += e[i] = std::exp(x[i] - max);
        for (std::size_t i = 0; i < n; ++i) x[i] = kept(i) ? static_cast<T>(e[i] / sum) : T(0);  // 0 even if sum is NaN
    }

    template <scalar T>
    void layer_norm(const T* x, const T* residual, T* y, std::size_t rows, std::size_t cols, const T* gamma, const T* beta,
                    T eps) const
    {
        std::vector<accumulator<T>> v(cols);
        for (std::size_t r = 0; r < rows; ++r) {
            accumulator<T> mean = 0, var = 0;
            for (std::size_t j = 0; j < cols; ++j) {
                v[j] = x[r * cols + j] + (residual ? accumulator<T>(residual[r * cols + j]) : 0);
                mean += v[j];
            }
            mean /= cols;
            for (std::size_t j = 0; j < cols; ++j) var += (v[j] - mean) * (v[j] - mean);
            var /= cols;
            const accumulator<T> inv = 1 / std::sqrt(var + eps);
            for (std::size_t j = 0; j < cols; ++j) y[r * cols + j] = static_cast<T>((v[j] - mean) * inv * gamma[j] + beta[j]);
        }
    }
};

static_assert(optimizing_backend_for<reference_backend, float> && optimizing_backend_for<reference_backend, double>);

}  // namespace dm2s2
