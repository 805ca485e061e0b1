#pragma once
/// \file
/// Loading a HuggingFace BERT checkpoint directory (`config.json` with `model.safetensors`, or a
/// sharded `model.safetensors.index.json`) into a `bert_model`, and the name mapping it needs:
/// an optional `bert.` prefix, `gamma`/`beta` for LayerNorm weight/bias, `cls.*` heads and
/// `embeddings.position_ids` ignored.

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dm2s2/core/json.hpp"
#include "dm2s2/io/safetensors.hpp"
#include "dm2s2/model/bert_model.hpp"

namespace dm2s2 {

/// What loading a checkpoint did besides copying tensors.
struct hf_load_report {
    std::vector<std::string> loaded;            ///< model parameters filled from the checkpoint
    std::vector<std::string> ignored;           ///< checkpoint tensors deliberately skipped (cls.*, position_ids)
    std::vector<std::string> unused;            ///< checkpoint tensors the model has no place for
    std::vector<std::string> left_initialized;  ///< optional model parameters absent from the checkpoint (pooler)
    std::vector<std::string> notes;             ///< adaptations, e.g. token-type rows extended
};

/// Reads and parses a JSON file; errors name the file.
inline nlohmann::json read_json_file(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw format_error(path.string() + ": cannot open");
    const std::string text(std::istreambuf_iterator<char>(in), {});
    if (in.bad()) throw format_error(path.string() + ": read failed");
    return parse_json_text<format_error>(path.string() + ": invalid JSON: ", text);
}

namespace detail {

/// Throws config_error naming `source` and `what` unless the product of `factors` is at most
/// `budget` (computed without overflow).
inline void check_claim(const std::string& source, const std::string& what, std::initializer_list<std::size_t> factors,
                        std::size_t budget, const std::string& holder)
{
    std::size_t product = 1;
    bool overflow = false;
    for (const std::size_t f : factors) {
        if (f != 0 && product > std::numeric_limits<std::size_t>::max() / f) overflow = true;
        else product *= f;
    }
    if (overflow || product > budget)
        throw config_error(source + ": " + what + " claims " +
                           (overflow ? std::string("more than 2^64") : std::to_string(product)) + " parameters, more than " +
                           holder + " holds (" + std::to_string(budget) +
                           " bytes of tensors): the configuration does not belong to these tensors");
}

}  // namespace detail

/// Throws config_error when a BERT of `c` has a tensor that `tensor_bytes` bytes of tensor data (in
/// `holder`) cannot hold, at one byte per element at least. Checked before the model is built, so that
/// a config.json cannot make a loader allocate more than a small multiple of the files it comes with.
inline void check_config_fits(const bert_config& c, std::size_t tensor_bytes, const std::string& source,
                              const std::string& holder)
{
    const auto claim = [&](const std::string& what, std::initializer_list<std::size_t> factors) {
        detail::check_claim(source, what, factors, tensor_bytes, holder);
    };
    const std::size_t h = c.hidden_size;
    claim("vocab_size × hidden_size", {c.vocab_size, h});
    claim("max_position_embeddings × hidden_size", {c.max_position_embeddings, h});
    claim("type_vocab_size × hidden_size", {c.type_vocab_size, h});
    claim("hidden_size × intermediate_size", {h, c.intermediate_size});
    claim("hidden_size × hidden_size", {h, h});
    claim("num_hidden_layers × hidden_size", {c.num_hidden_layers, h});
}

/// The `bert_config` of a checkpoint directory's `config.json`.
inline bert_config read_hf_bert_config(const std::filesystem::path& dir)
{
    const auto path = dir / "config.json";
    return bert_config::from_json(read_json_file(path), path.string());
}

/// The canonical (bare, HF-current) name of a checkpoint tensor name; empty when it is to be ignored.
inline std::string canonical_bert_name(std::string name)
{
    if (name.rfind("bert.", 0) == 0) name.erase(0, 5);
    if (name.rfind("cls.", 0) == 0 || name == "embeddings.position_ids") return {};
    const auto replace_suffix = [&](const std::string& from, const std::string& to) {
        if (name.size() >= from.size() && name.compare(name.size() - from.size(), from.size(), from) == 0)
            name.replace(name.size() - from.size(), from.size(), to);
    };
    replace_suffix("LayerNorm.gamma", "LayerNorm.weight");
    replace_suffix("LayerNorm.beta", "LayerNorm.bias");
    return name;
}

/// All tensors of a checkpoint directory, indexed by canonical name.
class hf_checkpoint {
public:
    explicit hf_checkpoint(const std::filesystem::path& dir) : dir_(dir)
    {
        const auto single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
        if (std::filesystem::exists(single)) {
            files_.push_back(safetensors_file::load(single));
            source_ = single.string();
        } else if (std::filesystem::exists(index)) {
            load_shards(index);
            source_ = index.string();
        } else {
            throw format_error(dir.string() +
                               ": no model.safetensors or model.safetensors.index.json "
                               "(only safetensors checkpoints are supported)");
        }
        for (std::size_t f = 0; f < files_.size(); ++f)
            for (const auto& e : files_[f].entries()) {
                const std::string canonical = canonical_bert_name(e.name);
                if (canonical.empty()) {
                    ignored_.push_back(e.name);
                    continue;
                }
                if (!by_name_.emplace(canonical, location{f, e.name}).second)
                    throw format_error(files_[f].source() + ": tensor '" + e.name + "' duplicates '" +
                                       by_name_.at(canonical).name + "' after name mapping");
            }
    }

    bool contains(const std::string& canonical) const { return by_name_.count(canonical) != 0; }
    /// Bytes of tensor data in all the checkpoint's files.
    std::size_t tensor_bytes() const
    {
        std::size_t bytes = 0;
        for (const auto& f : files_) bytes += f.data_bytes();
        return bytes;
    }
    /// The file (or index) the tensors come from, for messages.
    const std::string& source() const noexcept { return source_; }
    const safetensors_file& file_of(const std::string& canonical) const { return files_[by_name_.at(canonical).file]; }
    const std::string& stored_name(const std::string& canonical) const { return by_name_.at(canonical).name; }
    const std::vector<std::string>& ignored() const { return ignored_; }
    std::vector<std::string> canonical_names() const
    {
        std::vector<std::string> names;
        for (const auto& [name, where] : by_name_) names.push_back(name);
        return names;
    }

private:
    struct location {
        std::size_t file;
        std::string name;
    };

    void load_shards(const std::filesystem::path& index)
    {
        const nlohmann::json j = read_json_file(index);
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            throw format_error(index.string() + ": missing object 'weight_map'");
        std::map<std::string, std::vector<std::string>> names_by_shard;
        for (const auto& [name, shard] : j["weight_map"].items()) {
            if (!shard.is_string()) throw format_error(index.string() + ": weight_map['" + name + "'] is not a string");
            const std::string file = shard.get<std::string>();
            if (file.empty() || file.find_first_of(std::string("/\\\0", 3)) != std::string::npos || file == "." || file == "..")
                throw format_error(index.string() + ": weight_map['" + name + "'] names " + nlohmann::json(file).dump() +
                                   " (JSON-quoted), which is not a file in the checkpoint directory");
            names_by_shard[file].push_back(name);
        }
        for (const auto& [file, names] : names_by_shard) {
            files_.push_back(safetensors_file::load(dir_ / file));
            for (const auto& name : names)
                if (!files_.back().contains(name))
                    throw format_error(files_.back().source() + ": tensor '" + name + "' listed in " + index.string() +
                                       " is not in this shard");
        }
    }

    std::filesystem::path dir_;
    std::string source_;
    std::vector<safetensors_file> files_;
    std::map<std::string, location> by_name_;
    std::vector<std::string> ignored_;
};

/// Copies a checkpoint's BERT tensors into `model` (anything with `for_each_parameter` using BERT names).
/// Every embedding and encoder parameter must be present with its exact shape, except that
/// `token_type_embeddings` may have fewer rows than the model (the extra rows are copies of the last
/// one) or more (the first rows are taken). The pooler is optional.
template <scalar T, class Model>
hf_load_report load_bert_parameters(Model& model, const hf_checkpoint& checkpoint)
{
    hf_load_report report;
    report.ignored = checkpoint.ignored();
    std::set<std::string> used;
    model.for_each_parameter([&](const std::string& name, tensor<T>& target) {
        if (!checkpoint.contains(name)) {
            if (name.rfind("pooler.", 0) == 0) {
                report.left_initialized.push_back(name);
                return;
            }
            throw format_error("checkpoint is missing tensor '" + name + "' (shape " + to_string(target.shape()) + ")");
        }
        const auto& file = checkpoint.file_of(name);
        tensor<T> source = file.template read<T>(checkpoint.stored_name(name));
        const bool type_rows = name == "embeddings.token_type_embeddings.weight" && source.rank() == 2 && target.rank() == 2 &&
                               source.dim(1) == target.dim(1) && source.dim(0) > 0;
        if (type_rows && source.dim(0) != target.dim(0)) {
            const std::size_t cols = target.dim(1);
            for (std::size_t r = 0; r < target.dim(0); ++r)
                std::copy_n(source.row(std::min(r, source.dim(0) - 1)), cols, target.row(r));
            report.notes.push_back("token_type_embeddings: checkpoint has " + std::to_string(source.dim(0)) + " rows, model " +
                                   std::to_string(target.dim(0)) +
                                   (source.dim(0) < target.dim(0) ? "; extra rows copy the last one" : "; first rows taken"));
        } else {
            if (source.shape() != target.shape())
                throw shape_error(file.source() + ": tensor '" + checkpoint.stored_name(name) + "' has shape " +
                                  to_string(source.shape()) + ", the model expects " + to_string(target.shape()));
            target = std::move(source);
        }
        report.loaded.push_back(name);
        used.insert(name);
    });
    for (const auto& name : checkpoint.canonical_names())
        if (!used.count(name)) report.unused.push_back(name);
    return report;
}

/// Builds a `bert_model` from a HuggingFace checkpoint directory.
template <scalar T, host_backend_for<T> Backend = default_backend>
bert_model<T, Backend> load_hf_bert(const std::filesystem::path& dir, hf_load_report* report = nullptr, Backend backend = {})
{
    const auto config = read_hf_bert_config(dir);
    const hf_checkpoint checkpoint(dir);
    check_config_fits(config, checkpoint.tensor_bytes(), (dir / "config.json").string(), checkpoint.source());
    bert_model<T, Backend> model(config, std::move(backend));
    auto r = load_bert_parameters<T>(model, checkpoint);
    if (report != nullptr) *report = std::move(r);
    return model;
}

}  // namespace dm2s2
