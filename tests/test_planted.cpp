// DM²S² learns a planted-signal task and explains its predictions: the element with the largest γ
// is the planted token and β puts the most weight on its modality. Every baseline trains with the
// same code.

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>

#include "dm2s2/train/planted_task.hpp"
#include "dm2s2/train/trainer.hpp"
#include "test_support.hpp"

using namespace dm2s2;

namespace {

struct planted_result {
    double accuracy = 0, gamma_on_planted = 0, beta_on_planted = 0;
    double first_epoch_loss = 0, last_epoch_loss = 0, seconds = 0;
};

/// Trains on `train` for `epochs` with the library's trainer (batch 32, AdamW, 10 % warm-up, no
/// dropout) and evaluates on `test`.
planted_result train_and_evaluate(const planted_task& train, const planted_task& test, pooling_kind pooling, std::size_t epochs)
{
    auto config = planted_task::config();
    config.pooling = pooling;
    model<float> m(train.modalities, config, 3);
    trainer<float, cpu_backend> t(m, task_type::multiclass,
                                  {.epochs = epochs, .batch_size = 32, .learning_rate = 1e-3, .seed = 4, .log = nullptr});
    const auto start = std::chrono::steady_clock::now();
    const auto history = t.fit({train.records, train.targets<float>()}).history;
    planted_result r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.first_epoch_loss = history.front().train_loss;
    r.last_epoch_loss = history.back().train_loss;

    const bool explainable = explains(pooling);
    const auto out = m.forward(test.records, explainable);
    std::size_t correct = 0, pointed = 0, weighted = 0;
    for (std::size_t b = 0; b < test.records.size(); ++b) {
        const float* row = out.logits.row(b);
        if (static_cast<std::size_t>(std::max_element(row, row + planted_task::classes) - row) != test.labels[b]) continue;
        ++correct;
        if (!explainable) continue;
        std::size_t best_m = 0, best_i = 0;
        float best = -1;
        for (std::size_t modality = 0; modality < 3; ++modality) {
            const auto gamma = out.explanation.gamma_of(b, modality);
            for (std::size_t i = 0; i < gamma.size(); ++i)
                if (gamma[i] > best) best = gamma[i], best_m = modality, best_i = i;
        }
        pointed += best_m == 0 && best_i == test.planted_position[b];
        const float beta_words = out.explanation.beta_of(b, 0);
        weighted += beta_words >= out.explanation.beta_of(b, 1) && beta_words >= out.explanation.beta_of(b, 2);
    }
    r.accuracy = double(correct) / test.records.size();
    r.gamma_on_planted = correct ? double(pointed) / correct : 0;
    r.beta_on_planted = correct ? double(weighted) / correct : 0;
    const std::string weights = explainable ? ", gamma argmax on the planted token " + std::to_string(r.gamma_on_planted) +
                                                  ", beta largest on its modality " + std::to_string(r.beta_on_planted)
                                            : " (no attention weights)";
    MESSAGE(to_string(pooling), ": accuracy ", r.accuracy, weights, ", loss ", r.first_epoch_loss, " -> ", r.last_epoch_loss,
            ", ", r.seconds, " s");
    return r;
}

}  // namespace

TEST_CASE("DM²S² learns a planted-signal task and points at the planted element")
{
    const planted_task train(1200, 1), test(300, 2);
    const auto r = train_and_evaluate(train, test, pooling_kind::dm2s2, 6);
    CHECK(r.accuracy >= 0.95);
    CHECK(r.gamma_on_planted >= 0.90);
    CHECK(r.beta_on_planted >= 0.90);
    // The same data for two baselines, for comparison (their numbers are reported, not required).
    for (const auto baseline : {pooling_kind::no_intra, pooling_kind::mid_fusion}) train_and_evaluate(train, test, baseline, 6);
}

TEST_CASE("every baseline trains with the same code: its loss decreases")
{
    const planted_task train(640, 5), test(100, 6);
    for (const auto pooling : all_pooling_kinds) {
        if (pooling == pooling_kind::dm2s2) continue;
        const std::string name(to_string(pooling));
        CAPTURE(name);
        const auto r = train_and_evaluate(train, test, pooling, 6);
        CHECK(r.last_epoch_loss < 0.9 * r.first_epoch_loss);
    }
}

TEST_CASE("accumulating micro-batches gives the step of their union")
{
    const planted_task data(12, 9);
    auto config = planted_task::config();
    config.bert.hidden_size = 16;
    config.bert.intermediate_size = 32;
    model<double> whole(data.modalities, config, 5), split(data.modalities, config, 5);
    adamw<double> whole_optimizer, split_optimizer;
    const auto targets_of = [&](std::size_t first, std::size_t count) {
        tensor<double> t({count});
        for (std::size_t i = 0; i < count; ++i) t[i] = static_cast<double>(data.labels[first + i]);
        return t;
    };
    const auto records = [&](std::size_t first, std::size_t count) {
        return std::vector<sequence_set>(data.records.begin() + static_cast<std::ptrdiff_t>(first),
                                         data.records.begin() + static_cast<std::ptrdiff_t>(first + count));
    };
    const step_options options{.learning_rate = 1e-2, .max_gradient_norm = 0.5};
    const auto one =
        train_step(whole, whole_optimizer, whole.pack(records(0, 12)), task_type::multiclass, targets_of(0, 12), options);
    const std::vector<packed_batch> parts = {split.pack(records(0, 5)), split.pack(records(5, 7))};
    const std::vector<tensor<double>> part_targets = {targets_of(0, 5), targets_of(5, 7)};
    const auto two = train_step(split, split_optimizer, std::span<const packed_batch>(parts), task_type::multiclass,
                                std::span<const tensor<double>>(part_targets), options);
    CHECK(two.loss == doctest::Approx(one.loss).epsilon(1e-12));
    CHECK(two.gradient_norm == doctest::Approx(one.gradient_norm).epsilon(1e-10));
    std::map<std::string, const tensor<double>*> after;
    split.for_each_parameter([&](const std::string& name, const tensor<double>& t) { after[name] = &t; });
    double worst = 0;
    whole.for_each_parameter([&](const std::string& name, const tensor<double>& t) {
        worst = std::max(worst, dm2s2::testing::max_abs_diff(t.values(), after.at(name)->values()));
    });
    CHECK(worst <= 1e-12);
}
