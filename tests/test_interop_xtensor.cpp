// xtensor interop: adaptors share the library's memory (same addresses, writes visible), explanations
// read through them match the accessors, and records and targets built from containers of either
// layout, views and lazy expressions hold the same values as those built by hand; bad shapes and
// values are refused by name. Runs against whichever xtensor the build found (0.24 to 0.27).

#include <cmath>

#include "dm2s2/interop/xtensor.hpp"
#if __has_include(<xtensor/containers/xarray.hpp>)
#include <xtensor/containers/xarray.hpp>
#include <xtensor/core/xmath.hpp>
#include <xtensor/generators/xbuilder.hpp>
#include <xtensor/misc/xmanipulation.hpp>
#include <xtensor/views/xview.hpp>
#else
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>
#endif

#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::four_modalities;
using dm2s2::testing::random_records;
using dm2s2::testing::small_config;

TEST_CASE("as_xtensor views a host tensor without copying, with its shape")
{
    tensor<float> t({2, 3, 4});
    for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = float(i);
    auto a = as_xtensor(t);
    REQUIRE(a.dimension() == 3);
    CHECK(a.shape()[2] == 4);
    CHECK(&a(0, 0, 0) == t.data());
    CHECK(a(1, 2, 3) == 23.0f);
    a(1, 0, 0) = -1.0f;
    CHECK(t.data()[12] == -1.0f);
    const tensor<double> c({5}, 0.25);
    const auto v = as_xtensor(c);
    CHECK(v.size() == 5);
    CHECK(&v(4) == c.data() + 4);
}

TEST_CASE("xtensor adaptors of logits, alpha, beta, gamma and attribution scores read the model's own results")
{
    const auto s = four_modalities();
    const model<double> m(s, small_config(), 3);
    const auto records = random_records(s, 5, 11);
    const auto out = m.forward(records, true);
    const auto& e = out.explanation;

    const auto logits = logits_array(out);
    CHECK(&logits(0, 0) == out.logits.data());
    CHECK(logits.shape()[0] == 5);
    CHECK(logits.shape()[1] == 3);

    const auto alpha = alpha_array(e), gamma = gamma_array(e), beta = beta_array(e);
    CHECK(&alpha(0, 0) == e.alpha.data());
    const xt::xarray<double> beta_sums = xt::sum(beta, {1}), gamma_sums = xt::sum(gamma, {1});
    for (std::size_t b = 0; b < records.size(); ++b) {
        CHECK(beta_sums(b) == doctest::Approx(1.0).epsilon(1e-12));
        CHECK(gamma_sums(b) == doctest::Approx(1.0).epsilon(1e-12));
        for (std::size_t k = 0; k < s.size(); ++k) {
            CHECK(beta(b, k) == e.beta_of(b, k));
            const auto a = e.alpha_of(b, k);
            const auto& span = e.span(b, k);
            for (std::size_t i = 0; i < a.size(); ++i) CHECK(alpha(b, span.begin + i) == a[i]);
            const auto g = as_xtensor(e.gamma_of(b, k));
            CHECK(g.size() == a.size());
        }
    }

    const auto a = attribute(m, records, attribution_method::occlusion, {.task = task_type::multiclass});
    const auto scores = modality_scores_array(a);
    CHECK(scores.shape()[0] == 5);
    for (std::size_t b = 0; b < records.size(); ++b)
        for (std::size_t k = 0; k < s.size(); ++k) CHECK(scores(b, k) == a.modality_of(b, k));
}

TEST_CASE("set_dense from xtensor containers of either layout, views and expressions sets the rows by hand")
{
    const auto s = four_modalities();  // "image" is dense, dim 5
    xt::xarray<double> rows = xt::zeros<double>({3, 5});
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 5; ++j) rows(i, j) = double(10 * i + j) + 0.25;
    std::vector<float> by_hand;
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 5; ++j) by_hand.push_back(float(rows(i, j)));

    sequence_set expected(s);
    expected.set_dense("image", by_hand);
    const xt::xarray<float> row_major = rows;
    xt::xarray<float, xt::layout_type::column_major> column_major = rows;
    const xt::xarray<double> wider = xt::zeros<double>({4, 7});
    xt::xarray<double> padded = wider;
    xt::view(padded, xt::range(1, 4), xt::range(2, 7)) = rows;

    std::vector<sequence_set> built(5, sequence_set(s));
    set_dense(built[0], "image", row_major);                                           // one block copy
    set_dense(built[1], std::size_t(1), column_major);                                 // evaluated row by row
    set_dense(built[2], "image", xt::view(padded, xt::range(1, 4), xt::range(2, 7)));  // a strided view
    set_dense(built[3], "image", 0.5 * (rows + rows));                                 // a lazy expression
    set_dense(built[4], "image", xt::transpose(xt::xarray<double>(xt::transpose(rows))));
    for (const auto& r : built) {
        REQUIRE(r.length(1) == 3);
        for (std::size_t i = 0; i < by_hand.size(); ++i) CHECK(r.dense(1)[i] == expected.dense(1)[i]);
    }

    sequence_set x(s);
    CHECK_THROWS_WITH_AS(set_dense(x, "image", xt::xarray<float>(xt::zeros<float>({2, 4}))),
                         doctest::Contains("modality 'image'"), shape_error);
    CHECK_THROWS_WITH_AS(set_dense(x, "image", xt::xarray<float>(xt::zeros<float>({5}))), doctest::Contains("[5]"), shape_error);
    xt::xarray<float> with_inf = xt::zeros<float>({2, 5});
    with_inf(0, 4) = INFINITY;
    CHECK_THROWS_WITH_AS(set_dense(x, "image", with_inf), doctest::Contains("row 0 column 4"), input_error);
    CHECK_THROWS_WITH_AS(set_dense(x, "price", with_inf), doctest::Contains("'price'"), input_error);
    CHECK_FALSE(x.present(1));
}

TEST_CASE("tensor_from an xtensor expression keeps its shape and row-major values")
{
    const xt::xarray<int> classes = {2, 0, 1};
    const auto t = tensor_from<float>(classes);
    REQUIRE(t.shape() == shape_t{3});
    CHECK(t[0] == 2.0f);
    CHECK(t[2] == 1.0f);

    xt::xarray<double, xt::layout_type::column_major> labels = {{1, 0, 1}, {0, 1, 1}};
    const auto u = tensor_from<double>(labels);
    REQUIRE(u.shape() == shape_t{2, 3});
    CHECK(u(0, 2) == 1.0);
    CHECK(u(1, 0) == 0.0);
    const auto v = tensor_from<double>(xt::transpose(labels));
    REQUIRE(v.shape() == shape_t{3, 2});
    CHECK(v(2, 0) == 1.0);
    CHECK(v(0, 1) == 0.0);
    check_targets(task_type::multilabel, tensor<double>({2, 3}), u);
}
