// Trains a small DM²S² on the planted-signal task (the class is decided by one planted token among
// random tokens, image-like rows and categories), with dropout, AdamW and a warm-up schedule; prints
// the loss and test metrics after each epoch, saves and reloads the model, and shows the explanation
// of a few test records: β per modality and the words with their α.
//
//   dm2s2_train_planted [OUTPUT_DIR]     (default: a directory under the system temp directory)

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include <dm2s2/data/planted_task.hpp>
#include <dm2s2/dm2s2.hpp>

int main(int argc, char** argv)
{
    try {
        const std::filesystem::path out_dir =
            argc > 1 ? std::filesystem::path(argv[1]) : std::filesystem::temp_directory_path() / "dm2s2_planted_model";
        const dm2s2::planted_task train(1200, 1), test(300, 2);
        auto config = dm2s2::planted_task::config();
        config.bert.hidden_dropout_prob = 0.1;
        config.bert.attention_probs_dropout_prob = 0.1;
        dm2s2::model<float> model(train.modalities, config, /*seed=*/3);
        dm2s2::adamw<float> optimizer({.weight_decay = 0.01});
        dm2s2::random_generator shuffle(4), dropout(5);

        const std::size_t batch_size = 32, epochs = 6, steps_per_epoch = train.records.size() / batch_size;
        const std::size_t total = epochs * steps_per_epoch;
        std::vector<std::size_t> order(train.records.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        dm2s2::tensor<float> test_targets({test.records.size()});
        for (std::size_t i = 0; i < test.records.size(); ++i) test_targets[i] = static_cast<float>(test.labels[i]);
        const auto test_batch = model.pack(test.records);

        for (std::size_t epoch = 0, step = 0; epoch < epochs; ++epoch) {
            for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle.below(i)]);
            double loss = 0;
            for (std::size_t s = 0; s < steps_per_epoch; ++s, ++step) {
                std::vector<dm2s2::sequence_set> records;
                dm2s2::tensor<float> targets({batch_size});
                for (std::size_t i = 0; i < batch_size; ++i) {
                    records.push_back(train.records[order[s * batch_size + i]]);
                    targets[i] = static_cast<float>(train.labels[order[s * batch_size + i]]);
                }
                const double lr = 1e-3 * dm2s2::linear_schedule(step, total / 10, total);
                loss += dm2s2::train_step(model, optimizer, model.pack(records), dm2s2::task_type::multiclass, targets,
                                          {.learning_rate = lr, .dropout_rng = &dropout}).loss;
            }
            const auto metrics = dm2s2::evaluate_metrics(dm2s2::task_type::multiclass, model.forward(test_batch).logits, test_targets);
            std::printf("epoch %zu  train loss %.4f  test accuracy %.3f  macro-F1 %.3f\n", epoch + 1, loss / steps_per_epoch,
                        metrics.at("accuracy"), metrics.at("macro_f1"));
        }

        dm2s2::save_model(model, out_dir);
        const auto reloaded = dm2s2::load_model<float>(out_dir);
        std::printf("saved to %s and reloaded\n\n", out_dir.string().c_str());

        const std::vector<dm2s2::sequence_set> shown(test.records.begin(), test.records.begin() + 3);
        const auto out = reloaded.forward(shown, /*explain=*/true);
        for (std::size_t b = 0; b < shown.size(); ++b) {
            const float* row = out.logits.row(b);
            const auto predicted = static_cast<std::size_t>(std::max_element(row, row + dm2s2::planted_task::classes) - row);
            std::printf("record %zu: class %zu (true %zu); planted token at word %zu\n", b, predicted, test.labels[b],
                        test.planted_position[b]);
            for (std::size_t m = 0; m < train.modalities.size(); ++m)
                std::printf("  %-8s beta %.3f%s\n", train.modalities[m].name.c_str(), out.explanation.beta_of(b, m),
                            shown[b].present(m) ? "" : "  (missing)");
            std::printf("  words:");
            const auto alpha = out.explanation.alpha_of(b, 0);
            for (std::size_t i = 0; i < alpha.size(); ++i)
                std::printf(" %lld(%.2f)", static_cast<long long>(shown[b].ids(0)[i]), alpha[i]);
            std::printf("\n");
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dm2s2_train_planted: %s\n", e.what());
        return 1;
    }
}
