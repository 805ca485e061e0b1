#pragma once
/// \file
/// Training checkpoints: everything needed to resume a run, in one safetensors file written
/// atomically, so it is never seen half-written. Tensors: every parameter under its model name (so
/// PyTorch reads them as a state dict) and AdamW's moments as `optimizer.<name>.exp_avg` and
/// `optimizer.<name>.exp_avg_sq`. Metadata: `dm2s2.config` (the model's config.json), `dm2s2.optimizer`
/// (step count and settings) and `dm2s2.trainer` (whatever the trainer needs: position in the run,
/// generator states, history).

#include <filesystem>
#include <map>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "dm2s2/core/json.hpp"
#include "dm2s2/io/checkpoint.hpp"
#include "dm2s2/train/optimizer.hpp"

namespace dm2s2 {

namespace detail {

inline nlohmann::json adamw_to_json(const adamw_options& o, std::size_t steps)
{
    return {{"steps", steps}, {"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", o.weight_decay}};
}

/// The first key path where two JSON values differ ("" when equal).
inline std::string first_difference(const nlohmann::json& a, const nlohmann::json& b, const std::string& path = "")
{
    if (a.is_object() && b.is_object()) {
        for (const auto& [key, value] : a.items()) {
            if (!b.contains(key)) return path + key;
            if (auto d = first_difference(value, b[key], path + key + "."); !d.empty()) return d;
        }
        for (const auto& [key, value] : b.items())
            if (!a.contains(key)) return path + key;
        return "";
    }
    return a == b ? "" : (path.empty() ? "(value)" : path.substr(0, path.size() - 1));
}

inline const std::string& metadata_entry(const safetensors_file& file, const std::string& key)
{
    const auto it = file.metadata().find(key);
    if (it == file.metadata().end())
        throw format_error(file.source() + ": no '" + key + "' metadata (not a dm2s2 training checkpoint)");
    return it->second;
}

inline nlohmann::json parse_metadata_json(const safetensors_file& file, const std::string& key)
{
    return parse_json_text<format_error>(file.source() + ": metadata '" + key + "' is not valid JSON: ",
                                         metadata_entry(file, key));
}

}  // namespace detail

/// Writes the training state of `m` and `optimizer`, with `trainer_state`, to `path` atomically.
template <scalar T, class Backend>
void save_training_checkpoint(const std::filesystem::path& path, const model<T, Backend>& m, const adamw<T>& optimizer,
                              const nlohmann::json& trainer_state)
{
    safetensors_writer writer;
    writer.set_metadata("format", "pt");
    writer.set_metadata("dm2s2.config", model_config_to_json(m.config(), m.schema()).dump());
    writer.set_metadata("dm2s2.optimizer", detail::adamw_to_json(optimizer.settings(), optimizer.steps()).dump());
    writer.set_metadata("dm2s2.trainer", trainer_state.dump());
    m.for_each_parameter([&](const std::string& name, const tensor<T>& t) { writer.add(name, t); });
    optimizer.for_each_state([&](const std::string& name, const tensor<T>& t) { writer.add("optimizer." + name, t); });
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
    writer.write(path);
}

/// Restores `m` and `optimizer` from a file of `save_training_checkpoint` and returns the trainer's
/// state. The file must come from the same model configuration and optimizer settings (config_error
/// naming the first difference otherwise); every tensor is checked before anything is changed, so a
/// failure leaves `m` and `optimizer` as they were.
template <scalar T, class Backend>
nlohmann::json load_training_checkpoint(const std::filesystem::path& path, model<T, Backend>& m, adamw<T>& optimizer)
{
    const auto file = safetensors_file::load(path);
    const auto ours = model_config_to_json(m.config(), m.schema());
    const nlohmann::json theirs = detail::parse_metadata_json(file, "dm2s2.config");
    if (const auto d = detail::first_difference(theirs, ours); !d.empty())
        throw config_error(file.source() + ": written for another model configuration ('" + d + "' differs)");
    const nlohmann::json saved_optimizer = detail::parse_metadata_json(file, "dm2s2.optimizer");
    const auto steps = saved_optimizer.is_object() && saved_optimizer.contains("steps")
                           ? json_as<std::size_t>(saved_optimizer["steps"])
                           : std::nullopt;
    if (!steps) throw format_error(file.source() + ": metadata 'dm2s2.optimizer': 'steps' must be a non-negative integer");
    if (const auto d = detail::first_difference(saved_optimizer, detail::adamw_to_json(optimizer.settings(), *steps)); !d.empty())
        throw config_error(file.source() + ": written with other optimizer settings ('" + d + "' differs)");
    auto trainer_state = detail::parse_metadata_json(file, "dm2s2.trainer");

    auto values = detail::read_parameters<T>(file, std::as_const(m), "optimizer.");
    std::map<std::string, typename adamw<T>::moments> moments;
    std::size_t moment_tensors = 0;
    for (const auto& [name, value] : values) {
        const std::string first = "optimizer." + name + ".exp_avg", second = first + "_sq";
        const bool has_first = file.contains(first), has_second = file.contains(second);
        if (!has_first && !has_second && *steps == 0) continue;
        if (!has_first || !has_second) throw format_error(file.source() + ": no optimizer moments for '" + name + "'");
        auto& [m1, m2] = moments[name] = {file.template read<T>(first), file.template read<T>(second)};
        for (const auto* t : {&m1, &m2})
            if (t->shape() != value.shape())
                throw shape_error(file.source() + ": optimizer moment of '" + name + "' has shape " + to_string(t->shape()) +
                                  ", the parameter " + to_string(value.shape()));
        moment_tensors += 2;
    }
    if (moment_tensors + values.size() != file.entries().size())
        throw format_error(file.source() + ": optimizer tensors that belong to no parameter of this model");
    detail::assign_parameters<T>(m, values);
    optimizer.restore(*steps, std::move(moments));
    return trainer_state;
}

}  // namespace dm2s2
