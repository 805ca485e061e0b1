#pragma once
/// \file
/// The data side of a trained model directory, beside `config.json` and `model.safetensors`:
/// `data.json` (the record encoder: schema with labels, category tables, numeric statistics, and
/// whether text is lower-cased) and `vocab.txt` (the WordPiece vocabulary, when the model reads text
/// or token ids). Both are written atomically.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "dm2s2/io/atomic_file.hpp"
#include "dm2s2/text/json_records.hpp"
#include "dm2s2/text/wordpiece.hpp"

namespace dm2s2 {

/// A tokenizer (optional) and the record encoder that uses it.
struct data_pipeline {
    std::unique_ptr<wordpiece_tokenizer> tokenizer;  ///< heap-held: the encoder keeps a pointer to it
    std::optional<record_encoder> encoder;
};

/// Writes `data.json` and, with a tokenizer, `vocab.txt` into `dir`.
inline void save_data_pipeline(const std::filesystem::path& dir, const record_encoder& encoder)
{
    std::filesystem::create_directories(dir);
    nlohmann::json j = encoder.to_json();
    if (const auto* t = encoder.tokenizer()) {
        std::string vocab;
        for (const auto& token : t->tokens()) (vocab += token) += '\n';
        write_file_atomically(dir / "vocab.txt", vocab);
        j["lower_case"] = t->lower_case();
    }
    write_file_atomically(dir / "data.json", j.dump(2) + "\n");
}

/// Reads what `save_data_pipeline` wrote.
inline data_pipeline load_data_pipeline(const std::filesystem::path& dir)
{
    const auto path = dir / "data.json";
    const nlohmann::json j = read_json_file(path);
    data_pipeline p;
    if (j.contains("lower_case")) {
        if (!j["lower_case"].is_boolean()) throw format_error(path.string() + ": 'lower_case' must be true or false");
        p.tokenizer =
            std::make_unique<wordpiece_tokenizer>(wordpiece_tokenizer::from_file(dir / "vocab.txt", j["lower_case"].get<bool>()));
    }
    p.encoder.emplace(record_encoder::from_json(j, path.string(), p.tokenizer.get()));
    return p;
}

}  // namespace dm2s2
