// DM²S² learns a planted-signal task and explains its predictions: the element with the largest γ
// is the planted token and β puts the most weight on its modality.

#include <algorithm>
#include <chrono>
#include <numeric>

#include "dm2s2/train/train_step.hpp"
#include "planted_task.hpp"
#include "test_support.hpp"

using namespace dm2s2;

TEST_CASE("DM²S² learns a planted-signal task and points at the planted element")
{
    const dm2s2::testing::planted_task train(1200, 1), test(300, 2);
    model<float> m(train.modalities, dm2s2::testing::planted_task::config(), 3);
    adamw<float> optimizer;
    const std::size_t batch_size = 32, epochs = 6;
    const std::size_t steps_per_epoch = train.records.size() / batch_size, total = epochs * steps_per_epoch;
    random_generator rng(4);
    std::vector<std::size_t> order(train.records.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    const auto start = std::chrono::steady_clock::now();
    double last_loss = 0;
    for (std::size_t step = 0; step < total; ++step) {
        if (step % steps_per_epoch == 0)
            for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
        std::vector<sequence_set> records;
        tensor<float> targets({batch_size});
        for (std::size_t i = 0; i < batch_size; ++i) {
            const std::size_t r = order[(step % steps_per_epoch) * batch_size + i];
            records.push_back(train.records[r]);
            targets[i] = static_cast<float>(train.labels[r]);
        }
        const double lr = 1e-3 * linear_schedule(step, total / 10, total);
        last_loss = train_step(m, optimizer, m.pack(records), task_type::multiclass, targets, {.learning_rate = lr}).loss;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    const auto out = m.forward(test.records, true);
    std::size_t correct = 0, pointed = 0, weighted = 0;
    for (std::size_t b = 0; b < test.records.size(); ++b) {
        const float* row = out.logits.row(b);
        if (static_cast<std::size_t>(std::max_element(row, row + 3) - row) != test.labels[b]) continue;
        ++correct;
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
    const double accuracy = double(correct) / test.records.size();
    MESSAGE("planted task: accuracy ", accuracy, ", gamma argmax on the planted token ", double(pointed) / correct,
            ", beta largest on its modality ", double(weighted) / correct, ", final loss ", last_loss, ", ", seconds, " s");
    CHECK(accuracy >= 0.95);
    CHECK(double(pointed) / correct >= 0.90);
    CHECK(double(weighted) / correct >= 0.90);
}
