// The fast CPU kernels against the plain-loop reference backend beyond what test_backends.cpp checks
// on every backend: lengths that exercise the SIMD bodies and their tails, results that must not
// depend on where a value lies or on the thread count, and the softmax's exact zeros.

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "dm2s2/backend/cpu/cpu_backend.hpp"
#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/core/random.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::max_abs_diff;

namespace {

template <class T>
constexpr double tolerance = std::is_same_v<T, float> ? 2e-6 : 1e-14;

template <class T>
std::vector<T> random_values(std::size_t n, random_generator& rng, double scale = 1.0)
{
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(rng.normal(0.0, scale));
    return v;
}

const std::size_t lengths[] = {1, 3, 7, 8, 16, 17, 33, 100};

}  // namespace

TEST_CASE_TEMPLATE("element-wise kernels match the reference at every length", T, float, double)
{
    random_generator rng(2);
    const cpu_backend fast;
    const reference_backend slow;
    for (const std::size_t n : lengths) {
        CAPTURE(n);
        const auto x = random_values<T>(n, rng, 3.0);
        auto f = x, s = x;
        fast.gelu(f.data(), n);
        slow.gelu(s.data(), n);
        CHECK(max_abs_diff(f, s) <= tolerance<T> * 2);
        // Each value's GELU does not depend on where it lies (products apply it tile by tile): shifted
        // by 5, the values move between the vector body and the tail.
        std::vector<T> shifted(n + 5, T(0));
        std::copy(x.begin(), x.end(), shifted.begin() + 5);
        fast.gelu(shifted.data(), shifted.size());
        CHECK(std::memcmp(shifted.data() + 5, f.data(), n * sizeof(T)) == 0);
        f = x, s = x;
        fast.tanh(f.data(), n);
        slow.tanh(s.data(), n);
        CHECK(max_abs_diff(f, s) <= tolerance<T> * 2);
        f = x, s = x;
        fast.masked_softmax(f.data(), n, nullptr);
        slow.masked_softmax(s.data(), n, nullptr);
        CHECK(max_abs_diff(f, s) <= tolerance<T>);
        const auto bias = random_values<T>(n, rng);
        f = x, s = x;
        fast.add_row_vector(f.data(), 1, n, n, bias.data());
        slow.add_row_vector(s.data(), 1, n, n, bias.data());
        CHECK(max_abs_diff(f, s) == 0.0);
    }
}

TEST_CASE_TEMPLATE("layer_norm matches the reference, with and without residual, in place", T, float, double)
{
    random_generator rng(3);
    const cpu_backend fast;
    const reference_backend slow;
    for (const std::size_t cols : lengths) {
        CAPTURE(cols);
        const std::size_t rows = 3;
        const auto x = random_values<T>(rows * cols, rng, 2.0), r = random_values<T>(rows * cols, rng);
        const auto gamma = random_values<T>(cols, rng), beta = random_values<T>(cols, rng);
        std::vector<T> f(rows * cols), s(rows * cols);
        fast.layer_norm(x.data(), r.data(), f.data(), rows, cols, gamma.data(), beta.data(), T(1e-12));
        slow.layer_norm(x.data(), r.data(), s.data(), rows, cols, gamma.data(), beta.data(), T(1e-12));
        CHECK(max_abs_diff(f, s) <= tolerance<T> * 10);
        f = x;
        fast.layer_norm(f.data(), static_cast<const T*>(nullptr), f.data(), rows, cols, gamma.data(), beta.data(), T(1e-5));
        slow.layer_norm(x.data(), static_cast<const T*>(nullptr), s.data(), rows, cols, gamma.data(), beta.data(), T(1e-5));
        CHECK(max_abs_diff(f, s) <= tolerance<T> * 10);
    }
}

TEST_CASE_TEMPLATE("backward kernels cut among threads give the portable kernels' numbers", T, float, double)
{
    random_generator rng(5);
    const reference_backend portable;
    const std::array<cpu_backend, 2> backends{cpu_backend(), cpu_backend({.threads = 2})};
    const auto same = [](const std::vector<T>& a, const std::vector<T>& b) {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
    };
    for (const std::size_t n : {std::size_t{1}, std::size_t{17}, std::size_t{40000}, std::size_t{100001}}) {
        CAPTURE(n);
        const auto x = random_values<T>(n, rng, 3.0), dy = random_values<T>(n, rng);
        auto expected = dy;
        portable.gelu_backward(x.data(), expected.data(), n);
        for (const auto& backend : backends) {
            const std::size_t threads = backend.threads();
            CAPTURE(threads);
            auto got = dy;
            backend.gelu_backward(x.data(), got.data(), n);
            CHECK(same(got, expected));
        }
    }
    // Shapes whose rows, columns or both are cut among two threads, and ones too small to cut.
    for (const auto& [rows, cols] : {std::pair<std::size_t, std::size_t>{1, 1}, {3, 7}, {485, 768}, {40, 3072}, {2000, 2}}) {
        const std::size_t r = rows, c = cols;  // not structured bindings: CAPTURE takes them into a lambda
        CAPTURE(r);
        CAPTURE(c);
        const std::size_t ldx = c + 3;
        const auto x = random_values<T>(r * ldx, rng), start = random_values<T>(c, rng);
        // Column sums: the portable kernel's, and a plain loop's down each column in double.
        auto expected = start, plain = start;
        portable.add_column_sums(x.data(), r, c, ldx, expected.data());
        for (std::size_t j = 0; j < c; ++j) {
            double sum = 0;
            for (std::size_t i = 0; i < r; ++i) sum += x[i * ldx + j];
            plain[j] += static_cast<T>(sum);
        }
        CHECK(same(expected, plain));
        const auto v = random_values<T>(r * c, rng, 2.0), dy = random_values<T>(r * c, rng), gamma = random_values<T>(c, rng);
        std::vector<T> dv(r * c), dgamma = start, dbeta = random_values<T>(c, rng);
        const auto dbeta_start = dbeta;
        portable.layer_norm_backward(v.data(), dy.data(), dv.data(), r, c, gamma.data(), T(1e-12), dgamma.data(), dbeta.data());
        {
            auto in_place = dy, in_place_dgamma = start, in_place_dbeta = dbeta_start;
            portable.layer_norm_backward(v.data(), in_place.data(), in_place.data(), r, c, gamma.data(), T(1e-12),
                                         in_place_dgamma.data(), in_place_dbeta.data());
            CHECK(same(in_place, dv));
            CHECK(same(in_place_dgamma, dgamma));
        }
        for (const auto& backend : backends) {
            const std::size_t threads = backend.threads();
            CAPTURE(threads);
            auto got = start;
            backend.add_column_sums(x.data(), r, c, ldx, got.data());
            CHECK(same(got, expected));
            // dv written over dy, as a backward pass may do.
            auto dv_in_place = dy, got_dgamma = start, got_dbeta = dbeta_start;
            backend.layer_norm_backward(v.data(), dv_in_place.data(), dv_in_place.data(), r, c, gamma.data(), T(1e-12),
                                        got_dgamma.data(), got_dbeta.data());
            CHECK(same(dv_in_place, dv));
            CHECK(same(got_dgamma, dgamma));
            CHECK(same(got_dbeta, dbeta));
        }
    }
}

TEST_CASE_TEMPLATE("masked softmax: dropped entries get exactly zero, nothing kept gives zeros", T, float, double)
{
    const cpu_backend fast;
    std::vector<T> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    const std::vector<std::uint8_t> keep = {1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
    fast.masked_softmax(x.data(), x.size(), keep.data());
    const double z = std::exp(1.0 - 11) + std::exp(3.0 - 11) + 1.0;
    CHECK(x[0] == doctest::Approx(std::exp(1.0 - 11) / z));
    CHECK(x[10] == doctest::Approx(1.0 / z));
    for (std::size_t i = 1; i < 10; ++i)
        if (i != 2) CHECK(x[i] == T(0));
    std::vector<T> none(9, T(1));
    const std::vector<std::uint8_t> nothing(9, 0);
    fast.masked_softmax(none.data(), none.size(), nothing.data());
    for (auto v : none) CHECK(v == T(0));
}
