#pragma once
/// \file
/// `cpu_backend`: matrix products through Eigen, element-wise kernels through xsimd (scalar loops when
/// xsimd is disabled). Each kernel runs its SIMD body over whole registers and finishes the tail with
/// the scalar loop, so every length is handled.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>

#include <Eigen/Core>

#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/core/simd.hpp"

namespace dm2s2 {

/// CPU backend: Eigen for gemm, xsimd for the element-wise kernels.
struct cpu_backend : portable_backward_kernels {
    static constexpr const char* name() noexcept { return "cpu"; }

    template <scalar T>
    void gemm(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
              std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) const
    {
        using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        using const_map = Eigen::Map<const matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
        using map = Eigen::Map<matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
        const auto rows = [](std::size_t r) { return static_cast<Eigen::Index>(r); };
        const_map A(a, rows(ta == transpose::yes ? k : m), rows(ta == transpose::yes ? m : k), Eigen::OuterStride<>(rows(lda)));
        const_map B(b, rows(tb == transpose::yes ? n : k), rows(tb == transpose::yes ? k : n), Eigen::OuterStride<>(rows(ldb)));
        map C(c, rows(m), rows(n), Eigen::OuterStride<>(rows(ldc)));
        if (m == 0 || n == 0) return;
        if (k == 0) {
            if (beta == T(0)) C.setZero(); else C *= beta;
            return;
        }
        const auto product = [&](const auto& opa, const auto& opb) {
            if (beta == T(0)) {
                C.noalias() = alpha * opa * opb;
            } else {
                if (beta != T(1)) C *= beta;
                C.noalias() += alpha * opa * opb;
            }
        };
        if (ta == transpose::no && tb == transpose::no) product(A, B);
        else if (ta == transpose::no) product(A, B.transpose());
        else if (tb == transpose::no) product(A.transpose(), B);
        else product(A.transpose(), B.transpose());
    }

    template <scalar T>
    void add_row_vector(T* x, std::size_t rows, std::size_t cols, std::size_t ldx, const T* v) const
    {
        for (std::size_t r = 0; r < rows; ++r) {
            T* row = x + r * ldx;
            std::size_t j = 0;
#if DM2S2_HAS_XSIMD
            using batch = simd::batch<T>;
            for (; j + batch::size <= cols; j += batch::size)
                (batch::load_unaligned(row + j) + batch::load_unaligned(v + j)).store_unaligned(row + j);
#endif
            for (; j < cols; ++j) row[j] += v[j];
        }
    }

    template <scalar T>
    void gelu(T* x, std::size_t n) const
    {
        const T inv_sqrt2 = static_cast<T>(1.0 / std::numbers::sqrt2);
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        for (; i + batch::size <= n; i += batch::size) {
            const batch v = batch::load_unaligned(x + i);
            (T(0.5) * v * (T(1) + xsimd::erf(v * inv_sqrt2))).store_unaligned(x + i);
        }
#endif
        for (; i < n; ++i) x[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * inv_sqrt2));
    }

    template <scalar T>
    void tanh(T* x, std::size_t n) const
    {
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        for (; i + batch::size <= n; i += batch::size) xsimd::tanh(batch::load_unaligned(x + i)).store_unaligned(x + i);
#endif
        for (; i < n; ++i) x[i] = std::tanh(x[i]);
    }

    template <scalar T>
    void masked_softmax(T* x, std::size_t n, const std::uint8_t* keep) const
    {
        constexpr T minus_inf = -std::numeric_limits<T>::infinity();
        if (keep != nullptr)
            for (std::size_t i = 0; i < n; ++i)
                if (keep[i] == 0) x[i] = minus_inf;
        T max = max_of(x, n);
        if (max == minus_inf) {  // nothing kept: no weight anywhere, and no NaN from (-inf) - (-inf)
            for (std::size_t i = 0; i < n; ++i) x[i] = T(0);
            return;
        }
        T sum = T(0);
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        batch acc(T(0));
        for (; i + batch::size <= n; i += batch::size) {
            const batch e = xsimd::exp(batch::load_unaligned(x + i) - max);
            e.store_unaligned(x + i);
            acc += e;
        }
        sum = simd::reduce_sum(acc);
#endif
        for (; i < n; ++i) sum += x[i] = std::exp(x[i] - max);
        scale(x, n, T(1) / sum);
    }

    template <scalar T>
    void layer_norm(const T* x, const T* residual, T* y, std::size_t rows, std::size_t cols, const T* gamma,
                    const T* beta, T eps) const
    {
        for (std::size_t r = 0; r < rows; ++r) {
            const T* xr = x + r * cols;
            T* yr = y + r * cols;
            if (residual != nullptr) {
                add(xr, residual + r * cols, yr, cols);
            } else if (yr != xr) {
                for (std::size_t j = 0; j < cols; ++j) yr[j] = xr[j];
            }
            const T mean = sum_of(yr, cols) / static_cast<T>(cols);
            const T var = centered_square_sum(yr, cols, mean) / static_cast<T>(cols);
            const T inv = T(1) / std::sqrt(var + eps);
            std::size_t j = 0;
#if DM2S2_HAS_XSIMD
            using batch = simd::batch<T>;
            for (; j + batch::size <= cols; j += batch::size) {
                const batch v = (batch::load_unaligned(yr + j) - mean) * inv;
                xsimd::fma(v, batch::load_unaligned(gamma + j), batch::load_unaligned(beta + j)).store_unaligned(yr + j);
            }
#endif
            for (; j < cols; ++j) yr[j] = (yr[j] - mean) * inv * gamma[j] + beta[j];
        }
    }

private:
    template <scalar T>
    static void add(const T* a, const T* b, T* out, std::size_t n)
    {
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        for (; i + batch::size <= n; i += batch::size)
            (batch::load_unaligned(a + i) + batch::load_unaligned(b + i)).store_unaligned(out + i);
#endif
        for (; i < n; ++i) out[i] = a[i] + b[i];
    }

    template <scalar T>
    static void scale(T* x, std::size_t n, T factor)
    {
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        for (; i + batch::size <= n; i += batch::size) (batch::load_unaligned(x + i) * factor).store_unaligned(x + i);
#endif
        for (; i < n; ++i) x[i] *= factor;
    }

    template <scalar T>
    static T sum_of(const T* x, std::size_t n)
    {
        T sum = T(0);
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        batch acc(T(0));
        for (; i + batch::size <= n; i += batch::size) acc += batch::load_unaligned(x + i);
        sum = simd::reduce_sum(acc);
#endif
        for (; i < n; ++i) sum += x[i];
        return sum;
    }

    template <scalar T>
    static T centered_square_sum(const T* x, std::size_t n, T mean)
    {
        T sum = T(0);
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        batch acc(T(0));
        for (; i + batch::size <= n; i += batch::size) {
            const batch d = batch::load_unaligned(x + i) - mean;
            acc = xsimd::fma(d, d, acc);
        }
        sum = simd::reduce_sum(acc);
#endif
        for (; i < n; ++i) sum += (x[i] - mean) * (x[i] - mean);
        return sum;
    }

    template <scalar T>
    static T max_of(const T* x, std::size_t n)
    {
        T max = -std::numeric_limits<T>::infinity();
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        if (n >= batch::size) {
            batch acc(max);
            for (; i + batch::size <= n; i += batch::size) acc = xsimd::max(acc, batch::load_unaligned(x + i));
            max = simd::reduce_max(acc);
        }
#endif
        for (; i < n; ++i) max = x[i] > max ? x[i] : max;
        return max;
    }
};

static_assert(training_backend_for<cpu_backend, float> && training_backend_for<cpu_backend, double>);

}  // namespace dm2s2
