// Every kernel of the device seam, written once and run on every backend of `DM2S2_BACKEND_CASES`:
// inputs are uploaded to the backend's memory, the kernel runs there, the result is downloaded and
// compared with the plain-loop reference run on the host.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
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
    const auto backend = C::make_backend();
    const reference_backend reference;
    random_generator rng(11);
    for (const auto& dims : {std::array<std::size_t, 3>{1, 1, 1}, {3, 5, 7}, {17, 9, 33}, {64, 48, 16}})
        for (const auto ta : {transpose::no, transpose::yes})
            for (const auto tb : {transpose::no, transpose::yes})
                for (const T beta : {T(0), T(1), T(-0.5)}) {
                    const std::size_t m = dims[0], n = dims[1], k = dims[2];
                    CAPTURE(m);
                    CAPTURE(n);
                    CAPTURE(k);
                    CAPTURE(beta);
                    const std::size_t lda = (ta == transpose::yes ? m : k) + 2, ldb = (tb == transpose::yes ? k : n) + 1,
                                      ldc = n + 3;
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
    const auto backend = C::make_backend();
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
                backend.masked_softmax(dx.data(), n,
                                       masked ? dkeep.data() : backend_pointer<typename C::backend, const std::uint8_t>{});
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

TEST_CASE_TEMPLATE("a NaN in a softmax row makes every kept weight NaN, a masked NaN is never read, masked weights stay 0", C,
                   DM2S2_BACKEND_CASES)
{
    // The vector maximum's handling of NaN differs between xsimd versions (it changed in 14.0): the
    // result must not depend on it, nor on the lane the NaN falls in.
    using T = typename C::scalar;
    using B = typename C::backend;
    const B backend = C::make_backend();
    random_generator rng(19);
    for (const std::size_t n : {std::size_t{5}, std::size_t{37}}) {
        std::vector<std::uint8_t> keep(n);
        for (std::size_t i = 0; i < n; ++i) keep[i] = static_cast<std::uint8_t>(i % 4 != 2);
        for (const std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
            CAPTURE(n);
            CAPTURE(at);
            auto x = random_vector<T>(n, rng, 3.0);
            x[at] = std::numeric_limits<T>::quiet_NaN();
            auto b_x = on_device(backend, x);
            const auto b_keep = on_device(backend, keep);
            backend.masked_softmax(b_x.data(), n, b_keep.data());
            const auto got = on_host(backend, b_x);
            for (std::size_t i = 0; i < n; ++i) {
                if (keep[i] == 0) CHECK(got[i] == T(0));            // masked weights are exactly 0, whatever the row holds
                else if (keep[at] != 0) CHECK(std::isnan(got[i]));  // a kept NaN is never hidden
                else CHECK(std::isfinite(got[i]));                  // a masked NaN is never read
            }
        }
    }
}

TEST_CASE_TEMPLATE("backend row kernels match the reference: biases, layer norm, column sums", C, DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    const auto backend = C::make_backend();
    const reference_backend reference;
    random_generator rng(13);
    // Rows past one and several chunks of 32, the GPU's column sums' blocks, with a partial last one.
    for (const std::size_t rows : {std::size_t{5}, std::size_t{33}, std::size_t{100}})
        for (const std::size_t cols : {std::size_t{1}, std::size_t{17}, std::size_t{64}}) {
            CAPTURE(rows);
            CAPTURE(cols);
            const auto x = random_vector<T>(rows * cols, rng, 2.0), residual = random_vector<T>(rows * cols, rng);
            const auto gamma = random_vector<T>(cols, rng), beta = random_vector<T>(cols, rng),
                       dy = random_vector<T>(rows * cols, rng);
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
            reference.layer_norm_backward(x.data(), dy.data(), dv.data(), rows, cols, gamma.data(), T(1e-5), dgamma.data(),
                                          dbeta.data());
            tensor<T, backend_space<typename C::backend>> d_dv({rows, cols}, uninitialized);
            auto d_dgamma = on_device(backend, std::vector<T>(cols, T(0.5))),
                 d_dbeta = on_device(backend, std::vector<T>(cols, T(-0.25)));
            backend.layer_norm_backward(dx.data(), ddy.data(), d_dv.data(), rows, cols, dgamma_in.data(), T(1e-5),
                                        d_dgamma.data(), d_dbeta.data());
            CHECK(max_difference(on_host(backend, d_dv), dv) <= C::tolerance * 50);
            CHECK(max_difference(on_host(backend, d_dgamma), dgamma) <= C::tolerance * 50);
            CHECK(max_difference(on_host(backend, d_dbeta), dbeta) <= C::tolerance * 50);

            std::vector<T> sums(cols, T(1));
            reference.add_column_sums(dy.data(), rows, cols, cols, sums.data());
            auto d_sums = on_device(backend, std::vector<T>(cols, T(1)));
            backend.add_column_sums(ddy.data(), rows, cols, cols, d_sums.data());
            CHECK(max_difference(on_host(backend, d_sums), sums) <= C::tolerance * 10);
            // The first cols − 1 columns of the same rows, read with the full row stride.
            if (cols > 1) {
                std::vector<T> narrow(cols - 1, T(1));
                reference.add_column_sums(dy.data(), rows, cols - 1, cols, narrow.data());
                auto d_narrow = on_device(backend, std::vector<T>(cols - 1, T(1)));
                backend.add_column_sums(ddy.data(), rows, cols - 1, cols, d_narrow.data());
                CHECK(max_difference(on_host(backend, d_narrow), narrow) <= C::tolerance * 10);
            }
        }
}

TEST_CASE_TEMPLATE("backend batched attention matches the reference, forward and backward", C, DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    using B = typename C::backend;
    const B backend = C::make_backend();
    const reference_backend reference;
    random_generator rng(14);
    const std::size_t heads = 2, head_dim = 3, width = heads * head_dim;
    // Ragged (padding-free) sequences of 3, 1 and 5 rows, and a padded batch of 2 × 4 whose second
    // sequence has every key masked (its context must be zero, never NaN).
    const batch_layout ragged = batch_layout::from_lengths({3, 1, 5}), padded{.batch = 2, .length = 4};
    for (const bool use_padded : {false, true})
        for (const bool with_dropout : {false, true}) {
            CAPTURE(use_padded);
            CAPTURE(with_dropout);
            const batch_layout& layout = use_padded ? padded : ragged;
            const attention_shape shape{layout, heads, head_dim};
            const std::size_t rows = layout.rows(), maps = shape.map_elements();
            const auto q = random_vector<T>(rows * width, rng), k = random_vector<T>(rows * width, rng),
                       v = random_vector<T>(rows * width, rng), d_context = random_vector<T>(rows * width, rng);
            std::vector<std::uint8_t> keep(use_padded ? rows : 0);
            for (std::size_t r = 0; r < keep.size(); ++r) keep[r] = static_cast<std::uint8_t>(r < 3);
            const dropout_draw drop = with_dropout ? dropout_draw{0.3, 0x5eed} : dropout_draw{};
            const T scale = T(1) / std::sqrt(T(head_dim));
            const std::uint8_t* host_keep = use_padded ? keep.data() : nullptr;

            std::vector<T> probabilities(maps), context(rows * width), dq(rows * width), dk(rows * width), dv(rows * width);
            reference.attention_forward(shape, scale, q.data(), k.data(), v.data(), host_keep, probabilities.data(), drop,
                                        context.data());
            reference.attention_backward(shape, scale, q.data(), k.data(), v.data(), probabilities.data(), drop, d_context.data(),
                                         dq.data(), dk.data(), dv.data());

            const auto bq = on_device(backend, q), bk = on_device(backend, k), bv = on_device(backend, v),
                       bd_context = on_device(backend, d_context);
            const auto bkeep = on_device(backend, keep);
            tensor<T, backend_space<B>> bprob({maps}, uninitialized), bcontext({rows, width}, uninitialized),
                bdq({rows, width}, uninitialized), bdk({rows, width}, uninitialized), bdv({rows, width}, uninitialized);
            const backend_pointer<B, const std::uint8_t> no_keep{};
            backend.attention_forward(shape, scale, bq.data(), bk.data(), bv.data(), use_padded ? bkeep.data() : no_keep,
                                      bprob.data(), drop, bcontext.data());
            backend.attention_backward(shape, scale, bq.data(), bk.data(), bv.data(), std::as_const(bprob).data(), drop,
                                       bd_context.data(), bdq.data(), bdk.data(), bdv.data());
            const auto got_context = on_host(backend, bcontext);
            CHECK(max_difference(on_host(backend, bprob), probabilities) <= C::tolerance * 10);
            CHECK(max_difference(got_context, context) <= C::tolerance * 20);
            CHECK(max_difference(on_host(backend, bdq), dq) <= C::tolerance * 50);
            CHECK(max_difference(on_host(backend, bdk), dk) <= C::tolerance * 50);
            CHECK(max_difference(on_host(backend, bdv), dv) <= C::tolerance * 50);
            if (use_padded)  // the fully masked sequence: rows 4..7 attend to nothing
                for (std::size_t i = 4 * width; i < 8 * width; ++i) CHECK(got_context[i] == T(0));
        }
}

TEST_CASE_TEMPLATE("backend row operations match the reference: copies, sums and scatters through index arrays", C,
                   DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    using B = typename C::backend;
    const B backend = C::make_backend();
    const reference_backend reference;
    random_generator rng(15);
    const std::size_t width = 5, table_rows = 4, count = 6;
    const auto table = random_vector<T>(table_rows * width, rng), rows = random_vector<T>(count * width, rng);
    const auto values = random_vector<T>(count, rng), scale = random_vector<T>(width, rng), shift = random_vector<T>(width, rng);
    // Indices that repeat a row (its sums then follow the index order) and leave one out.
    const std::vector<std::int64_t> ids{2, 0, 2, 3, 0, 2};
    const std::vector<std::size_t> slots{5, 3, 1, 0, 4, 2};
    const auto b_table = on_device(backend, table), b_rows = on_device(backend, rows), b_values = on_device(backend, values),
               b_scale = on_device(backend, scale), b_shift = on_device(backend, shift);
    const auto b_ids = on_device(backend, ids);
    const auto b_slots = on_device(backend, slots);
    const backend_pointer<B, const std::size_t> identity{};
    const std::size_t* host_identity = nullptr;

    SUBCASE("copy, fill, add, scale rows, dropout")
    {
        std::vector<T> sum(count * width);
        reference.add(rows.data(), rows.data(), sum.data(), sum.size());
        tensor<T, backend_space<B>> b_sum({count * width}, uninitialized), b_copy({count * width}, uninitialized);
        backend.add(b_rows.data(), b_rows.data(), b_sum.data(), count * width);
        backend.copy(b_rows.data(), count * width, b_copy.data());
        std::vector<T> scaled = rows, filled(7, T(2.5));
        reference.scale_rows(scaled.data(), values.data(), count, width);
        auto b_scaled = on_device(backend, rows);
        tensor<T, backend_space<B>> b_filled({7}, uninitialized);
        backend.scale_rows(b_scaled.data(), b_values.data(), count, width);
        backend.fill(b_filled.data(), 7, T(2.5));
        CHECK(max_difference(on_host(backend, b_scaled), scaled) == 0.0);
        CHECK(max_difference(on_host(backend, b_filled), filled) == 0.0);
        // Dropout: the same draw and offset give the same factors on every backend, and applying it
        // to a gradient regenerates them.
        std::vector<T> dropped = rows;
        const dropout_draw draw{0.4, 77};
        reference.dropout(dropped.data(), dropped.size(), draw, 5);
        auto b_dropped = on_device(backend, rows);
        backend.dropout(b_dropped.data(), count * width, draw, 5);
        CHECK(max_difference(on_host(backend, b_dropped), dropped) == 0.0);
        std::size_t zeros = 0;
        for (std::size_t i = 0; i < rows.size(); ++i) {
            CHECK((dropped[i] == T(0) || dropped[i] == static_cast<T>(rows[i] * static_cast<T>(1 / 0.6))));
            zeros += dropped[i] == T(0);
        }
        CHECK(zeros > 0);
        CHECK(zeros < rows.size());
        CHECK(max_difference(on_host(backend, b_sum), sum) == 0.0);
        CHECK(max_difference(on_host(backend, b_copy), rows) == 0.0);
    }
    SUBCASE("gathers and scatters")
    {
        std::vector<T> gathered(count * width, T(0)), scattered = table, placed(count * width, T(0));
        reference.copy_rows(table.data(), ids.data(), gathered.data(), slots.data(), count, width);
        reference.add_rows(rows.data(), slots.data(), scattered.data(), ids.data(), count, width);
        reference.copy_rows(rows.data(), host_identity, placed.data(), slots.data(), count, width);
        auto b_gathered = on_device(backend, std::vector<T>(count * width, T(0))), b_scattered = on_device(backend, table),
             b_placed = on_device(backend, std::vector<T>(count * width, T(0)));
        backend.copy_rows(b_table.data(), b_ids.data(), b_gathered.data(), b_slots.data(), count, width);
        backend.add_rows(b_rows.data(), b_slots.data(), b_scattered.data(), b_ids.data(), count, width);
        backend.copy_rows(b_rows.data(), identity, b_placed.data(), b_slots.data(), count, width);
        CHECK(max_difference(on_host(backend, b_gathered), gathered) == 0.0);
        CHECK(max_difference(on_host(backend, b_scattered), scattered) <= C::tolerance);
        CHECK(max_difference(on_host(backend, b_placed), placed) == 0.0);
    }
    SUBCASE("embedding sums and numeric elements, forward and backward")
    {
        const std::vector<std::int64_t> types{0, 1, 1, 0, 1, 0}, positions{0, 1, 2, 2, 1, 0};  // positions: rows 1..3
        std::vector<T> summed = rows;
        reference.add_type_and_position_rows(summed.data(), count, width, table.data(), types.data(), table.data() + width,
                                             positions.data());
        auto b_summed = on_device(backend, rows);
        const auto b_types = on_device(backend, types), b_positions = on_device(backend, positions);
        backend.add_type_and_position_rows(b_summed.data(), count, width, b_table.data(), b_types.data(), b_table.data() + width,
                                           b_positions.data());
        CHECK(max_difference(on_host(backend, b_summed), summed) <= C::tolerance);

        std::vector<T> numeric(count * width, T(0)), d_scale(width, T(0.5)), d_shift(width, T(-1));
        reference.scale_shift_rows(values.data(), scale.data(), shift.data(), numeric.data(), slots.data(), count, width);
        reference.scale_shift_rows_backward(values.data(), rows.data(), slots.data(), count, width, d_scale.data(),
                                            d_shift.data());
        auto b_numeric = on_device(backend, std::vector<T>(count * width, T(0)));
        auto b_d_scale = on_device(backend, std::vector<T>(width, T(0.5))),
             b_d_shift = on_device(backend, std::vector<T>(width, T(-1)));
        backend.scale_shift_rows(b_values.data(), b_scale.data(), b_shift.data(), b_numeric.data(), b_slots.data(), count, width);
        backend.scale_shift_rows_backward(b_values.data(), b_rows.data(), b_slots.data(), count, width, b_d_scale.data(),
                                          b_d_shift.data());
        CHECK(max_difference(on_host(backend, b_numeric), numeric) <= C::tolerance * 4);
        CHECK(max_difference(on_host(backend, b_d_scale), d_scale) <= C::tolerance * 10);
        CHECK(max_difference(on_host(backend, b_d_shift), d_shift) <= C::tolerance * 10);
    }
}

TEST_CASE_TEMPLATE("backend segment pooling matches the reference: MRA weights and sums, max-pool with argmax", C,
                   DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    using B = typename C::backend;
    const B backend = C::make_backend();
    const reference_backend reference;
    random_generator rng(16);
    const std::size_t width = 7, rows = 9;
    const std::vector<row_group> groups{{0, 3}, {3, 1}, {4, 5}};
    const auto x = random_vector<T>(rows * width, rng), scores = random_vector<T>(rows, rng),
               d_pooled = random_vector<T>(groups.size() * width, rng);
    const auto b_x = on_device(backend, x), b_d_pooled = on_device(backend, d_pooled);
    const auto b_groups = on_device(backend, groups);
    for (const T residual : {T(0), T(0.7)}) {
        CAPTURE(residual);
        const std::vector<T> residual_value{residual};
        const auto b_residual = on_device(backend, residual_value);
        std::vector<T> weights = scores, pooled(groups.size() * width), d_rows(rows * width, T(0.25)), d_scores(rows);
        T d_residual = T(0.5);
        reference.segment_attention_pool(x.data(), width, groups.data(), groups.size(), weights.data(), residual_value.data(),
                                         pooled.data());
        reference.segment_attention_pool_backward(x.data(), width, groups.data(), groups.size(), weights.data(),
                                                  residual_value.data(), d_pooled.data(), d_rows.data(), d_scores.data(),
                                                  &d_residual);
        auto b_weights = on_device(backend, scores), b_d_rows = on_device(backend, std::vector<T>(rows * width, T(0.25))),
             b_d_residual = on_device(backend, std::vector<T>{T(0.5)});
        tensor<T, backend_space<B>> b_pooled({groups.size(), width}, uninitialized), b_d_scores({rows}, uninitialized);
        backend.segment_attention_pool(b_x.data(), width, b_groups.data(), groups.size(), b_weights.data(), b_residual.data(),
                                       b_pooled.data());
        backend.segment_attention_pool_backward(b_x.data(), width, b_groups.data(), groups.size(),
                                                std::as_const(b_weights).data(), b_residual.data(), b_d_pooled.data(),
                                                b_d_rows.data(), b_d_scores.data(), b_d_residual.data());
        CHECK(max_difference(on_host(backend, b_weights), weights) <= C::tolerance * 4);
        CHECK(max_difference(on_host(backend, b_pooled), pooled) <= C::tolerance * 20);
        CHECK(max_difference(on_host(backend, b_d_rows), d_rows) <= C::tolerance * 20);
        CHECK(max_difference(on_host(backend, b_d_scores), d_scores) <= C::tolerance * 50);
        CHECK(max_difference(on_host(backend, b_d_residual), std::vector<T>{d_residual}) <= C::tolerance * 50);
    }
    std::vector<T> maxima(groups.size() * width), dx(rows * width);
    std::vector<std::uint32_t> argmax(groups.size() * width);
    reference.max_pool(x.data(), width, groups.data(), groups.size(), maxima.data(), argmax.data());
    reference.max_pool_backward(d_pooled.data(), width, groups.size(), argmax.data(), rows, dx.data());
    tensor<T, backend_space<B>> b_maxima({groups.size(), width}, uninitialized), b_dx({rows, width}, uninitialized);
    tensor<std::uint32_t, backend_space<B>> b_argmax({groups.size() * width}, uninitialized);
    backend.max_pool(b_x.data(), width, b_groups.data(), groups.size(), b_maxima.data(), b_argmax.data());
    backend.max_pool_backward(b_d_pooled.data(), width, groups.size(), std::as_const(b_argmax).data(), rows, b_dx.data());
    CHECK(max_difference(on_host(backend, b_maxima), maxima) == 0.0);
    CHECK(on_host(backend, b_argmax) == argmax);
    CHECK(max_difference(on_host(backend, b_dx), dx) == 0.0);
    for (std::size_t g = 0; g < groups.size(); ++g)  // every maximum is a value of its group
        for (std::size_t j = 0; j < width; ++j)
            CHECK((argmax[g * width + j] >= groups[g].begin && argmax[g * width + j] < groups[g].begin + groups[g].length));
}

TEST_CASE_TEMPLATE("backend training operations match the reference: losses, gradient norm, scaling, AdamW", C,
                   DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    using B = typename C::backend;
    const B backend = C::make_backend();
    const reference_backend reference;
    random_generator rng(17);
    const std::size_t batch = 4, outputs = 3, n = batch * outputs;
    const auto logits = random_vector<T>(n, rng, 2.0);
    std::vector<T> classes{2, 0, 1, 2}, bits(n), numbers = random_vector<T>(n, rng);
    for (auto& b : bits) b = rng.uniform() < 0.5 ? T(0) : T(1);
    const auto b_logits = on_device(backend, logits), b_classes = on_device(backend, classes), b_bits = on_device(backend, bits),
               b_numbers = on_device(backend, numbers);
    std::vector<T> grad(n);
    tensor<T, backend_space<B>> b_grad({n}, uninitialized);
    const double tolerance = C::tolerance;

    // Each loss adds weight × its value to a double in the backend's memory, which starts at 0.5.
    const auto loss_of = [&](auto&& run_backend, auto&& run_reference) {
        auto b_loss = on_device(backend, std::vector<double>{0.5});
        double expected = 0.5;
        run_backend(b_loss.data());
        run_reference(&expected);
        CHECK(std::abs(on_host(backend, b_loss)[0] - expected) <= tolerance);
        CHECK(expected != 0.5);
        CHECK(max_difference(on_host(backend, b_grad), grad) <= tolerance);
    };
    loss_of(
        [&](auto loss) {
            backend.softmax_cross_entropy(b_logits.data(), b_classes.data(), batch, outputs, b_grad.data(), 0.75, loss);
        },
        [&](double* loss) {
            reference.softmax_cross_entropy(logits.data(), classes.data(), batch, outputs, grad.data(), 0.75, loss);
        });
    loss_of([&](auto loss) { backend.binary_cross_entropy(b_logits.data(), b_bits.data(), n, b_grad.data(), 0.75, loss); },
            [&](double* loss) { reference.binary_cross_entropy(logits.data(), bits.data(), n, grad.data(), 0.75, loss); });
    loss_of([&](auto loss) { backend.squared_error(b_logits.data(), b_numbers.data(), n, b_grad.data(), 0.75, loss); },
            [&](double* loss) { reference.squared_error(logits.data(), numbers.data(), n, grad.data(), 0.75, loss); });

    // Three buffers, the second longer than one chunk of work; then a non-finite value in the third.
    const std::vector<std::size_t> sizes{5, parameter_chunk + 3, 9};
    std::vector<std::vector<T>> host;
    std::vector<tensor<T, backend_space<B>>> device;
    for (const auto size : sizes) {
        host.push_back(random_vector<T>(size, rng));
        device.push_back(on_device(backend, host.back()));
    }
    std::vector<buffer_view<const T*>> host_views;
    std::vector<buffer_view<backend_pointer<B, const T>>> device_views;
    std::vector<buffer_view<backend_pointer<B, T>>> device_outputs;
    for (std::size_t t = 0; t < sizes.size(); ++t) {
        host_views.push_back({host[t].data(), sizes[t]});
        device_views.push_back({std::as_const(device[t]).data(), sizes[t]});
        device_outputs.push_back({device[t].data(), sizes[t]});
    }
    double expected[gradient_norm::values];
    reference.sum_of_squares(std::span<const buffer_view<const T*>>(host_views), expected);
    tensor<double, backend_space<B>> b_norm({gradient_norm::values}, uninitialized);
    backend.sum_of_squares(std::span<const buffer_view<backend_pointer<B, const T>>>(device_views), b_norm.data());
    const auto got = on_host(backend, b_norm);
    CHECK(gradient_norm::finite(expected));
    CHECK(gradient_norm::finite(got.data()));
    CHECK(std::abs(got[0] - expected[0]) <= 1e-12 * expected[0]);

    backend.scale_buffers(std::span<const buffer_view<backend_pointer<B, T>>>(device_outputs), 0.25);
    for (std::size_t t = 0; t < sizes.size(); ++t) {
        auto scaled = host[t];
        for (auto& v : scaled) v = static_cast<T>(v * 0.25);
        CHECK(max_difference(on_host(backend, device[t]), scaled) == 0.0);
        host[t] = scaled;
    }

    // Clipping reads the norm where it lies: a bound below the norm scales, one above leaves the values.
    for (const double bound : {1e6, 0.5}) {
        CAPTURE(bound);
        const double norm = std::sqrt(expected[0]);
        const double factor = std::min(1.0, bound / (norm + 1e-6));
        backend.clip_buffers(std::span<const buffer_view<backend_pointer<B, T>>>(device_outputs),
                             backend_pointer<B, const double>(b_norm.data()), bound);
        for (std::size_t t = 0; t < sizes.size(); ++t) {
            auto clipped = host[t];
            if (factor < 1.0)
                for (auto& v : clipped) v = static_cast<T>(v * factor);
            CHECK(max_difference(on_host(backend, device[t]), clipped) == 0.0);
            host[t] = clipped;
        }
    }
    for (std::size_t t = 0; t < sizes.size(); ++t) host_views[t] = {host[t].data(), sizes[t]};

    // AdamW on the three buffers as parameters, with the first one's gradient as every gradient's start.
    std::vector<std::vector<T>> p = host, m(sizes.size()), v(sizes.size()), g(sizes.size());
    std::vector<tensor<T, backend_space<B>>> bp, bm, bv, bg;
    std::vector<adamw_buffers<T*, const T*>> host_updates;
    std::vector<adamw_buffers<backend_pointer<B, T>, backend_pointer<B, const T>>> device_updates;
    for (std::size_t t = 0; t < sizes.size(); ++t) {
        m[t] = random_vector<T>(sizes[t], rng, 0.1);
        v[t] = random_vector<T>(sizes[t], rng, 0.1);
        for (auto& x : v[t]) x = x * x;
        g[t] = random_vector<T>(sizes[t], rng);
        bp.push_back(on_device(backend, p[t]));
        bm.push_back(on_device(backend, m[t]));
        bv.push_back(on_device(backend, v[t]));
        bg.push_back(on_device(backend, g[t]));
    }
    for (std::size_t t = 0; t < sizes.size(); ++t) {
        const adamw_coefficients c{.keep = 1 - 1e-3 * (t == 1 ? 0.0 : 0.01),
                                   .beta1 = 0.9,
                                   .beta2 = 0.999,
                                   .step_size = 1e-3,
                                   .sqrt_correction2 = 0.05,
                                   .eps = 1e-8};
        host_updates.push_back({p[t].data(), m[t].data(), v[t].data(), g[t].data(), sizes[t], c});
        device_updates.push_back({bp[t].data(), bm[t].data(), bv[t].data(), std::as_const(bg[t]).data(), sizes[t], c});
    }
    reference.adamw_update(std::span<const adamw_buffers<T*, const T*>>(host_updates));
    backend.adamw_update(std::span<const adamw_buffers<backend_pointer<B, T>, backend_pointer<B, const T>>>(device_updates));
    for (std::size_t t = 0; t < sizes.size(); ++t) {
        CHECK(max_difference(on_host(backend, bp[t]), p[t]) == 0.0);
        CHECK(max_difference(on_host(backend, bm[t]), m[t]) == 0.0);
        CHECK(max_difference(on_host(backend, bv[t]), v[t]) == 0.0);
    }

    // A non-finite value in the third buffer: the norm says so, and clipping and AdamW leave everything.
    host[2][4] = std::numeric_limits<T>::infinity();
    device[2] = on_device(backend, host[2]);
    device_views[2] = {std::as_const(device[2]).data(), sizes[2]};
    device_outputs[2] = {device[2].data(), sizes[2]};
    backend.sum_of_squares(std::span<const buffer_view<backend_pointer<B, const T>>>(device_views), b_norm.data());
    CHECK(on_host(backend, b_norm)[1] == 2.0);
    backend.clip_buffers(std::span<const buffer_view<backend_pointer<B, T>>>(device_outputs),
                         backend_pointer<B, const double>(b_norm.data()), 1e-3);
    CHECK(max_difference(on_host(backend, device[0]), host[0]) == 0.0);
    backend.adamw_update(std::span<const adamw_buffers<backend_pointer<B, T>, backend_pointer<B, const T>>>(device_updates),
                         backend_pointer<B, const double>(b_norm.data()));
    for (std::size_t t = 0; t < sizes.size(); ++t) CHECK(max_difference(on_host(backend, bp[t]), p[t]) == 0.0);
}
