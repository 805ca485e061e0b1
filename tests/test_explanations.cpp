// Attribution methods against independent computations: occlusion against forward passes of records
// rebuilt by hand, gradient × input against finite differences, integrated gradients against its
// completeness, attention against the forward pass's weights; ERASER metrics against their definition.

#include <cmath>
#include <numeric>

#include "dm2s2/explain/faithfulness.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::four_modalities;
using dm2s2::testing::pooling_variants;
using dm2s2::testing::random_records;
using dm2s2::testing::small_config;

namespace {

/// The explained score of one record alone, for `target`, with element vectors scaled by `scale`
/// on the slots of `scaled` (element slots of the encoder batch).
double score_of(const model<double>& m, const sequence_set& record, std::size_t target, task_type task,
                const std::vector<std::size_t>& scaled = {}, double factor = 1.0)
{
    const auto batch = m.pack(std::vector{record});
    const std::size_t rows =
        m.config().pooling == pooling_kind::mid_fusion ? split_by_modality(batch).batch.layout.rows() : batch.layout.rows();
    std::vector<double> scale(rows, 1.0);
    for (const auto slot : scaled) scale[slot] = factor;
    const auto out = m.forward(batch, false, nullptr, nullptr, std::span<const double>(scale));
    return explained_score(task, out.logits.row(0), m.config().num_outputs, target);
}

/// `record` with element i of modality k removed (k's other elements kept), rebuilt through the setters.
sequence_set without(const schema& s, const sequence_set& record, std::size_t k, std::size_t i)
{
    sequence_set x(s);
    for (std::size_t m = 0; m < s.size(); ++m) {
        const std::size_t n = std::min(record.length(m), s[m].max_length);
        const auto kept = [&](std::size_t j) { return m != k || j != i; };
        switch (s[m].kind) {
        case modality_kind::tokens:
        case modality_kind::categorical: {
            std::vector<std::int64_t> ids;
            for (std::size_t j = 0; j < n; ++j)
                if (kept(j)) ids.push_back(record.ids(m)[j]);
            s[m].kind == modality_kind::tokens ? x.set_tokens(m, ids) : x.set_categorical(m, ids);
            break;
        }
        case modality_kind::dense: {
            std::vector<float> rows;
            for (std::size_t j = 0; j < n; ++j)
                if (kept(j))
                    rows.insert(rows.end(), record.dense(m).begin() + j * s[m].dim, record.dense(m).begin() + (j + 1) * s[m].dim);
            x.set_dense(m, rows);
            break;
        }
        default: {
            std::vector<double> values;
            for (std::size_t j = 0; j < n; ++j)
                if (kept(j)) values.push_back(record.numbers(m)[j]);
            x.set_numeric(m, values);
        }
        }
    }
    return x;
}

/// The slots of the elements of `record`, packed alone, in the batch the encoder runs on.
std::vector<std::size_t> element_slots_of(const model<double>& m, const sequence_set& record)
{
    const auto batch = m.pack(std::vector{record});
    const auto split = split_by_modality(batch);
    return detail::element_slots(batch, m.config().pooling == pooling_kind::mid_fusion ? &split : nullptr);
}

std::size_t element_count(const sequence_set& x, const schema& s)
{
    std::size_t n = 0;
    for (std::size_t m = 0; m < s.size(); ++m) n += std::min(x.length(m), s[m].max_length);
    return n;
}

}  // namespace

TEST_CASE("occlusion is the score drop of the record rebuilt without the element or the modality, for every pooling")
{
    const auto s = four_modalities();
    auto records = random_records(s, 7, 11);
    records[3].clear(0).clear(1).clear(2).set_numeric("price", {2.5});  // one element: removing it leaves nothing
    for (const auto& [name, config] : pooling_variants()) {
        const std::string variant = name;
        CAPTURE(variant);
        const model<double> m(s, config, 5);
        const auto a = attribute(m, records, attribution_method::occlusion, {.task = task_type::multiclass, .batch_size = 3});
        REQUIRE(a.records() == records.size());
        for (std::size_t b = 0; b < records.size(); ++b) {
            CAPTURE(b);
            const double full = score_of(m, records[b], a.targets[b], task_type::multiclass);
            CHECK(a.scores[b] == doctest::Approx(full).epsilon(1e-12));
            for (std::size_t k = 0; k < s.size(); ++k) {
                const std::size_t n = std::min(records[b].length(k), s[k].max_length);
                REQUIRE(a.elements_of(b, k).size() == n);
                if (n == 0) {
                    CHECK(a.modality_of(b, k) == 0);
                    continue;
                }
                for (std::size_t i = 0; i < n; ++i) {
                    const auto rest = without(s, records[b], k, i);
                    const double reduced = element_count(rest, s) == 0 ? uninformed_score(task_type::multiclass, 3)
                                                                       : score_of(m, rest, a.targets[b], task_type::multiclass);
                    CHECK(a.elements_of(b, k)[i] == doctest::Approx(full - reduced).epsilon(1e-9));
                }
                sequence_set rest = records[b];
                rest.clear(k);
                const double reduced = element_count(rest, s) == 0 ? uninformed_score(task_type::multiclass, 3)
                                                                   : score_of(m, rest, a.targets[b], task_type::multiclass);
                CHECK(a.modality_of(b, k) == doctest::Approx(full - reduced).epsilon(1e-9));
            }
        }
    }
}

TEST_CASE("gradient × input is the derivative of the score along each element's scale, for every pooling and task")
{
    const auto s = four_modalities();
    const auto records = random_records(s, 5, 21);
    for (const auto task : {task_type::multiclass, task_type::binary, task_type::multilabel, task_type::regression}) {
        for (const auto& [name, base] : pooling_variants()) {
            const std::string variant = name;
            CAPTURE(variant);
            CAPTURE(to_string(task));
            auto config = base;
            config.num_outputs = task == task_type::binary || task == task_type::regression ? 1 : 3;
            const model<double> m(s, config, 8);
            const auto a = attribute(m, records, attribution_method::gradient, {.task = task, .batch_size = 2});
            for (std::size_t b = 0; b < records.size(); ++b) {
                const auto slots = element_slots_of(m, records[b]);
                std::size_t e = 0;
                for (std::size_t k = 0; k < s.size(); ++k) {
                    double total = 0;
                    for (const double x : a.elements_of(b, k)) {
                        const double step = 1e-5;
                        const double up = score_of(m, records[b], a.targets[b], task, {slots[e]}, 1 + step);
                        const double down = score_of(m, records[b], a.targets[b], task, {slots[e++]}, 1 - step);
                        CHECK(x == doctest::Approx((up - down) / (2 * step)).epsilon(1e-6).scale(1e-3));
                        total += x;
                    }
                    CHECK(a.modality_of(b, k) == doctest::Approx(total).epsilon(1e-12));
                }
            }
        }
    }
}

TEST_CASE("integrated gradients add up to the score change from zero element vectors (completeness)")
{
    const auto s = four_modalities();
    const auto records = random_records(s, 6, 31);
    for (const auto& [name, config] : pooling_variants()) {
        const std::string variant = name;
        CAPTURE(variant);
        const model<double> m(s, config, 9);
        const auto a = attribute(m, records, attribution_method::integrated_gradients,
                                 {.task = task_type::multiclass, .steps = 128, .batch_size = 4});
        for (std::size_t b = 0; b < records.size(); ++b) {
            const auto slots = element_slots_of(m, records[b]);
            const double change = a.scores[b] - score_of(m, records[b], a.targets[b], task_type::multiclass, slots, 0.0);
            double total = 0;
            for (std::size_t k = 0; k < s.size(); ++k) total += a.modality_of(b, k);
            // The path crosses the kinks of dm2s's max-pool, which the midpoint rule resolves slowly
            // (docs/tests.md); the smooth poolings come within 1e-3.
            const double tolerance = config.pooling == pooling_kind::dm2s ? 2e-2 : 1e-3;
            CHECK(total == doctest::Approx(change).epsilon(tolerance).scale(std::abs(change) + 1e-2));
        }
        // One step at the record itself is not gradient × input (the midpoint is at half scale), but
        // the path methods agree on which records they explain.
        const auto g = attribute(m, records, attribution_method::gradient);
        CHECK(g.targets == a.targets);
    }
}

TEST_CASE("attention attributions are the forward pass's β and γ; poolings without weights refuse them")
{
    const auto s = four_modalities();
    const auto records = random_records(s, 5, 41);
    for (const auto& [name, config] : pooling_variants()) {
        const std::string variant = name;
        CAPTURE(variant);
        const model<float> m(s, config, 2);
        if (!explains(config.pooling)) {
            CHECK_THROWS_AS(attribute(m, records, attribution_method::attention), config_error);
            continue;
        }
        const auto out = m.forward(records, true);
        const auto a = attribute(m, records, attribution_method::attention, {.batch_size = 2});
        for (std::size_t b = 0; b < records.size(); ++b)
            for (std::size_t k = 0; k < s.size(); ++k) {
                CHECK(a.modality_of(b, k) == out.explanation.beta_of(b, k));
                const auto gamma = out.explanation.gamma_of(b, k);
                CHECK(dm2s2::testing::max_abs_diff(a.elements_of(b, k), gamma) == 0);
            }
    }
}

TEST_CASE("attribution targets: given ones are explained, bad ones are refused")
{
    const auto s = four_modalities();
    const auto records = random_records(s, 4, 51);
    const model<double> m(s, small_config(), 3);
    const auto a = attribute(m, records, attribution_method::occlusion, {.targets = {0, 1, 2, 0}});
    CHECK(a.targets == std::vector<std::size_t>{0, 1, 2, 0});
    CHECK(a.scores[1] == doctest::Approx(score_of(m, records[1], 1, task_type::multiclass)).epsilon(1e-12));
    CHECK_THROWS_AS(attribute(m, records, attribution_method::occlusion, {.targets = {0, 1, 3, 0}}), input_error);
    CHECK_THROWS_AS(attribute(m, records, attribution_method::occlusion, {.targets = {0, 1}}), shape_error);
    CHECK_THROWS_AS(attribute(m, records, attribution_method::integrated_gradients, {.steps = 0}), config_error);
}

TEST_CASE("comprehensiveness and sufficiency follow ERASER's definition")
{
    const auto s = four_modalities();
    const auto records = random_records(s, 5, 61);
    const model<double> m(s, small_config(), 4);
    const auto a = attribute(m, records, attribution_method::occlusion);
    const faithfulness_options options{.fractions = {0.2, 0.5}};
    const auto f = evaluate_faithfulness(m, records, a, options);
    CHECK(f.records == records.size());
    // The same numbers from records rebuilt by hand, one at a time.
    double comprehensiveness = 0, sufficiency = 0, top1 = 0;
    for (std::size_t b = 0; b < records.size(); ++b) {
        const auto order = ranked_elements(a, b);
        const double p = std::exp(a.scores[b]);
        const auto probability_of = [&](std::size_t k, bool keep_top) {
            record_subset x(s, records[b], [&](std::size_t mk, std::size_t i) {
                const bool in_top = std::find(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), std::pair{mk, i}) !=
                                    order.begin() + static_cast<std::ptrdiff_t>(k);
                return in_top == keep_top;
            });
            if (x.total_length() == 0) return 1.0 / 3;
            const auto out = m.forward(std::vector{x});
            return std::exp(explained_score(task_type::multiclass, out.logits.row(0), 3, a.targets[b]));
        };
        for (const double fraction : options.fractions) {
            const auto k = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(fraction * order.size())));
            comprehensiveness += (p - probability_of(k, false)) / 2;
            sufficiency += (p - probability_of(k, true)) / 2;
        }
        top1 += p - probability_of(1, false);
    }
    const double n = static_cast<double>(records.size());
    CHECK(f.comprehensiveness == doctest::Approx(comprehensiveness / n).epsilon(1e-12));
    CHECK(f.sufficiency == doctest::Approx(sufficiency / n).epsilon(1e-12));
    CHECK(f.comprehensiveness_top1 == doctest::Approx(top1 / n).epsilon(1e-12));
}

TEST_CASE("points_at reads the top modality, then the top element within it")
{
    attribution<float> a;
    a.modality_count = 2;
    a.targets = {0};
    a.modalities = {0.2f, 0.7f};
    a.elements = {{0.9f, 0.1f}, {0.3f, 0.4f, 0.0f}};
    CHECK(points_at(a, 0, 1, 1));
    CHECK_FALSE(points_at(a, 0, 0, 0));  // the largest element is in the modality that is not on top
    CHECK_FALSE(points_at(a, 0, 1, 0));
    a.modalities = {-0.5f, -0.6f};  // negative scores still rank
    CHECK(points_at(a, 0, 0, 0));
}
