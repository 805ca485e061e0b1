#pragma once
/// \file
/// `model_config`: hyper-parameters of a DM²S² model beyond its schema.

#include <cstddef>
#include <cstdint>

#include "dm2s2/data/packing.hpp"
#include "dm2s2/nn/bert_config.hpp"

namespace dm2s2 {

/// Options of the hierarchical modality attention (DESIGN §5).
struct mra_config {
    std::size_t attention_dim = 0;  ///< A; 0 means A = H
    bool shared_intra = true;       ///< one IntraMRA for all modalities, or one per modality
    double residual = 1.0;          ///< r: weight of the mean added to the attention-pooled vector (1 or 0)
};

/// Everything that sizes a DM²S² model besides its schema.
struct model_config {
    bert_config bert;  ///< its type_vocab_size is set to the number of modalities by the model
    position_mode positions = position_mode::global;
    mra_config mra;
    std::size_t num_outputs = 2;  ///< C, the number of logits
    double head_dropout = 0.1;    ///< dropout on the pooled vector before the head (training only)
    std::int64_t cls_id = 101;
    std::int64_t sep_id = 102;
    std::int64_t pad_id = 0;
};

}  // namespace dm2s2
