// The trainer: batch plans (seeded, bucketed), progress display, early stopping with the best model
// saved, training checkpoints that resume bit for bit, and refusal of checkpoints that do not fit.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "dm2s2/train/planted_task.hpp"
#include "dm2s2/train/trainer.hpp"
#include "test_support.hpp"

using namespace dm2s2;
namespace fs = std::filesystem;
using cpu_trainer = trainer<float, cpu_backend>;

namespace {

/// A planted-task model small enough for several runs per test.
model_config tiny_planted_config(double dropout)
{
    auto c = planted_task::config();
    c.bert.hidden_size = 16;
    c.bert.intermediate_size = 32;
    c.bert.num_attention_heads = 2;
    c.bert.hidden_dropout_prob = dropout;
    c.bert.attention_probs_dropout_prob = dropout;
    c.head_dropout = dropout;
    return c;
}

dataset<float> planted_data(std::size_t count, std::uint64_t seed)
{
    const planted_task t(count, seed);
    return {t.records, t.targets<float>()};
}

/// Every parameter of `m` by name.
std::map<std::string, tensor<float>> parameters_of(const model<float>& m)
{
    std::map<std::string, tensor<float>> out;
    m.for_each_parameter([&](const std::string& name, const tensor<float>& t) { out.emplace(name, t); });
    return out;
}

/// Names of the parameters whose bytes differ between two models.
std::vector<std::string> differing_parameters(const model<float>& a, const model<float>& b)
{
    const auto pa = parameters_of(a), pb = parameters_of(b);
    std::vector<std::string> out;
    for (const auto& [name, t] : pa)
        if (std::memcmp(t.data(), pb.at(name).data(), t.size() * sizeof(float)) != 0) out.push_back(name);
    return out;
}

}  // namespace

TEST_CASE("an epoch's batches hold every record once, seeded, and bucketing groups similar lengths")
{
    random_generator lengths_rng(3);
    std::vector<std::size_t> lengths(203);
    for (auto& n : lengths) n = 2 + lengths_rng.below(60);
    const auto padded_slots = [&](const std::vector<std::vector<std::size_t>>& batches) {
        std::size_t slots = 0;
        for (const auto& b : batches) {
            std::size_t longest = 0;
            for (auto i : b) longest = std::max(longest, lengths[i]);
            slots += longest * b.size();
        }
        return slots;
    };
    for (const std::size_t bucket : {std::size_t{1}, std::size_t{8}}) {
        CAPTURE(bucket);
        random_generator a(9), b(9), c(10);
        const auto plan = epoch_batches(lengths, 16, bucket, a);
        CHECK(plan == epoch_batches(lengths, 16, bucket, b));
        CHECK(plan != epoch_batches(lengths, 16, bucket, c));
        std::multiset<std::size_t> seen;
        std::size_t short_batches = 0;
        for (const auto& batch : plan) {
            CHECK(batch.size() <= 16);
            short_batches += batch.size() < 16;
            seen.insert(batch.begin(), batch.end());
        }
        CHECK(seen.size() == lengths.size());
        CHECK(std::set<std::size_t>(seen.begin(), seen.end()).size() == lengths.size());
        CHECK(short_batches <= (bucket == 1 ? 1u : 2u));  // one per bucket run at most
    }
    random_generator a(9), b(9);
    const auto plain = epoch_batches(lengths, 16, 1, a), bucketed = epoch_batches(lengths, 16, 8, b);
    MESSAGE("padded slots: shuffled ", padded_slots(plain), ", bucketed ", padded_slots(bucketed), ", real ",
            std::accumulate(lengths.begin(), lengths.end(), std::size_t{0}));
    CHECK(padded_slots(bucketed) < 0.8 * static_cast<double>(padded_slots(plain)));
}

TEST_CASE("the progress display draws a bar on a terminal and plain lines elsewhere")
{
    std::ostringstream bar_out, line_out, silent_out;
    progress_meter bar(bar_out, progress_style::bar), lines(line_out, progress_style::lines),
        silent(silent_out, progress_style::none);
    CHECK(progress_meter(line_out, progress_style::automatic).style() == progress_style::lines);  // a string is no terminal
    for (auto* meter : {&bar, &lines, &silent}) {
        meter->start_epoch(2, 3, 40);
        for (std::size_t step = 1; step <= 40; ++step) meter->update(step, 8, 1.0 / static_cast<double>(step));
        meter->finish_epoch("validation accuracy 0.5");
    }
    CHECK(bar_out.str().find("\repoch 2/3 [========================] step 40/40  loss 0.0250") != std::string::npos);
    CHECK(bar_out.str().find("ETA 0:00") != std::string::npos);
    const std::string text = line_out.str();
    CHECK(text.find('\r') == std::string::npos);
    CHECK(std::count(text.begin(), text.end(), '\n') == 11);  // every 4th step, and the summary
    CHECK(text.find("epoch 2/3 step 4/40  loss 0.2500  ") != std::string::npos);
    CHECK(text.find("samples/s  ETA ") != std::string::npos);
    CHECK(text.find("epoch 2/3: validation accuracy 0.5\n") != std::string::npos);
    CHECK(silent_out.str().empty());
}

TEST_CASE("the trainer learns, saves the best model and stops early when validation stalls")
{
    const auto train = planted_data(480, 11), valid = planted_data(80, 12);
    const auto dir = dm2s2::testing::scratch_dir("trainer_learns");
    model<float> m(planted_task::modality_schema(), tiny_planted_config(0.1), 5);
    std::ostringstream log;
    cpu_trainer t(m, task_type::multiclass,
                  {.epochs = 6, .batch_size = 16, .learning_rate = 5e-3, .seed = 1, .output_dir = dir, .log = &log});
    const auto result = t.fit(train, &valid);
    REQUIRE(result.history.size() == 6);
    CHECK(result.monitor == "accuracy");
    CHECK(result.history.back().train_loss < 0.5 * result.history.front().train_loss);
    REQUIRE(result.best_epoch.has_value());
    double best = 0;
    for (const auto& e : result.history) best = std::max(best, e.validation->metrics.at("accuracy"));
    CHECK(result.best_value == best);
    CHECK(best >= 0.9);
    CHECK(result.steps == 6 * 30);
    // The saved model is the best epoch's: it reproduces that epoch's validation numbers.
    const auto saved = evaluate(load_model<float>(dir), valid, task_type::multiclass);
    CHECK(saved.metrics.at("accuracy") == result.best_value);
    CHECK(saved.loss == doctest::Approx(result.history[*result.best_epoch - 1].validation->loss).epsilon(1e-12));
    CHECK(log.str().find("(best)") != std::string::npos);

    // A learning rate too small to change the predictions: accuracy never improves after epoch 1.
    model<float> stalled(planted_task::modality_schema(), tiny_planted_config(0), 5);
    cpu_trainer patient(stalled, task_type::multiclass,
                        {.epochs = 10, .batch_size = 32, .learning_rate = 1e-12, .patience = 2, .log = nullptr});
    const auto stopped = patient.fit(train, &valid);
    CHECK(stopped.stopped_early);
    CHECK(stopped.history.size() == 3);
    CHECK(stopped.best_epoch == std::optional<std::size_t>(1));
}

TEST_CASE("a run resumed from a mid-epoch checkpoint ends bit-identical to an uninterrupted one")
{
    const auto train = planted_data(100, 21), valid = planted_data(30, 22);
    const auto config = tiny_planted_config(0.1);  // dropout: the generator state must be restored too
    const auto options = [](const fs::path& dir, std::size_t stop) {
        return trainer_options{.epochs = 3,
                               .batch_size = 8,
                               .accumulation = 2,
                               .learning_rate = 2e-3,
                               .seed = 7,
                               .bucket_batches = 4,
                               .output_dir = dir,
                               .stop_after_steps = stop,
                               .log = nullptr};
    };
    const auto whole_dir = dm2s2::testing::scratch_dir("resume_whole"), split_dir = dm2s2::testing::scratch_dir("resume_split");

    model<float> whole(planted_task::modality_schema(), config, 1);
    cpu_trainer uninterrupted(whole, task_type::multiclass, options(whole_dir, 0));
    const auto expected = uninterrupted.fit(train, &valid);
    CHECK(expected.steps == 3 * 7);  // 13 batches of 8, two per step

    model<float> first(planted_task::modality_schema(), config, 1);
    cpu_trainer interrupted(first, task_type::multiclass, options(split_dir, 10));  // mid epoch 2
    const auto partial = interrupted.fit(train, &valid);
    CHECK(partial.interrupted);
    CHECK(partial.steps == 10);
    CHECK(partial.history.size() == 1);
    CHECK(!differing_parameters(first, whole).empty());

    model<float> resumed(planted_task::modality_schema(), config, 99);  // other initial values: all must be restored
    cpu_trainer resuming(resumed, task_type::multiclass, options(split_dir, 0));
    const auto result = resuming.fit(train, &valid, interrupted.checkpoint_path());
    CHECK(result.steps == expected.steps);
    CHECK(differing_parameters(resumed, whole).empty());
    REQUIRE(result.history.size() == expected.history.size());
    for (std::size_t e = 0; e < result.history.size(); ++e) {
        CHECK(result.history[e].train_loss == expected.history[e].train_loss);
        CHECK(result.history[e].validation->metrics == expected.history[e].validation->metrics);
    }
    CHECK(result.best_epoch == expected.best_epoch);
    std::map<std::string, tensor<float>> moments_a, moments_b;
    uninterrupted.optimizer().for_each_state([&](const std::string& n, const tensor<float>& t) { moments_a.emplace(n, t); });
    resuming.optimizer().for_each_state([&](const std::string& n, const tensor<float>& t) { moments_b.emplace(n, t); });
    REQUIRE(moments_a.size() == moments_b.size());
    for (const auto& [name, t] : moments_a) CHECK(dm2s2::testing::max_abs_diff(t.values(), moments_b.at(name).values()) == 0.0);

    // The checkpoint reads as a plain safetensors state dict: HF parameter names and optimizer moments.
    const auto file = safetensors_file::load(interrupted.checkpoint_path());
    CHECK(file.contains("embeddings.word_embeddings.weight"));
    CHECK(file.contains("optimizer.encoder.layer.0.attention.self.query.weight.exp_avg_sq"));
    CHECK(file.metadata().count("dm2s2.trainer") == 1);
}

TEST_CASE("a training checkpoint that does not fit is refused and changes nothing")
{
    const auto train = planted_data(40, 31);
    const auto dir = dm2s2::testing::scratch_dir("checkpoint_refusals");
    const trainer_options options{.epochs = 1, .batch_size = 8, .seed = 2, .output_dir = dir, .log = nullptr};
    model<float> source(planted_task::modality_schema(), tiny_planted_config(0), 1);
    cpu_trainer(source, task_type::multiclass, options).fit(train);
    const auto path = dir / cpu_trainer::checkpoint_name;
    REQUIRE(fs::exists(path));

    auto other_config = tiny_planted_config(0);
    other_config.bert.intermediate_size = 48;
    model<float> other(planted_task::modality_schema(), other_config, 1);
    const auto resume = [&](model<float>& m, trainer_options o, const fs::path& from) {
        o.output_dir = dir / "resumed";
        return cpu_trainer(m, task_type::multiclass, o).fit(train, nullptr, from);
    };
    CHECK_THROWS_WITH_AS(resume(other, options, path),
                         doctest::Contains("another model configuration ('intermediate_size' differs)"), config_error);
    auto other_options = options;
    other_options.batch_size = 4;
    model<float> same(planted_task::modality_schema(), tiny_planted_config(0), 3);
    CHECK_THROWS_WITH_AS(resume(same, other_options, path), doctest::Contains("other trainer settings ('batch_size' differs)"),
                         config_error);

    // The same settings on other data: the checkpoint records the data's size and fingerprint.
    model<float> again(planted_task::modality_schema(), tiny_planted_config(0), 3);
    CHECK_THROWS_WITH_AS(cpu_trainer(again, task_type::multiclass,
                                     [&] {
                                         auto o = options;
                                         o.output_dir = dir / "resumed";
                                         return o;
                                     }())
                             .fit(planted_data(40, 32), nullptr, path),
                         doctest::Contains("other data ('data.training.fingerprint' differs)"), config_error);
    const auto valid = planted_data(10, 33);
    CHECK_THROWS_WITH_AS(cpu_trainer(again, task_type::multiclass,
                                     [&] {
                                         auto o = options;
                                         o.output_dir = dir / "resumed";
                                         return o;
                                     }())
                             .fit(train, &valid, path),
                         doctest::Contains("other data ('data.validation' differs)"), config_error);

    // Trainer metadata that is not a run's: numbers of the wrong kind, an inconsistent history.
    const auto with_trainer_state = [&](const std::string& name, const auto& edit) {
        const auto file = safetensors_file::load(path);
        safetensors_writer w;
        for (const auto& [key, value] : file.metadata()) w.set_metadata(key, value);
        auto state = nlohmann::json::parse(file.metadata().at("dm2s2.trainer"));
        edit(state);
        w.set_metadata("dm2s2.trainer", state.dump());
        for (const auto& e : file.entries()) {
            const auto raw = file.raw(e.name);
            w.add_raw(e.name, e.type, e.shape, std::vector<std::byte>(raw.begin(), raw.end()));
        }
        const auto edited = dir / (name + ".safetensors");
        w.write(edited);
        return edited;
    };
    CHECK_THROWS_WITH_AS(resume(same, options, with_trainer_state("epoch_float", [](auto& j) { j["epoch"] = 1e30; })),
                         doctest::Contains("metadata 'dm2s2.trainer': field 'epoch' must be a non-negative integer"),
                         format_error);
    CHECK_THROWS_WITH_AS(resume(same, options, with_trainer_state("best_epoch", [](auto& j) { j["best_epoch"] = 9; })),
                         doctest::Contains("best_epoch 9 is not among the 1 finished epochs"), format_error);
    CHECK_THROWS_WITH_AS(
        resume(same, options, with_trainer_state("history", [](auto& j) { j["history"].push_back(j["history"][0]); })),
        doctest::Contains("2 epochs in the history, epoch 1 of 1 next"), format_error);

    const auto bytes = read_file(path);
    const auto truncated = dir / "truncated.safetensors";
    write_file_atomically(truncated, std::span<const std::byte>(bytes).first(bytes.size() - 100));
    CHECK_THROWS_AS(resume(same, options, truncated), format_error);
    // None of the refusals touched a parameter.
    CHECK(differing_parameters(same, model<float>(planted_task::modality_schema(), tiny_planted_config(0), 3)).empty());
    CHECK(differing_parameters(again, model<float>(planted_task::modality_schema(), tiny_planted_config(0), 3)).empty());
    CHECK(differing_parameters(other, model<float>(planted_task::modality_schema(), other_config, 1)).empty());

    auto bad = train;
    bad.targets[3] = 7;
    CHECK_THROWS_WITH_AS(cpu_trainer(same, task_type::multiclass, options).fit(bad),
                         doctest::Contains("training data: loss: sample 3: class 7"), input_error);
    bad.targets = tensor<float>({39});
    CHECK_THROWS_WITH_AS(cpu_trainer(same, task_type::multiclass, options).fit(bad),
                         doctest::Contains("training data: 39 targets for 40 records"), shape_error);
}

TEST_CASE("a run whose loss or gradients turn non-finite stops naming the step, and its last checkpoint holds finite values")
{
    const auto train = planted_data(64, 41);
    for (const double clip : {1.0, 0.0}) {
        CAPTURE(clip);
        const auto dir = dm2s2::testing::scratch_dir("trainer_diverges");
        // A learning rate of 1e30 from the first step: the parameters grow until the forward pass overflows.
        model<float> m(planted_task::modality_schema(), tiny_planted_config(0), 4);
        cpu_trainer t(m, task_type::multiclass,
                      {.epochs = 4,
                       .batch_size = 8,
                       .learning_rate = 1e30,
                       .warmup_fraction = 0,
                       .max_gradient_norm = clip,
                       .seed = 3,
                       .output_dir = dir,
                       .checkpoint_every = 1,
                       .log = nullptr});
        std::string message;
        try {
            t.fit(train);
        } catch (const input_error& e) {
            message = e.what();
        }
        INFO(message);
        const std::string prefix = "training stopped at step ";
        REQUIRE(message.starts_with(prefix));
        const std::size_t step = std::stoul(message.substr(prefix.size()));
        REQUIRE(step >= 2);
        CHECK(message.find(t.checkpoint_path().string() + " holds step " + std::to_string(step - 1) + "): ") !=
              std::string::npos);
        CHECK((message.find("is not finite") != std::string::npos));
        // The checkpoint is the step before: every parameter finite, and a run resumed from it stops again.
        model<float> restored(planted_task::modality_schema(), tiny_planted_config(0), 9);
        adamw<float> optimizer;
        load_training_checkpoint(t.checkpoint_path(), restored, optimizer);
        CHECK(optimizer.steps() == step - 1);
        restored.for_each_parameter([&](const std::string& name, const tensor<float>& p) {
            CAPTURE(name);
            CHECK(std::all_of(p.values().begin(), p.values().end(), [](float v) { return std::isfinite(v); }));
        });
    }
}
