#pragma once
// What the benchmark programs share.

#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include <dm2s2/dm2s2.hpp>

namespace dm2s2_bench {

/// DM2S2_BENCH_SCALE=tiny: every size shrunk, so that CI can run each benchmark once as a smoke test.
inline bool tiny()
{
    const char* scale = std::getenv("DM2S2_BENCH_SCALE");
    return scale != nullptr && std::string_view(scale) == "tiny";
}

/// The workloads' model and data (benchmarks/README.md): W1's three-modality records and BERT-base.
namespace workloads {

constexpr std::uint64_t w1_seed = 2022;
constexpr std::size_t w1_batch = 8;
inline std::size_t dense_dim()
{
    return tiny() ? 16 : 2048;
}

inline dm2s2::schema w1_schema()
{
    using dm2s2::modality_kind;
    return dm2s2::schema({{.name = "text", .kind = modality_kind::tokens, .max_length = 64},
                          {.name = "image", .kind = modality_kind::dense, .max_length = 36, .dim = dense_dim()},
                          {.name = "tags", .kind = modality_kind::categorical, .max_length = 8, .categories = 1000}});
}

/// BERT-base (the tiny scale: one layer of hidden size 32) with DM²S² pooling over 4 classes.
inline dm2s2::model_config encoder_config(std::size_t hidden, std::size_t layers, std::size_t heads)
{
    dm2s2::model_config config;
    config.bert.hidden_size = tiny() ? 32 : hidden;
    config.bert.num_hidden_layers = tiny() ? 1 : layers;
    config.bert.num_attention_heads = tiny() ? 2 : heads;
    config.bert.intermediate_size = 4 * config.bert.hidden_size;
    config.bert.max_position_embeddings = 512;
    config.num_outputs = 4;
    return config;
}

inline dm2s2::model_config bert_base()
{
    return encoder_config(768, 12, 12);
}
inline dm2s2::model_config small_model()
{
    return encoder_config(256, 4, 4);
}

/// Records of random lengths in every modality, drawn from `seed`.
inline std::vector<dm2s2::sequence_set> random_records(const dm2s2::schema& schema, std::size_t count, std::uint64_t seed)
{
    dm2s2::random_generator rng(seed);
    std::vector<dm2s2::sequence_set> records;
    for (std::size_t i = 0; i < count; ++i) {
        dm2s2::sequence_set r(schema);
        std::vector<std::int64_t> text(1 + rng.below(64));
        for (auto& t : text) t = static_cast<std::int64_t>(1000 + rng.below(29000));
        std::vector<float> image((1 + rng.below(36)) * dense_dim());
        for (auto& v : image) v = static_cast<float>(rng.normal());
        std::vector<std::int64_t> tags(1 + rng.below(8));
        for (auto& t : tags) t = static_cast<std::int64_t>(rng.below(1000));
        r.set_tokens("text", text).set_dense("image", image).set_categorical("tags", tags);
        records.push_back(std::move(r));
    }
    return records;
}

}  // namespace workloads

}  // namespace dm2s2_bench
