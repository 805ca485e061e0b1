#pragma once
/// \file
/// `model_config`: hyper-parameters of a DM²S² model beyond its schema.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "dm2s2/data/packing.hpp"
#include "dm2s2/nn/bert_config.hpp"

namespace dm2s2 {

/// How the encoder output becomes the vector the head reads (docs/design.md §5 and the baselines of §6).
enum class pooling_kind {
    dm2s2,       ///< IntraMRA then InterMRA
    no_intra,    ///< α uniform within each modality, InterMRA learned
    no_inter,    ///< IntraMRA learned, β uniform over present modalities
    mean,        ///< mean over all elements of the record
    cls,         ///< BERT's pooler on [CLS]: tanh(W h_[CLS] + b)
    mid_fusion,  ///< each present modality encoded alone; its [CLS] outputs concatenated, zeros for missing
    dm2s         ///< Deep Multimodal Sets: embedded elements through an MLP each, element-wise max over the record
};

/// Every pooling kind, DM²S² first.
inline constexpr pooling_kind all_pooling_kinds[] = {pooling_kind::dm2s2, pooling_kind::no_intra, pooling_kind::no_inter,
                                                     pooling_kind::mean,  pooling_kind::cls,      pooling_kind::mid_fusion,
                                                     pooling_kind::dm2s};

constexpr std::string_view to_string(pooling_kind k) noexcept
{
    switch (k) {
    case pooling_kind::dm2s2: return "dm2s2";
    case pooling_kind::no_intra: return "no_intra";
    case pooling_kind::no_inter: return "no_inter";
    case pooling_kind::mean: return "mean";
    case pooling_kind::cls: return "cls";
    case pooling_kind::mid_fusion: return "mid_fusion";
    case pooling_kind::dm2s: return "dm2s";
    }
    return "?";
}

/// Parses a pooling name ("dm2s2", "no_intra", "no_inter", "mean", "cls", "mid_fusion", "dm2s").
inline std::optional<pooling_kind> parse_pooling_kind(std::string_view s) noexcept
{
    for (auto k : all_pooling_kinds)
        if (to_string(k) == s) return k;
    return std::nullopt;
}

/// True when the pooling has a learned IntraMRA.
constexpr bool has_intra(pooling_kind k) noexcept
{
    return k == pooling_kind::dm2s2 || k == pooling_kind::no_inter;
}
/// True when the pooling has a learned InterMRA.
constexpr bool has_inter(pooling_kind k) noexcept
{
    return k == pooling_kind::dm2s2 || k == pooling_kind::no_intra;
}

/// True when the pooling weighs elements and modalities, so a prediction comes with α, β and γ (the
/// mean pooling's are its implicit uniform weights).
constexpr bool explains(pooling_kind k) noexcept
{
    return k == pooling_kind::dm2s2 || k == pooling_kind::no_intra || k == pooling_kind::no_inter || k == pooling_kind::mean;
}

/// Options of the hierarchical modality attention (docs/design.md §5).
struct mra_config {
    std::size_t attention_dim = 0;  ///< A; 0 means A = H
    bool shared_intra = true;       ///< one IntraMRA for all modalities, or one per modality
    /// r: weight of the mean added to the attention-pooled vector, both levels. 0 by default: with any
    /// r > 0 the mean can carry the evidence past the attention, and α and β stop pointing at it
    /// (docs/explanations.md has the measurements).
    double residual = 0.0;
    std::optional<double> inter_residual{};  ///< r of InterMRA where it differs from `residual`
    bool learned_residual = false;  ///< each level's r a learned scalar (`mra_residual` [2]) starting at the values above

    /// r of IntraMRA (level 0) or InterMRA (level 1) as configured.
    double residual_at(std::size_t level) const { return level == 1 && inter_residual ? *inter_residual : residual; }
};

/// Everything that sizes a DM²S² model besides its schema.
struct model_config {
    bert_config bert;  ///< its type_vocab_size is set to the number of modalities by the model
    pooling_kind pooling = pooling_kind::dm2s2;
    position_mode positions = position_mode::global;
    mra_config mra;
    std::size_t num_outputs = 2;  ///< C, the number of logits
    double head_dropout = 0.1;    ///< dropout on the pooled vector before the head (training only)
    std::int64_t cls_id = 101;
    std::int64_t sep_id = 102;
    std::int64_t pad_id = 0;
};

}  // namespace dm2s2
