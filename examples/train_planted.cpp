// Trains a small DM²S² on the planted-signal task (the class is decided by one planted token among
// random tokens, image-like rows and categories) with the library's trainer: dropout, AdamW with
// warm-up, batches bucketed by length, a progress bar, validation after each epoch and the best model
// saved. Then reloads the best model, prints its test metrics and the explanation of a few test
// records: β per modality and the words with their α.
//
//   dm2s2_train_planted [OUTPUT_DIR]     (default: a directory under the system temp directory)
//   dm2s2_train_planted --write-cue-data DIR
//
// The second form trains nothing: it writes the planted-cue data set (`dm2s2::planted_cue_task`: a
// binary task decided by a word in a text or a value among tags) in the tools' format, as
// DIR/schema.json, DIR/vocab.txt and DIR/{train,valid,test}.jsonl (2000, 500 and 500 records), for
// dm2s2_train and dm2s2_predict.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <dm2s2/train/planted_cue_task.hpp>
#include <dm2s2/train/planted_task.hpp>
#include <dm2s2/dm2s2.hpp>

int main(int argc, char** argv)
{
    try {
        if (argc == 3 && std::string(argv[1]) == "--write-cue-data") {
            dm2s2::planted_cue_task(2000, 1).write(argv[2], "train");
            dm2s2::planted_cue_task(500, 3).write(argv[2], "valid");
            dm2s2::planted_cue_task(500, 2).write(argv[2], "test");
            std::printf("planted-cue data written to %s\n", argv[2]);
            return 0;
        }
        const std::filesystem::path out_dir =
            argc > 1 ? std::filesystem::path(argv[1]) : std::filesystem::temp_directory_path() / "dm2s2_planted_model";
        const dm2s2::planted_task train(1200, 1), valid(300, 7), test(300, 2);
        auto config = dm2s2::planted_task::config();
        config.bert.hidden_dropout_prob = 0.1;
        config.bert.attention_probs_dropout_prob = 0.1;
        dm2s2::model<float> model(train.modalities, config, /*seed=*/3);

        dm2s2::trainer<float, dm2s2::cpu_backend> trainer(
            model, dm2s2::task_type::multiclass,
            {.epochs = 6, .batch_size = 32, .learning_rate = 1e-3, .seed = 4, .patience = 2, .output_dir = out_dir});
        const dm2s2::dataset<float> train_data{train.records, train.targets<float>()};
        const dm2s2::dataset<float> valid_data{valid.records, valid.targets<float>()};
        const auto result = trainer.fit(train_data, &valid_data);
        std::printf("best epoch %zu (validation %s %.3f), saved in %s\n", result.best_epoch.value_or(0), result.monitor.c_str(),
                    result.best_value, out_dir.string().c_str());

        const auto best = dm2s2::load_model<float>(out_dir);
        const auto scores =
            dm2s2::evaluate(best, dm2s2::dataset<float>{test.records, test.targets<float>()}, dm2s2::task_type::multiclass);
        std::printf("test accuracy %.3f, macro-F1 %.3f\n\n", scores.metrics.at("accuracy"), scores.metrics.at("macro_f1"));

        const std::vector<dm2s2::sequence_set> shown(test.records.begin(), test.records.begin() + 3);
        const auto out = best.forward(shown, /*explain=*/true);
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
