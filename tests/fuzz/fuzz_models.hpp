#pragma once
// The small model, vocabulary and records the model-file fuzz targets and their seeds share.

#include <string>
#include <vector>

#include "dm2s2/dm2s2.hpp"
#include "dm2s2/text/json_records.hpp"

namespace dm2s2::fuzz {

/// A vocabulary of the special tokens and a few words.
inline std::vector<std::string> tiny_vocabulary()
{
    return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "movie", "film", "good", "bad", "##s", "##ing", "love"};
}

inline std::string tiny_vocabulary_text()
{
    std::string text;
    for (const auto& token : tiny_vocabulary()) (text += token) += '\n';
    return text;
}

/// schema.json of the tiny records: a text, a category, a number and dense vectors.
inline const char* tiny_schema_json = R"({"task": {"type": "multiclass", "target": "label"},)"
                                      R"( "modalities": [{"name": "title", "kind": "text", "max_length": 8},)"
                                      R"( {"name": "genre", "kind": "categorical", "max_length": 2},)"
                                      R"( {"name": "year", "kind": "numeric"},)"
                                      R"( {"name": "regions", "kind": "dense", "dim": 3, "max_length": 2}]})";

/// Training records of the tiny schema, as JSON Lines.
inline const char* tiny_records_jsonl =
    R"({"title": "the good movie", "genre": ["drama"], "year": 1999, "regions": [[1, 2, 3]], "label": "yes"})"
    "\n"
    R"({"title": "a bad film", "genre": ["comedy", "drama"], "year": 2004, "label": "no"})"
    "\n"
    R"({"title": "loving films", "regions": [[0.5, 0, -1], [2, 2, 2]], "label": "yes"})"
    "\n"
    R"({"genre": ["horror"], "year": 1980.5, "label": "no"})"
    "\n";

/// A BERT small enough for thousands of loads a second.
inline bert_config tiny_bert_config()
{
    bert_config c;
    c.vocab_size = tiny_vocabulary().size();
    c.hidden_size = 8;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.intermediate_size = 16;
    c.max_position_embeddings = 24;
    return c;
}

/// The DM²S² configuration of the tiny model over `encoder`'s schema.
inline model_config tiny_model_config(std::size_t outputs)
{
    model_config c;
    c.bert = tiny_bert_config();
    c.mra.attention_dim = 4;
    c.num_outputs = outputs;
    c.cls_id = 2;
    c.sep_id = 3;
    c.pad_id = 0;
    return c;
}

/// The trainer settings of the tiny model's training checkpoints (seeds and the resuming target).
inline trainer_options tiny_trainer_options()
{
    return {.epochs = 2, .batch_size = 2, .seed = 1, .log = nullptr};
}

}  // namespace dm2s2::fuzz
