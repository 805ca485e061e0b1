#pragma once
/// \file
/// Saving and loading a DM²S² model as a directory: `config.json` (the BERT fields at the top level,
/// as HuggingFace writes them, and the DM²S² settings and schema under "dm2s2") and `model.safetensors`
/// (every parameter under its name; the encoder's names are HuggingFace's, so the directory also loads
/// as a BERT checkpoint). Each file is replaced atomically; the tensors are written before the config.

#include <filesystem>
#include <map>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "dm2s2/core/json.hpp"
#include "dm2s2/io/hf_bert.hpp"
#include "dm2s2/io/safetensors.hpp"
#include "dm2s2/model/dm2s2_model.hpp"

namespace dm2s2 {

/// The schema as JSON: {"modalities": [{"name", "kind", "max_length", "dim", "categories", "mean", "stddev"}]}.
inline nlohmann::json schema_to_json(const schema& s)
{
    nlohmann::json modalities = nlohmann::json::array();
    for (const auto& m : s.modalities()) {
        nlohmann::json j = {{"name", m.name}, {"kind", to_string(m.kind)}, {"max_length", m.max_length}};
        if (m.kind == modality_kind::dense) j["dim"] = m.dim;
        if (m.kind == modality_kind::categorical) j["categories"] = m.categories;
        if (m.kind == modality_kind::numeric) j["mean"] = m.mean, j["stddev"] = m.stddev;
        modalities.push_back(j);
    }
    return {{"modalities", modalities}};
}

namespace detail {

/// Reads `key` of object `j` as T when present; errors name `where` and the key.
template <class T>
void read_field(const nlohmann::json& j, const char* key, T& field, const std::string& where)
{
    if (!j.contains(key)) return;
    const auto value = json_as<T>(j.at(key));
    if (!value)
        throw config_error(where + ": field '" + key + "' must be " + std::string(json_kind_name<T>()) + " (it is " +
                           j.at(key).dump() + ")");
    field = *value;
}

}  // namespace detail

/// Parses `schema_to_json`'s format; errors name `source` and the modality or field.
inline schema schema_from_json(const nlohmann::json& j, const std::string& source)
{
    if (!j.is_object() || !j.contains("modalities") || !j["modalities"].is_array())
        throw config_error(source + ": expected an object with a 'modalities' array");
    std::vector<modality_spec> specs;
    for (std::size_t i = 0; i < j["modalities"].size(); ++i) {
        const auto& m = j["modalities"][i];
        const std::string where = source + ": modalities[" + std::to_string(i) + "]";
        if (!m.is_object()) throw config_error(where + ": not an object");
        modality_spec spec;
        std::string kind;
        detail::read_field(m, "name", spec.name, where);
        detail::read_field(m, "kind", kind, where);
        const auto parsed = parse_modality_kind(kind);
        if (!parsed) throw config_error(where + ": unknown kind '" + kind + "'");
        spec.kind = *parsed;
        detail::read_field(m, "max_length", spec.max_length, where);
        detail::read_field(m, "dim", spec.dim, where);
        detail::read_field(m, "categories", spec.categories, where);
        detail::read_field(m, "mean", spec.mean, where);
        detail::read_field(m, "stddev", spec.stddev, where);
        specs.push_back(spec);
    }
    return schema(std::move(specs));
}

/// The model configuration and schema as a `config.json` object.
inline nlohmann::json model_config_to_json(const model_config& c, const schema& s)
{
    nlohmann::json j = c.bert.to_json();
    j["architectures"] = {"DM2S2Model"};
    j["dm2s2"] = {{"pooling", to_string(c.pooling)},
                  {"positions", c.positions == position_mode::global ? "global" : "per_modality"},
                  {"mra",
                   {{"attention_dim", c.mra.attention_dim},
                    {"shared_intra", c.mra.shared_intra},
                    {"residual", c.mra.residual},
                    {"inter_residual", c.mra.inter_residual ? nlohmann::json(*c.mra.inter_residual) : nlohmann::json()},
                    {"learned_residual", c.mra.learned_residual}}},
                  {"num_outputs", c.num_outputs},
                  {"head_dropout", c.head_dropout},
                  {"cls_id", c.cls_id},
                  {"sep_id", c.sep_id},
                  {"pad_id", c.pad_id},
                  {"schema", schema_to_json(s)}};
    return j;
}

/// Parses `model_config_to_json`'s format into the configuration and the schema.
inline std::pair<model_config, schema> model_config_from_json(const nlohmann::json& j, const std::string& source)
{
    if (!j.is_object() || !j.contains("dm2s2") || !j["dm2s2"].is_object())
        throw config_error(source + ": no 'dm2s2' section (not a dm2s2 model directory)");
    const auto& d = j["dm2s2"];
    const std::string where = source + ": dm2s2";
    model_config c;
    c.bert = bert_config::from_json(j, source);
    std::string pooling = "dm2s2", positions = "global";
    detail::read_field(d, "pooling", pooling, where);
    if (const auto k = parse_pooling_kind(pooling)) c.pooling = *k;
    else throw config_error(where + ": unknown pooling '" + pooling + "'");
    detail::read_field(d, "positions", positions, where);
    if (positions != "global" && positions != "per_modality")
        throw config_error(where + ": unknown positions '" + positions + "'");
    c.positions = positions == "global" ? position_mode::global : position_mode::per_modality;
    if (d.contains("mra")) {
        detail::read_field(d["mra"], "attention_dim", c.mra.attention_dim, where + ".mra");
        detail::read_field(d["mra"], "shared_intra", c.mra.shared_intra, where + ".mra");
        detail::read_field(d["mra"], "residual", c.mra.residual, where + ".mra");
        if (d["mra"].contains("inter_residual") && !d["mra"]["inter_residual"].is_null()) {
            double r = 0;
            detail::read_field(d["mra"], "inter_residual", r, where + ".mra");
            c.mra.inter_residual = r;
        }
        detail::read_field(d["mra"], "learned_residual", c.mra.learned_residual, where + ".mra");
    }
    detail::read_field(d, "num_outputs", c.num_outputs, where);
    detail::read_field(d, "head_dropout", c.head_dropout, where);
    detail::read_field(d, "cls_id", c.cls_id, where);
    detail::read_field(d, "sep_id", c.sep_id, where);
    detail::read_field(d, "pad_id", c.pad_id, where);
    if (!d.contains("schema")) throw config_error(where + ": missing 'schema'");
    return {c, schema_from_json(d["schema"], where + ".schema")};
}

/// Writes `m` into directory `dir` (created if needed), tensors stored as `storage`.
template <scalar T, class Backend>
void save_model(const model<T, Backend>& m, const std::filesystem::path& dir, dtype storage = dtype_of<T>())
{
    std::filesystem::create_directories(dir);
    safetensors_writer writer;
    writer.set_metadata("format", "pt");
    m.for_each_parameter([&](const std::string& name, const tensor<T>& t) { writer.add(name, t, storage); });
    writer.write(dir / "model.safetensors");
    write_file_atomically(dir / "config.json", model_config_to_json(m.config(), m.schema()).dump(2) + "\n");
}

namespace detail {

/// Reads a tensor for every parameter of `m` from `file`, checking names and shapes, without touching
/// `m` (so a failed read leaves it as it was). Tensors whose names start with `other_prefix` are left
/// to the caller; any other tensor is an error.
template <scalar T, class Model>
std::map<std::string, tensor<T>> read_parameters(const safetensors_file& file, Model& m, const std::string& other_prefix = {})
{
    std::map<std::string, tensor<T>> out;
    m.for_each_parameter([&](const std::string& name, const tensor<T>& target) {
        tensor<T> stored = file.template read<T>(name);
        if (stored.shape() != target.shape())
            throw shape_error(file.source() + ": tensor '" + name + "' has shape " + to_string(stored.shape()) +
                              ", the configuration needs " + to_string(target.shape()));
        out.emplace(name, std::move(stored));
    });
    for (const auto& e : file.entries())
        if (!out.count(e.name) && (other_prefix.empty() || e.name.rfind(other_prefix, 0) != 0))
            throw format_error(file.source() + ": unexpected tensor '" + e.name + "' for this configuration");
    return out;
}

/// Moves tensors read by `read_parameters` into the parameters of `m`.
template <scalar T, class Model>
void assign_parameters(Model& m, std::map<std::string, tensor<T>>& values)
{
    m.for_each_parameter([&](const std::string& name, tensor<T>& target) { target = std::move(values.at(name)); });
}

}  // namespace detail

/// Throws config_error when the model of `c` and `s` has a tensor that `tensor_bytes` bytes of tensor
/// data (in `holder`) cannot hold (see the `bert_config` overload): checked before the model is built.
inline void check_config_fits(const model_config& c, const schema& s, std::size_t tensor_bytes, const std::string& source,
                              const std::string& holder)
{
    auto bert = c.bert;
    bert.type_vocab_size = s.size();
    check_config_fits(bert, tensor_bytes, source, holder);
    const auto claim = [&](const std::string& what, std::initializer_list<std::size_t> factors) {
        detail::check_claim(source, what, factors, tensor_bytes, holder);
    };
    const std::size_t h = c.bert.hidden_size;
    for (const auto& m : s.modalities()) {
        claim("modality '" + m.name + "': categories × hidden_size", {m.categories, h});
        claim("modality '" + m.name + "': dim × hidden_size", {m.dim, h});
    }
    claim("attention_dim × hidden_size", {c.mra.attention_dim, h});
    claim("num_outputs × modalities × hidden_size", {c.num_outputs, std::max<std::size_t>(1, s.size()), h});
}

/// Reads a model written by `save_model`. Every parameter must be present with its shape, and the file
/// may hold nothing else; errors name the file and the tensor.
template <scalar T, host_backend_for<T> Backend = default_backend>
model<T, Backend> load_model(const std::filesystem::path& dir, Backend backend = {})
{
    const auto config_path = dir / "config.json";
    const auto [config, s] = model_config_from_json(read_json_file(config_path), config_path.string());
    const auto file = safetensors_file::load(dir / "model.safetensors");
    check_config_fits(config, s, file.data_bytes(), config_path.string(), file.source());
    model<T, Backend> m(s, config, 0, std::move(backend));
    auto values = detail::read_parameters<T>(file, std::as_const(m));
    detail::assign_parameters<T>(m, values);
    return m;
}

}  // namespace dm2s2
