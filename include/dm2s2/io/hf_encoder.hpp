#pragma once
/// \file
/// `load_encoder`: a DM²S² model's encoder initialised from a HuggingFace BERT checkpoint directory.

#include <filesystem>

#include "dm2s2/io/hf_bert.hpp"
#include "dm2s2/model/dm2s2_model.hpp"

namespace dm2s2 {

/// Initialises the encoder of `m` from a HuggingFace BERT checkpoint directory. Its config must match
/// the model's encoder except type_vocab_size (token-type rows are adapted as docs/design.md says).
template <scalar T, class Backend>
hf_load_report load_encoder(model<T, Backend>& m, const std::filesystem::path& dir)
{
    return load_encoder(m, dir, hf_checkpoint(dir));
}

/// `load_encoder` with the directory's tensors already read (`checkpoint`).
template <scalar T, class Backend>
hf_load_report load_encoder(model<T, Backend>& m, const std::filesystem::path& dir, const hf_checkpoint& checkpoint)
{
    const bert_config theirs = read_hf_bert_config(dir);
    const bert_config& ours = m.config().bert;
    if (theirs.vocab_size != ours.vocab_size || theirs.hidden_size != ours.hidden_size ||
        theirs.num_hidden_layers != ours.num_hidden_layers || theirs.num_attention_heads != ours.num_attention_heads ||
        theirs.intermediate_size != ours.intermediate_size || theirs.max_position_embeddings != ours.max_position_embeddings)
        throw config_error((dir / "config.json").string() + ": encoder sizes differ from the model's bert config");
    return load_bert_parameters<T>(m.encoder(), checkpoint);
}

}  // namespace dm2s2
