#pragma once
/// \file
/// `bert_config`: the hyper-parameters of a BERT encoder, read from and written to HuggingFace's
/// `config.json` field names.

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// Hyper-parameters of the BERT encoder (HuggingFace `BertConfig` names and defaults).
struct bert_config {
    std::size_t vocab_size = 30522;
    std::size_t hidden_size = 768;
    std::size_t num_hidden_layers = 12;
    std::size_t num_attention_heads = 12;
    std::size_t intermediate_size = 3072;
    std::size_t max_position_embeddings = 512;
    std::size_t type_vocab_size = 2;
    double layer_norm_eps = 1e-12;
    double hidden_dropout_prob = 0.1;
    double attention_probs_dropout_prob = 0.1;
    double initializer_range = 0.02;
    std::string hidden_act = "gelu";

    std::size_t head_size() const { return hidden_size / num_attention_heads; }

    /// Throws config_error (prefixed with `source`) unless the configuration is usable.
    void validate(const std::string& source = "bert_config") const
    {
        const auto fail = [&](const std::string& what) { throw config_error(source + ": " + what); };
        if (vocab_size == 0 || hidden_size == 0 || num_attention_heads == 0 || intermediate_size == 0 ||
            max_position_embeddings == 0 || type_vocab_size == 0)
            fail(
                "vocab_size, hidden_size, num_attention_heads, intermediate_size, max_position_embeddings and "
                "type_vocab_size must all be positive");
        if (hidden_size % num_attention_heads != 0)
            fail("hidden_size " + std::to_string(hidden_size) + " is not a multiple of num_attention_heads " +
                 std::to_string(num_attention_heads));
        if (hidden_act != "gelu") fail("hidden_act '" + hidden_act + "' is not supported (only \"gelu\", the erf form)");
        if (!(layer_norm_eps > 0)) fail("layer_norm_eps must be positive");
        for (double p : {hidden_dropout_prob, attention_probs_dropout_prob})
            if (!(p >= 0 && p < 1)) fail("dropout probabilities must lie in [0, 1)");
    }

    /// Reads the fields of a HuggingFace `config.json`; absent fields keep their defaults.
    static bert_config from_json(const nlohmann::json& j, const std::string& source = "config.json")
    {
        if (!j.is_object()) throw config_error(source + ": not a JSON object");
        bert_config c;
        const auto read_size = [&](const char* key, std::size_t& field) {
            if (!j.contains(key) || j[key].is_null()) return;
            if (!j[key].is_number_unsigned()) throw config_error(source + ": field '" + key + "' must be a non-negative integer");
            field = j[key].get<std::size_t>();
        };
        const auto read_real = [&](const char* key, double& field) {
            if (!j.contains(key) || j[key].is_null()) return;
            if (!j[key].is_number()) throw config_error(source + ": field '" + key + "' must be a number");
            field = j[key].get<double>();
        };
        read_size("vocab_size", c.vocab_size);
        read_size("hidden_size", c.hidden_size);
        read_size("num_hidden_layers", c.num_hidden_layers);
        read_size("num_attention_heads", c.num_attention_heads);
        read_size("intermediate_size", c.intermediate_size);
        read_size("max_position_embeddings", c.max_position_embeddings);
        read_size("type_vocab_size", c.type_vocab_size);
        read_real("layer_norm_eps", c.layer_norm_eps);
        read_real("hidden_dropout_prob", c.hidden_dropout_prob);
        read_real("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
        read_real("initializer_range", c.initializer_range);
        if (j.contains("hidden_act")) {
            if (!j["hidden_act"].is_string()) throw config_error(source + ": field 'hidden_act' must be a string");
            c.hidden_act = j["hidden_act"].get<std::string>();
        }
        if (j.contains("position_embedding_type") && j["position_embedding_type"] != "absolute")
            throw config_error(source + ": position_embedding_type " + j["position_embedding_type"].dump() +
                               " is not supported (only \"absolute\")");
        c.validate(source);
        return c;
    }

    /// The fields as a HuggingFace-compatible `config.json` object.
    nlohmann::json to_json() const
    {
        return {{"model_type", "bert"},
                {"vocab_size", vocab_size},
                {"hidden_size", hidden_size},
                {"num_hidden_layers", num_hidden_layers},
                {"num_attention_heads", num_attention_heads},
                {"intermediate_size", intermediate_size},
                {"max_position_embeddings", max_position_embeddings},
                {"type_vocab_size", type_vocab_size},
                {"layer_norm_eps", layer_norm_eps},
                {"hidden_dropout_prob", hidden_dropout_prob},
                {"attention_probs_dropout_prob", attention_probs_dropout_prob},
                {"initializer_range", initializer_range},
                {"hidden_act", hidden_act},
                {"position_embedding_type", "absolute"}};
    }

    bool operator==(const bert_config&) const = default;
};

}  // namespace dm2s2
