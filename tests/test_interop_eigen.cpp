// Eigen interop: maps share the library's memory (same addresses, writes visible), explanations read
// through them match the accessors, and records and targets built from any storage order or
// expression hold the same values as those built by hand; bad shapes and values are refused by name.

#include <Eigen/Core>

#include <cmath>

#include "dm2s2/interop/eigen.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::four_modalities;
using dm2s2::testing::random_records;
using dm2s2::testing::small_config;

TEST_CASE("as_eigen views a host tensor without copying, rank 1 as a column and rank 2 row-major")
{
    tensor<float> t({2, 3});
    for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = float(i);
    auto m = as_eigen(t);
    CHECK(m.data() == t.data());
    REQUIRE(m.rows() == 2);
    REQUIRE(m.cols() == 3);
    CHECK(m(1, 0) == 3.0f);
    CHECK(m(0, 2) == 2.0f);
    m(1, 2) = 42.0f;
    CHECK(t(1, 2) == 42.0f);

    const tensor<double> v({4}, 0.5);
    const auto c = as_eigen(v);
    CHECK(c.rows() == 4);
    CHECK(c.cols() == 1);
    CHECK(c.data() == v.data());

    tensor<float> cube({2, 2, 2});
    CHECK_THROWS_WITH_AS(as_eigen(cube), doctest::Contains("[2, 2, 2]"), shape_error);
}

TEST_CASE("Eigen maps of logits, alpha, beta, gamma and attribution scores read the model's own results")
{
    const auto s = four_modalities();
    const model<double> m(s, small_config(), 3);
    const auto records = random_records(s, 5, 11);
    const auto out = m.forward(records, true);
    const auto& e = out.explanation;

    const auto logits = logits_matrix(out);
    CHECK(logits.data() == out.logits.data());
    CHECK(logits.rows() == 5);
    CHECK(logits.cols() == 3);

    const auto alpha = alpha_matrix(e), gamma = gamma_matrix(e);
    const auto beta = beta_matrix(e);
    CHECK(alpha.data() == e.alpha.data());
    CHECK(beta.data() == e.beta.data());
    for (std::size_t b = 0; b < records.size(); ++b) {
        CHECK(beta.row(Eigen::Index(b)).sum() == doctest::Approx(1.0).epsilon(1e-12));
        CHECK(gamma.row(Eigen::Index(b)).sum() == doctest::Approx(1.0).epsilon(1e-12));
        for (std::size_t k = 0; k < s.size(); ++k) {
            CHECK(beta(Eigen::Index(b), Eigen::Index(k)) == e.beta_of(b, k));
            const auto a = e.alpha_of(b, k);
            const auto& span = e.span(b, k);
            for (std::size_t i = 0; i < a.size(); ++i) CHECK(alpha(Eigen::Index(b), Eigen::Index(span.begin + i)) == a[i]);
            const auto g = as_eigen(e.gamma_of(b, k));
            CHECK(g.size() == Eigen::Index(a.size()));
            if (!a.empty()) CHECK(g.sum() == doctest::Approx(e.beta_of(b, k)).epsilon(1e-12));
        }
    }

    const auto a = attribute(m, records, attribution_method::occlusion, {.task = task_type::multiclass});
    const auto scores = modality_scores(a);
    CHECK(scores.rows() == 5);
    CHECK(scores.cols() == Eigen::Index(s.size()));
    for (std::size_t b = 0; b < records.size(); ++b)
        for (std::size_t k = 0; k < s.size(); ++k) CHECK(scores(Eigen::Index(b), Eigen::Index(k)) == a.modality_of(b, k));
}

TEST_CASE("set_dense from an Eigen matrix in either storage order, or an expression, sets the rows by hand")
{
    const auto s = four_modalities();  // "image" is dense, dim 5
    Eigen::MatrixXd column_major(3, 5);
    for (Eigen::Index i = 0; i < 3; ++i)
        for (Eigen::Index j = 0; j < 5; ++j) column_major(i, j) = double(10 * i + j) + 0.25;
    std::vector<float> by_hand;
    for (Eigen::Index i = 0; i < 3; ++i)
        for (Eigen::Index j = 0; j < 5; ++j) by_hand.push_back(float(column_major(i, j)));

    sequence_set expected(s), from_matrix(s), from_row_major(s), from_expression(s);
    expected.set_dense("image", by_hand);
    set_dense(from_matrix, "image", column_major);
    const eigen_row_matrix<float> row_major = column_major.cast<float>();
    set_dense(from_row_major, std::size_t(1), row_major);
    set_dense(from_expression, "image", 0.5 * (column_major + column_major));
    CHECK(from_matrix.length(1) == 3);
    for (const auto* r : {&from_matrix, &from_row_major, &from_expression}) {
        REQUIRE(r->dense(1).size() == by_hand.size());
        for (std::size_t i = 0; i < by_hand.size(); ++i) CHECK(r->dense(1)[i] == expected.dense(1)[i]);
    }

    sequence_set x(s);
    CHECK_THROWS_WITH_AS(set_dense(x, "image", Eigen::MatrixXf(2, 4)), doctest::Contains("modality 'image'"), shape_error);
    Eigen::MatrixXf with_nan = Eigen::MatrixXf::Zero(2, 5);
    with_nan(1, 3) = std::nanf("");
    CHECK_THROWS_WITH_AS(set_dense(x, "image", with_nan), doctest::Contains("row 1 column 3"), input_error);
    CHECK_THROWS_WITH_AS(set_dense(x, "title", Eigen::MatrixXf(1, 5)), doctest::Contains("'title'"), input_error);
    CHECK_THROWS_WITH_AS(set_dense(x, std::size_t(9), Eigen::MatrixXf(1, 5)), doctest::Contains("index 9"), input_error);
    CHECK_THROWS_WITH_AS(set_dense(x, "poster", Eigen::MatrixXf(1, 5)), doctest::Contains("'poster'"), input_error);
    CHECK_FALSE(x.present(1));
}

TEST_CASE("tensor_from an Eigen vector gives class indices, from a matrix row-major targets")
{
    Eigen::VectorXi classes(4);
    classes << 2, 0, 1, 2;
    const auto t = tensor_from<float>(classes);
    REQUIRE(t.shape() == shape_t{4});
    CHECK(t[0] == 2.0f);
    CHECK(t[3] == 2.0f);

    Eigen::MatrixXd labels(2, 3);  // column-major storage
    labels << 1, 0, 1, 0, 1, 1;
    const auto u = tensor_from<double>(labels);
    REQUIRE(u.shape() == shape_t{2, 3});
    CHECK(u(0, 2) == 1.0);
    CHECK(u(1, 0) == 0.0);
    CHECK(u(1, 1) == 1.0);
    check_targets(task_type::multilabel, tensor<double>({2, 3}), u);
}
