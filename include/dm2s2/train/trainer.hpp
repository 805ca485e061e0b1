#pragma once
/// \file
/// `trainer`: the training loop of a DM²S² model (or a baseline). Seeded shuffling with batches
/// bucketed by packed length, AdamW with linear warm-up and decay, clipping, gradient accumulation,
/// dropout from its own generator, a progress display, evaluation after each epoch, early stopping on
/// a validation metric, the best model saved, and training checkpoints that resume bit for bit.

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/core/json.hpp"
#include "dm2s2/io/checkpoint.hpp"
#include "dm2s2/train/training_checkpoint.hpp"
#include "dm2s2/train/dataset.hpp"
#include "dm2s2/train/evaluation.hpp"
#include "dm2s2/train/progress.hpp"
#include "dm2s2/train/train_step.hpp"

namespace dm2s2 {

/// The validation metric early stopping and best-model selection follow by default: multiclass
/// `accuracy`, binary `roc_auc`, multilabel `micro_f1`, regression `rmse`.
constexpr std::string_view default_monitor(task_type task) noexcept
{
    switch (task) {
    case task_type::multiclass: return "accuracy";
    case task_type::binary: return "roc_auc";
    case task_type::multilabel: return "micro_f1";
    case task_type::regression: return "rmse";
    }
    return "loss";
}

/// True for metrics where smaller is better (`loss`, `rmse`, `mae`).
inline bool lower_is_better(std::string_view metric)
{
    return metric == "loss" || metric == "rmse" || metric == "mae";
}

/// Settings of a `trainer`.
struct trainer_options {
    std::size_t epochs = 3;
    std::size_t batch_size = 32;
    std::size_t accumulation = 1;  ///< micro-batches of `batch_size` per optimizer step
    std::size_t eval_batch_size = 64;
    double learning_rate = 1e-3;     ///< peak, after warm-up
    double warmup_fraction = 0.1;    ///< of all optimizer steps
    double max_gradient_norm = 1.0;  ///< 0 disables clipping
    adamw_options optimizer{};
    std::uint64_t seed = 0;              ///< drives shuffling and dropout
    std::size_t bucket_batches = 16;     ///< batches sorted by length together; 1 disables bucketing
    std::string monitor{};               ///< validation metric or "loss"; empty: `default_monitor(task)`
    std::size_t patience = 0;            ///< stop after this many epochs without improvement; 0 never stops
    std::filesystem::path output_dir{};  ///< the best (or last) model and the training checkpoint; empty: none
    std::size_t checkpoint_every = 0;    ///< optimizer steps between training checkpoints; 0: at epoch ends only
    std::size_t stop_after_steps = 0;    ///< end the run after this many optimizer steps, checkpointed (0: no limit)
    progress_style progress = progress_style::automatic;
    std::ostream* log = &std::cout;  ///< where progress goes
};

/// One epoch of a run.
struct epoch_summary {
    std::size_t epoch = 0;  ///< 1-based
    double train_loss = 0;  ///< mean over the epoch's records
    double seconds = 0;
    std::optional<evaluation> validation;
};

/// The outcome of `trainer::fit`.
struct training_result {
    std::vector<epoch_summary> history;
    std::string monitor;
    std::optional<std::size_t> best_epoch;  ///< 1-based; set when there is validation data
    double best_value = std::numeric_limits<double>::quiet_NaN();
    bool stopped_early = false;
    bool interrupted = false;  ///< ended by `stop_after_steps`; resume from the checkpoint
    std::size_t steps = 0;
};

inline nlohmann::json to_json(const epoch_summary& e)
{
    nlohmann::json j = {{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"seconds", e.seconds}};
    if (e.validation) j["validation"] = {{"loss", e.validation->loss}, {"metrics", e.validation->metrics}};
    return j;
}

namespace detail {

/// Field `key` of object `j` as T (`json_as`); throws format_error naming `where` and the key.
template <class T>
T json_field(const nlohmann::json& j, const char* key, const std::string& where)
{
    if (!j.is_object() || !j.contains(key)) throw format_error(where + ": missing field '" + key + "'");
    const auto value = json_as<T>(j[key]);
    if (!value) throw format_error(where + ": field '" + key + "' must be " + std::string(json_kind_name<T>()));
    return *value;
}

}  // namespace detail

/// Reads `to_json`'s object; errors (format_error) name `where`.
inline epoch_summary epoch_summary_from_json(const nlohmann::json& j, const std::string& where = "epoch summary")
{
    using detail::json_field;
    epoch_summary e{json_field<std::size_t>(j, "epoch", where),
                    json_field<double>(j, "train_loss", where),
                    json_field<double>(j, "seconds", where),
                    {}};
    if (j.is_object() && j.contains("validation")) {
        const auto& v = j["validation"];
        evaluation result{json_field<double>(v, "loss", where + ": validation"), {}};
        if (!v.contains("metrics") || !v["metrics"].is_object())
            throw format_error(where + ": validation: missing object 'metrics'");
        for (const auto& [name, value] : v["metrics"].items())
            result.metrics[name] = json_field<double>(v["metrics"], name.c_str(), where + ": validation: metrics");
        e.validation = std::move(result);
    }
    return e;
}

/// Trains `model` on a `dataset` (see `trainer_options`). The model object ends with the parameters of
/// the last epoch run; with validation data, the best epoch's model is the one in `output_dir`.
///
/// With a communicator of several ranks (data-parallel training, one replica per rank), every rank
/// runs `fit` on the same data: each derives the same epoch plan from the seed and takes its share of
/// every global batch; gradients are summed over the ranks each step, so every rank makes the same
/// update. Rank 0 starts every rank from its parameters, draws the progress and writes the model and
/// the checkpoints; every rank resumes from the same checkpoint. Validation is shared among the ranks.
template <scalar T, class Backend, class Communicator = single_process>
    requires optimizing_backend_for<Backend, T> && communicator_for<Communicator, T, backend_space<Backend>>
class trainer {
public:
    using space = backend_space<Backend>;

    /// File name of the training checkpoint inside `output_dir`.
    static constexpr const char* checkpoint_name = "training_state.safetensors";

    trainer(model<T, Backend>& m, task_type task, trainer_options options, Communicator comm = {})
        : model_(m), task_(task), options_(std::move(options)), optimizer_(options_.optimizer), comm_(std::move(comm))
    {
        if (options_.epochs == 0 || options_.batch_size == 0 || options_.accumulation == 0 || options_.eval_batch_size == 0)
            throw config_error("trainer: epochs, batch_size, accumulation and eval_batch_size must be positive");
        if (!(options_.learning_rate > 0) || !(options_.warmup_fraction >= 0 && options_.warmup_fraction <= 1))
            throw config_error("trainer: learning_rate must be positive and warmup_fraction in [0, 1]");
        if ((options_.checkpoint_every || options_.stop_after_steps) && options_.output_dir.empty())
            throw config_error("trainer: checkpoint_every and stop_after_steps need an output_dir");
        if (options_.monitor.empty()) options_.monitor = std::string(default_monitor(task));
        if (comm_.rank() != 0) options_.log = nullptr;  // rank 0 draws the progress
        if (options_.log == nullptr) options_.progress = progress_style::none;
    }

    /// The ranks this trainer's run is shared among.
    const Communicator& communicator() const noexcept { return comm_; }

    const trainer_options& options() const noexcept { return options_; }
    const adamw<T, space>& optimizer() const noexcept { return optimizer_; }

    /// Path of the training checkpoint (in `output_dir`).
    std::filesystem::path checkpoint_path() const { return options_.output_dir / checkpoint_name; }

    /// Trains from the start, or from `resume_from` (a training checkpoint of a run with the same model
    /// configuration, options and data), and returns the history. A step whose loss or gradients are
    /// not finite ends the run with input_error naming the step and the last checkpoint, which holds
    /// the last good state.
    training_result fit(const dataset<T>& train, const dataset<T>* validation = nullptr,
                        const std::filesystem::path& resume_from = {})
    {
        const std::size_t outputs = model_.config().num_outputs;
        train.check(task_, outputs, "training data");
        if (validation != nullptr) validation->check(task_, outputs, "validation data");
        std::vector<std::size_t> lengths;
        for (const auto& r : train.records) lengths.push_back(packed_length(model_.schema(), r));
        const std::size_t batches_per_epoch = (train.size() + options_.batch_size - 1) / options_.batch_size;
        const std::size_t steps_per_epoch = (batches_per_epoch + options_.accumulation - 1) / options_.accumulation;
        const std::size_t total_steps = steps_per_epoch * options_.epochs;
        const auto warmup_steps =
            static_cast<std::size_t>(std::llround(options_.warmup_fraction * static_cast<double>(total_steps)));

        data_identity_ = {{"training", {{"records", train.size()}, {"fingerprint", train.fingerprint()}}},
                          {"validation", validation == nullptr ? nlohmann::json()
                                                               : nlohmann::json{{"records", validation->size()},
                                                                                {"fingerprint", validation->fingerprint()}}}};
        last_checkpoint_step_.reset();
        run_state state;
        state.dropout = random_generator(derived_seed(1));
        if (!resume_from.empty()) state = resume(resume_from);
        else broadcast_parameters();
        training_result result;
        result.monitor = options_.monitor;
        progress_meter meter(options_.log ? *options_.log : std::cout, options_.progress);
        auto gradients = model_.zero_gradients();  // one buffer for every step

        for (; state.epoch < options_.epochs; ++state.epoch) {
            if (options_.patience != 0 && state.stale_epochs >= options_.patience) {
                result.stopped_early = true;
                break;
            }
            random_generator shuffle(derived_seed(2 + state.epoch));
            const auto plan = epoch_batches(lengths, options_.batch_size, options_.bucket_batches, shuffle);
            meter.start_epoch(state.epoch + 1, options_.epochs, steps_per_epoch, state.batch / options_.accumulation);
            const auto epoch_start = std::chrono::steady_clock::now();
            for (; state.batch < plan.size();) {
                const std::size_t end = std::min(plan.size(), state.batch + options_.accumulation);
                std::vector<packed_batch> batches;
                std::vector<tensor<T>> targets;
                std::vector<batch_offset> offsets;
                std::size_t records = 0;
                for (std::size_t k = state.batch; k < end; ++k) {
                    add_share(train, plan[k], batches, targets, offsets);
                    records += plan[k].size();
                }
                const double lr = options_.learning_rate * linear_schedule(optimizer_.steps(), warmup_steps, total_steps);
                const std::size_t step = optimizer_.steps() + 1;
                step_report report;
                try {
                    report = train_step(model_, optimizer_, std::span<const packed_batch>(batches), task_,
                                        std::span<const tensor<T>>(targets),
                                        {.learning_rate = lr,
                                         .max_gradient_norm = options_.max_gradient_norm,
                                         .dropout_rng = &state.dropout,
                                         .global_records = records,
                                         .offsets = std::span<const batch_offset>(offsets)},
                                        gradients, comm_);
                    if (!std::isfinite(report.loss)) throw input_error("the training loss is not finite");
                } catch (const input_error& e) {
                    throw input_error(stopped_at(step, state.epoch) + e.what());
                }
                state.batch = end;
                state.loss_sum += report.loss * static_cast<double>(records);
                state.loss_records += records;
                meter.update((end + options_.accumulation - 1) / options_.accumulation, records,
                             state.loss_sum / static_cast<double>(state.loss_records));
                const std::size_t steps = optimizer_.steps();
                const bool stop = options_.stop_after_steps != 0 && steps >= options_.stop_after_steps;
                if (writes_files() &&
                    (stop || (options_.checkpoint_every != 0 && steps % options_.checkpoint_every == 0 && end < plan.size()))) {
                    state.seconds += elapsed(epoch_start);
                    save_checkpoint(state);
                    state.seconds -= elapsed(epoch_start);
                }
                if (stop) {
                    result.interrupted = true;
                    return finish(result, state);
                }
            }

            epoch_summary summary{state.epoch + 1, state.loss_sum / static_cast<double>(state.loss_records),
                                  state.seconds + elapsed(epoch_start), std::nullopt};
            std::ostringstream line;
            line << "train loss " << summary.train_loss;
            if (validation != nullptr) {
                summary.validation = evaluate(model_, *validation, task_, options_.eval_batch_size, comm_);
                const double value = monitored_value(*summary.validation);
                line << ", validation loss " << summary.validation->loss;
                for (const auto& [name, v] : summary.validation->metrics) line << ", " << name << ' ' << v;
                if (!state.best_epoch || improves(value, state.best_value)) {
                    state.best_value = value;
                    state.best_epoch = summary.epoch;
                    state.stale_epochs = 0;
                    if (writes_files()) with_host_model([&](const auto& m) { save_model(m, options_.output_dir); });
                    line << " (best)";
                } else {
                    ++state.stale_epochs;
                }
            } else if (writes_files()) {
                with_host_model([&](const auto& m) { save_model(m, options_.output_dir); });
            }
            line << ", " << summary.seconds << " s";
            meter.finish_epoch(line.str());
            state.history.push_back(summary);
            state.batch = 0;
            state.loss_sum = 0;
            state.loss_records = 0;
            state.seconds = 0;
            if (writes_files()) {
                ++state.epoch;  // the checkpoint records the next epoch to run
                save_checkpoint(state);
                --state.epoch;
            }
        }
        return finish(result, state);
    }

private:
    /// Whether this rank writes the model and the checkpoints: rank 0, when there is an output directory.
    bool writes_files() const { return !options_.output_dir.empty() && comm_.rank() == 0; }

    /// Appends this rank's share of the global micro-batch `indices` (records of `data`): a contiguous
    /// slice of ⌊n/size⌋ or ⌈n/size⌉ records, packed (empty when it has none), its targets, and where
    /// it lies in the micro-batch.
    void add_share(const dataset<T>& data, std::span<const std::size_t> indices, std::vector<packed_batch>& batches,
                   std::vector<tensor<T>>& targets, std::vector<batch_offset>& offsets) const
    {
        const std::size_t n = indices.size(), ranks = comm_.size(), r = comm_.rank();
        const std::size_t first = r * n / ranks, last = (r + 1) * n / ranks;
        const auto share = indices.subspan(first, last - first);
        batches.push_back(share.empty() ? packed_batch{} : model_.pack(data.select_records(share)));
        targets.push_back(share.empty() ? tensor<T>{} : data.select_targets(share));
        offsets.push_back(first == 0 ? batch_offset{}
                                     : model_.offset_after(model_.pack(data.select_records(indices.subspan(0, first)))));
    }

    /// Starts every rank from rank 0's parameters.
    void broadcast_parameters()
    {
        if (comm_.size() == 1) return;
        model_.for_each_parameter([&](const std::string&, tensor<T, space>& t) { comm_.broadcast(t.data(), t.size(), 0); });
    }

    /// Where a run is: the position in the epoch plan, the dropout generator, the epoch's running loss,
    /// the best validation value so far and the finished epochs.
    struct run_state {
        std::size_t epoch = 0, batch = 0;
        random_generator dropout;
        double loss_sum = 0, seconds = 0;
        std::size_t loss_records = 0;
        std::optional<std::size_t> best_epoch;
        double best_value = 0;
        std::size_t stale_epochs = 0;
        std::vector<epoch_summary> history;
    };

    /// "training stopped at step N (epoch E; <where the last checkpoint is>): ", the start of the
    /// message of an error that ends a run.
    std::string stopped_at(std::size_t step, std::size_t epoch) const
    {
        std::string where = "no training checkpoint written";
        if (last_checkpoint_step_) where = checkpoint_path().string() + " holds step " + std::to_string(*last_checkpoint_step_);
        return "training stopped at step " + std::to_string(step) + " (epoch " + std::to_string(epoch + 1) + "; " + where + "): ";
    }

    /// The trainer settings a checkpoint must share with the run that resumes it, the training and
    /// validation data's size and fingerprint among them.
    nlohmann::json run_settings() const
    {
        return {{"data", data_identity_},
                {"epochs", options_.epochs},
                {"batch_size", options_.batch_size},
                {"accumulation", options_.accumulation},
                {"learning_rate", options_.learning_rate},
                {"warmup_fraction", options_.warmup_fraction},
                {"max_gradient_norm", options_.max_gradient_norm},
                {"seed", options_.seed},
                {"bucket_batches", options_.bucket_batches},
                {"monitor", options_.monitor},
                {"task", std::string(to_string(task_))}};
    }

    void save_checkpoint(const run_state& s)
    {
        nlohmann::json history = nlohmann::json::array();
        for (const auto& e : s.history) history.push_back(to_json(e));
        const nlohmann::json j = {
            {"settings", run_settings()}, {"epoch", s.epoch},
            {"batch", s.batch},           {"dropout_generator", s.dropout.state()},
            {"loss_sum", s.loss_sum},     {"loss_records", s.loss_records},
            {"seconds", s.seconds},       {"best_epoch", s.best_epoch ? nlohmann::json(*s.best_epoch) : nlohmann::json()},
            {"best_value", s.best_value}, {"stale_epochs", s.stale_epochs},
            {"history", history}};
        if constexpr (host_accessible_space<space>) {
            save_training_checkpoint(checkpoint_path(), model_, optimizer_, j);
        } else {
            const adamw<T> optimizer(optimizer_, [this](const tensor<T, space>& t) { return model_.backend().download(t); });
            with_host_model([&](const auto& m) { save_training_checkpoint(checkpoint_path(), m, optimizer, j); });
        }
        last_checkpoint_step_ = optimizer_.steps();
    }

    /// Calls `f` with the model's parameters on the host, for files: the model itself, or a copy
    /// downloaded from the backend's memory.
    template <class F>
    void with_host_model(F&& f) const
    {
        if constexpr (host_accessible_space<space>) f(std::as_const(model_));
        else f(model<T, reference_backend>(model_, reference_backend{}));
    }

    run_state resume(const std::filesystem::path& path)
    {
        // Parse into host copies first: a malformed trainer section leaves the model and optimizer untouched.
        auto staged_model = [&] {
            if constexpr (host_accessible_space<space>) return model_;
            else return model<T, reference_backend>(model_, reference_backend{});
        }();
        adamw<T> staged_optimizer(options_.optimizer);
        const nlohmann::json j = load_training_checkpoint(path, staged_model, staged_optimizer);
        run_state s;
        const std::string where = path.string() + ": metadata 'dm2s2.trainer'";
        using detail::json_field;
        if (!j.is_object() || !j.contains("settings")) throw format_error(where + ": missing field 'settings'");
        if (const auto d = detail::first_difference(j["settings"], run_settings()); !d.empty())
            throw config_error(path.string() + ": written by a run with other " +
                               (d.starts_with("data.") ? "data" : "trainer settings") + " ('" + d + "' differs)");
        s.epoch = json_field<std::size_t>(j, "epoch", where);
        s.batch = json_field<std::size_t>(j, "batch", where);
        const auto& generator = j.contains("dropout_generator") ? j["dropout_generator"] : nlohmann::json();
        if (!generator.is_array() || generator.size() != 4)
            throw format_error(where + ": field 'dropout_generator' must be an array of four non-negative integers");
        std::array<std::uint64_t, 4> words{};
        for (std::size_t i = 0; i < 4; ++i) words[i] = json_field<std::uint64_t>({{"word", generator[i]}}, "word", where);
        s.dropout.set_state(words);
        s.loss_sum = json_field<double>(j, "loss_sum", where);
        s.loss_records = json_field<std::size_t>(j, "loss_records", where);
        s.seconds = json_field<double>(j, "seconds", where);
        if (!j.contains("best_epoch") || !j["best_epoch"].is_null())
            s.best_epoch = json_field<std::size_t>(j, "best_epoch", where);
        s.best_value = json_field<double>(j, "best_value", where);
        s.stale_epochs = json_field<std::size_t>(j, "stale_epochs", where);
        if (!j.contains("history") || !j["history"].is_array()) throw format_error(where + ": missing array 'history'");
        for (const auto& e : j["history"]) s.history.push_back(epoch_summary_from_json(e, where + ": history"));
        if (s.history.size() != s.epoch || s.epoch > options_.epochs)
            throw format_error(where + ": " + std::to_string(s.history.size()) + " epochs in the history, epoch " +
                               std::to_string(s.epoch) + " of " + std::to_string(options_.epochs) + " next");
        if (s.best_epoch && (*s.best_epoch == 0 || *s.best_epoch > s.history.size()))
            throw format_error(where + ": best_epoch " + std::to_string(*s.best_epoch) + " is not among the " +
                               std::to_string(s.history.size()) + " finished epochs");
        if constexpr (host_accessible_space<space>) {
            model_ = std::move(staged_model);
            optimizer_ = std::move(staged_optimizer);
        } else {
            const auto& backend = model_.backend();
            model_ = model<T, Backend>(staged_model, backend);
            optimizer_ = adamw<T, space>(staged_optimizer, [&](const tensor<T>& t) { return backend.upload(t); });
        }
        last_checkpoint_step_ = optimizer_.steps();
        return s;
    }

    training_result& finish(training_result& result, const run_state& s) const
    {
        result.history = s.history;
        result.best_epoch = s.best_epoch;
        if (s.best_epoch) result.best_value = s.best_value;
        result.steps = optimizer_.steps();
        return result;
    }

    double monitored_value(const evaluation& e) const
    {
        if (options_.monitor == "loss") return e.loss;
        const auto it = e.metrics.find(options_.monitor);
        if (it != e.metrics.end()) return it->second;
        std::string known = "loss";
        for (const auto& [name, v] : e.metrics) known += ", " + name;
        throw config_error("trainer: monitor '" + options_.monitor + "' is not among the validation metrics (" + known + ")");
    }

    bool improves(double value, double best) const { return lower_is_better(options_.monitor) ? value < best : value > best; }

    std::uint64_t derived_seed(std::uint64_t stream) const { return options_.seed ^ (stream * 0x9e3779b97f4a7c15ULL); }

    static double elapsed(std::chrono::steady_clock::time_point since)
    {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
    }

    model<T, Backend>& model_;
    task_type task_;
    trainer_options options_;
    adamw<T, space> optimizer_;
    Communicator comm_;
    nlohmann::json data_identity_;                     ///< the data of the run in `fit` (`run_settings`)
    std::optional<std::size_t> last_checkpoint_step_;  ///< the step of the checkpoint written or resumed last
};

}  // namespace dm2s2
