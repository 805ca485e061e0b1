// Every kernel of the device seam, written once and run on every backend of `DM2S2_BACKEND_CASES`:
// inputs are uploaded to the backend's memory, the kernel runs there, the result is downloaded and
// compared with the plain-loop reference run on the host.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backend_cases.hpp"
#include "dm2s2/core/random.hpp"

using namespace dm2s2;

namespace {

template <class T>
std::vector<T> random_vector(std::size_t n, random_generator& rng, double scale = 1.0)
{
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(rng.normal(0.0, scale));
    return v;
}

/// `values` copied into backend `b`'s memory.
template <class B, class T>
tensor<T, backend_space<B>> on_device(const B& b, const std::vector<T>& values)
{
    tensor<T> host({values.size()}, uninitialized);
    std::copy(values.begin(), values.end(), host.data());
    return b.upload(host);
}

/// The elements of a tensor in `b`'s memory, copied back to the host.
template <class B, class T>
std::vector<T> on_host(const B& b, const tensor<T, backend_space<B>>& device)
{
    const tensor<T> host = b.download(device);
    return {host.values().begin(), host.values().end()};
}

/// The largest |a − b| over two equally long vectors, with NaN counting as infinitely far.
template <class T>
double max_difference(const std::vector<T>& a, const std::vector<T>& b)
{
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
        worst = std::isnan(d) ? std::numeric_limits<double>::infinity() : std::max(worst, d);
    }
    return worst;
}

const std::size_t element_counts[] = {1, 7, 16, 33, 100};

}  // namespace

TEST_CASE_TEMPLATE("backend gemm matches the reference for every transpose, stride and beta", C, DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    const typename C::backend backend;
    const reference_backend reference;
    random_generator rng(11);
    for (const auto& dims : {std::array<std::size_t, 3>{1, 1, 1}, {3, 5, 7}, {17, 9, 33}})
        for (const auto ta : {transpose::no, transpose::yes})
            for (const auto tb : {transpose::no, transpose::yes})
                for (const T beta : {T(0), T(1), T(-0.5)}) {
                    const std::size_t m = dims[0], n = dims[1], k = dims[2];
                    CAPTURE(m); CAPTURE(n); CAPTURE(k); CAPTURE(beta);
                    const std::size_t lda = (ta == transpose::yes ? m : k) + 2, ldb = (tb == transpose::yes ? k : n) + 1, ldc = n + 3;
                    const auto a = random_vector<T>((ta == transpose::yes ? k : m) * lda, rng);
                    const auto b = random_vector<T>((tb == transpose::yes ? n : k) * ldb, rng);
                    auto c = random_vector<T>(m * ldc, rng), expected = c;
                    if (beta == T(0)) std::fill(c.begin(), c.end(), std::numeric_limits<T>::quiet_NaN());
                    reference.gemm(ta, tb, m, n, k, T(0.75), a.data(), lda, b.data(), ldb, beta, expected.data(), ldc);
                    const auto da = on_device(backend, a), db = on_device(backend, b);
                    auto dc = on_device(backend, c);
                    backend.gemm(ta, tb, m, n, k, T(0.75), da.data(), lda, db.data(), ldb, beta, dc.data(), ldc);
                    auto got = on_host(backend, dc);
                    for (std::size_t i = 0; i < m; ++i)  // the gaps between rows are not the product's
                        for (std::size_t j = n; j < ldc; ++j) got[i * ldc + j] = expected[i * ldc + j];
                    CHECK(max_difference(got, expected) <= C::tolerance * 10 * static_cast<double>(k));
                }
}

TEST_CASE_TEMPLATE("backend element-wise kernels match the reference at every length", C, DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    const typename C::backend backend;
    const reference_backend reference;
    random_generator rng(12);
    for (const std::size_t n : element_counts) {
        CAPTURE(n);
        const auto x = random_vector<T>(n, rng, 3.0), g = random_vector<T>(n, rng);
        SUBCASE("gelu and tanh, forward and backward")
        {
            auto expected = x;
            reference.gelu(expected.data(), n);
            auto dx = on_device(backend, x);
            backend.gelu(dx.data(), n);
            CHECK(max_difference(on_host(backend, dx), expected) <= C::tolerance * 2);

            expected = x;
            reference.tanh(expected.data(), n);
            dx = on_device(backend, x);
            backend.tanh(dx.data(), n);
            CHECK(max_difference(on_host(backend, dx), expected) <= C::tolerance * 2);

            auto grad = g;
            reference.gelu_backward(x.data(), grad.data(), n);
            const auto dxs = on_device(backend, x);
            auto dg = on_device(backend, g);
            backend.gelu_backward(dxs.data(), dg.data(), n);
            CHECK(max_difference(on_host(backend, dg), grad) <= C::tolerance * 4);

            grad = g;
            reference.tanh_backward(x.data(), grad.data(), n);
            dg = on_device(backend, g);
            backend.tanh_backward(dxs.data(), dg.data(), n);
            CHECK(max_difference(on_host(backend, dg), grad) <= C::tolerance * 20);
        }
        SUBCASE("masked softmax and its backward, with and without a key mask")
        {
            std::vector<std::uint8_t> keep(n);
            for (std::size_t i = 0; i < n; ++i) keep[i] = static_cast<std::uint8_t>(i % 3 != 1);
            for (const bool masked : {false, true}) {
                CAPTURE(masked);
                auto expected = x;
                reference.masked_softmax(expected.data(), n, masked ? keep.data() : nullptr);
                auto dx = on_device(backend, x);
                const auto dkeep = on_device(backend, keep);
                backend.masked_softmax(dx.data(), n, masked ? dkeep.data() : backend_pointer<typename C::backend, const std::uint8_t>{});
                const auto got = on_host(backend, dx);
                CHECK(max_difference(got, expected) <= C::tolerance * 2);
                if (masked)
                    for (std::size_t i = 0; i < n; ++i)
                        if (keep[i] == 0) CHECK(got[i] == T(0));
                auto grad = g;
                reference.masked_softmax_backward(expected.data(), grad.data(), n);
                const auto dp = on_device(backend, expected);
                auto dg = on_device(backend, g);
                backend.masked_softmax_backward(dp.data(), dg.data(), n);
                CHECK(max_difference(on_host(backend, dg), grad) <= C::tolerance * 4);
            }
        }
    }
}

TEST_CASE_TEMPLATE("backend row kernels match the reference: biases, layer norm, column sums", C, DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    const typename C::backend backend;
    const reference_backend reference;
    random_generator rng(13);
    for (const std::size_t cols : {std::size_t{1}, std::size_t{17}, std::size_t{64}}) {
        const std::size_t rows = 5;
        CAPTURE(cols);
        const auto x = random_vector<T>(rows * cols, rng, 2.0), residual = random_vector<T>(rows * cols, rng);
        const auto gamma = random_vector<T>(cols, rng), beta = random_vector<T>(cols, rng), dy = random_vector<T>(rows * cols, rng);
        const auto dx = on_device(backend, x), dres = on_device(backend, residual), dgamma_in = on_device(backend, gamma),
                   dbeta_in = on_device(backend, beta), ddy = on_device(backend, dy);

        auto expected = x;
        reference.add_row_vector(expected.data(), rows, cols, cols, gamma.data());
        auto y = on_device(backend, x);
        backend.add_row_vector(y.data(), rows, cols, cols, dgamma_in.data());
        CHECK(max_difference(on_host(backend, y), expected) <= C::tolerance * 4);

        for (const bool with_residual : {false, true}) {
            CAPTURE(with_residual);
            std::vector<T> normed(rows * cols);
            reference.layer_norm(x.data(), with_residual ? residual.data() : nullptr, normed.data(), rows, cols, gamma.data(),
                                 beta.data(), T(1e-5));
            tensor<T, backend_space<typename C::backend>> out({rows, cols}, uninitialized);
            backend.layer_norm(dx.data(), with_residual ? dres.data() : decltype(dres.data()){}, out.data(), rows, cols,
                               dgamma_in.data(), dbeta_in.data(), T(1e-5));
            CHECK(max_difference(on_host(backend, out), normed) <= C::tolerance * 20);
        }

        std::vector<T> dv(rows * cols), dgamma(cols, T(0.5)), dbeta(cols, T(-0.25));
        reference.layer_norm_backward(x.data(), dy.data(), dv.data(), rows, cols, gamma.data(), T(1e-5), dgamma.data(), dbeta.data());
        tensor<T, backend_space<typename C::backend>> d_dv({rows, cols}, uninitialized);
        auto d_dgamma = on_device(backend, std::vector<T>(cols, T(0.5))), d_dbeta = on_device(backend, std::vector<T>(cols, T(-0.25)));
        backend.layer_norm_backward(dx.data(), ddy.data(), d_dv.data(), rows, cols, dgamma_in.data(), T(1e-5), d_dgamma.data(),
                                    d_dbeta.data());
        CHECK(max_difference(on_host(backend, d_dv), dv) <= C::tolerance * 50);
        CHECK(max_difference(on_host(backend, d_dgamma), dgamma) <= C::tolerance * 50);
        CHECK(max_difference(on_host(backend, d_dbeta), dbeta) <= C::tolerance * 50);

        std::vector<T> sums(cols, T(1));
        reference.add_column_sums(dy.data(), rows, cols, cols, sums.data());
        auto d_sums = on_device(backend, std::vector<T>(cols, T(1)));
        backend.add_column_sums(ddy.data(), rows, cols, cols, d_sums.data());
        CHECK(max_difference(on_host(backend, d_sums), sums) <= C::tolerance * 10);
    }
}
