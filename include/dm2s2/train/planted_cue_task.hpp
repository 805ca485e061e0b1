#pragma once
/// \file
/// `planted_cue_task`: a seeded binary data set in the JSON Lines format of the tools whose evidence
/// is known, for testing explanations. Four modalities, one of each non-token kind: `text` (random
/// words), `regions` (dense rows), `tags` (categorical) and `numbers` (numeric); all but the text may
/// be missing. A record is positive exactly when it holds one cue: the word "zebra" in its text or the
/// value "gold" among its tags (half each). Positives carry `"cue": {"modality": name, "element": i}`,
/// the cue's element index within its modality; the tools ignore that key.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dm2s2/core/random.hpp"
#include "dm2s2/io/atomic_file.hpp"

namespace dm2s2 {

/// Records, schema and vocabulary of a planted-cue data set (see the file comment).
struct planted_cue_task {
    static constexpr const char* cue_word = "zebra";
    static constexpr const char* cue_tag = "gold";
    static constexpr std::size_t filler_words = 40, filler_tags = 12, region_dim = 8;
    static constexpr const char* tag_names[filler_tags] = {"t0", "t1", "t2", "t3", "t4",  "t5",
                                                           "t6", "t7", "t8", "t9", "t10", "t11"};

    std::vector<nlohmann::json> records;

    /// `count` records drawn with `seed`.
    planted_cue_task(std::size_t count, std::uint64_t seed)
    {
        random_generator rng(seed);
        const auto words = vocabulary();
        for (std::size_t r = 0; r < count; ++r) {
            std::string id = "r";
            id += std::to_string(r);
            nlohmann::json x = {{"id", id}};
            const bool positive = rng.uniform() < 0.5, cue_in_text = rng.uniform() < 0.5;
            std::vector<std::string> text(4 + rng.below(9));
            for (auto& w : text) w = words[first_filler + rng.below(filler_words)];
            std::vector<std::string> tags(1 + rng.below(4));
            for (auto& t : tags) t = tag_names[rng.below(filler_tags)];
            const bool has_tags = (positive && !cue_in_text) || rng.uniform() < 0.7;
            if (positive) {
                auto& where = cue_in_text ? text : tags;
                const std::size_t at = rng.below(where.size());
                where[at] = cue_in_text ? cue_word : cue_tag;
                x["cue"] = {{"modality", cue_in_text ? "text" : "tags"}, {"element", at}};
            }
            std::string joined;
            for (const auto& w : text) {
                if (!joined.empty()) joined += ' ';
                joined += w;
            }
            x["text"] = joined;
            if (rng.uniform() < 0.7) {
                nlohmann::json rows = nlohmann::json::array();
                for (std::size_t i = 0, n = 1 + rng.below(4); i < n; ++i) {
                    std::vector<double> row(region_dim);
                    for (auto& v : row) v = std::round(rng.normal() * 1000) / 1000;
                    rows.push_back(row);
                }
                x["regions"] = rows;
            }
            if (has_tags) x["tags"] = tags;
            if (rng.uniform() < 0.7) {
                std::vector<double> numbers(1 + rng.below(3));
                for (auto& v : numbers) v = std::round(rng.normal(50, 10) * 100) / 100;
                x["numbers"] = numbers;
            }
            x["label"] = positive ? "yes" : "no";
            records.push_back(std::move(x));
        }
    }

    /// The schema.json of the data set: a binary task on "label", "yes" positive.
    static nlohmann::json schema()
    {
        return {{"modalities",
                 {{{"name", "text"}, {"kind", "text"}, {"max_length", 16u}},
                  {{"name", "regions"}, {"kind", "dense"}, {"max_length", 4u}, {"dim", region_dim}},
                  {{"name", "tags"}, {"kind", "categorical"}, {"max_length", 4u}},
                  {{"name", "numbers"}, {"kind", "numeric"}, {"max_length", 3u}}}},
                {"task", {{"type", "binary"}, {"target", "label"}, {"labels", {"no", "yes"}}}}};
    }

    /// The WordPiece vocabulary: BERT's five special tokens, the filler words and the cue word, each
    /// one word piece.
    static std::vector<std::string> vocabulary()
    {
        std::vector<std::string> v = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
        for (std::size_t i = 0; i < filler_words; ++i) (v.emplace_back("w") += std::to_string(i));
        v.push_back(cue_word);
        return v;
    }

    /// Writes `schema.json`, `vocab.txt` and the records as `<name>.jsonl` into `dir`.
    void write(const std::filesystem::path& dir, const std::string& name) const
    {
        std::filesystem::create_directories(dir);
        write_file_atomically(dir / "schema.json", schema().dump(2) + "\n");
        std::string vocab, lines;
        for (const auto& t : vocabulary()) (vocab += t) += '\n';
        write_file_atomically(dir / "vocab.txt", vocab);
        for (const auto& r : records) (lines += r.dump()) += '\n';
        write_file_atomically(dir / (name + ".jsonl"), lines);
    }

private:
    static constexpr std::size_t first_filler = 5;
};

}  // namespace dm2s2
