#pragma once
// A small DM²S² configuration and random records with every kind of modality, some missing, shared
// by the model and backward tests.

#include <utility>
#include <vector>

#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/model/dm2s2_model.hpp"

namespace dm2s2::testing {

inline schema four_modalities()
{
    return schema({{.name = "title", .kind = modality_kind::tokens, .max_length = 6},
                   {.name = "image", .kind = modality_kind::dense, .max_length = 3, .dim = 5},
                   {.name = "tags", .kind = modality_kind::categorical, .max_length = 4, .categories = 6},
                   {.name = "price", .kind = modality_kind::numeric, .max_length = 2, .mean = 3, .stddev = 2}});
}

inline model_config small_config()
{
    model_config c;
    c.bert.vocab_size = 120;
    c.bert.hidden_size = 16;
    c.bert.num_hidden_layers = 2;
    c.bert.num_attention_heads = 2;
    c.bert.intermediate_size = 24;
    c.bert.max_position_embeddings = 40;
    c.bert.initializer_range = 0.3;  // uneven attention weights, so the checks see real variation
    c.cls_id = 1;
    c.sep_id = 2;
    c.num_outputs = 3;
    return c;
}

/// Records of random lengths; every modality is missing in some of them, none is empty overall.
inline std::vector<sequence_set> random_records(const schema& s, std::size_t count, std::uint64_t seed)
{
    random_generator rng(seed);
    std::vector<sequence_set> out;
    for (std::size_t r = 0; r < count; ++r) {
        sequence_set x(s);
        const auto length = [&](std::size_t max) { return static_cast<std::size_t>(rng.below(max + 1)); };
        std::vector<std::int64_t> title(length(7));
        for (auto& t : title) t = static_cast<std::int64_t>(3 + rng.below(117));
        x.set_tokens("title", title);
        std::vector<float> image(length(3) * 5);
        for (auto& v : image) v = static_cast<float>(rng.normal());
        x.set_dense("image", image);
        std::vector<std::int64_t> tags(length(4));
        for (auto& t : tags) t = static_cast<std::int64_t>(rng.below(6));
        x.set_categorical("tags", tags);
        std::vector<double> price(length(2));
        for (auto& p : price) p = rng.normal(3, 2);
        x.set_numeric("price", price);
        if (r % 5 == 0) x.clear("title").clear("tags");
        if (!x.present(0) && !x.present(1) && !x.present(2) && !x.present(3)) x.set_numeric("price", {1.0});
        out.push_back(std::move(x));
    }
    return out;
}

/// The pooling configurations every model-level check runs over, with their names: DM²S² in its
/// variants, then the baselines that share its encoder.
inline std::vector<std::pair<const char*, model_config>> pooling_variants()
{
    std::vector<std::pair<const char*, model_config>> variants(4, {"", small_config()});
    variants[0].first = "defaults: shared IntraMRA, residual 0, global positions";
    variants[1].first = "per-modality IntraMRA";
    variants[1].second.mra.shared_intra = false;
    variants[2].first = "residual 1";
    variants[2].second.mra.residual = 1;
    variants[3].first = "per-modality positions and a smaller attention size";
    variants[3].second.positions = position_mode::per_modality;
    variants[3].second.mra.attention_dim = 7;
    auto& [learned_name, learned] =
        variants.emplace_back("learned residuals, starting at 1 (IntraMRA) and 0.5 (InterMRA)", small_config());
    learned.mra.learned_residual = true;
    learned.mra.inter_residual = 0.5;
    for (const auto pooling : all_pooling_kinds) {
        if (pooling == pooling_kind::dm2s2) continue;
        auto& [name, config] = variants.emplace_back(to_string(pooling).data(), small_config());
        config.pooling = pooling;
    }
    return variants;
}

}  // namespace dm2s2::testing
