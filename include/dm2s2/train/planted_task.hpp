#pragma once
/// \file
/// `planted_task`: a synthetic data set with a known answer, for demonstrations and tests. Records have
/// three modalities (tokens, dense rows, categories) of random lengths, the dense and categorical ones
/// sometimes missing; the class is decided by one planted token among random ones. A model that learns
/// the task should also point at the planted token when it explains itself.

#include <cstdint>
#include <vector>

#include "dm2s2/core/random.hpp"
#include "dm2s2/core/scalar.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/model/model_config.hpp"

namespace dm2s2 {

/// The records, labels and planted positions of a seeded planted-signal data set.
struct planted_task {
    static constexpr std::int64_t first_planted = 3;  ///< tokens 3, 4, 5 decide classes 0, 1, 2
    static constexpr std::size_t classes = 3;

    /// Words (the planted token among random ones), image-like dense rows, categorical tags.
    static schema modality_schema()
    {
        return schema({{.name = "words", .kind = modality_kind::tokens, .max_length = 12},
                       {.name = "regions", .kind = modality_kind::dense, .max_length = 6, .dim = 8},
                       {.name = "tags", .kind = modality_kind::categorical, .max_length = 4, .categories = 10}});
    }

    schema modalities = modality_schema();
    std::vector<sequence_set> records;
    std::vector<std::size_t> labels;
    std::vector<std::size_t> planted_position;  ///< index of the planted token within "words"

    /// `count` records drawn with `seed`.
    planted_task(std::size_t count, std::uint64_t seed)
    {
        random_generator rng(seed);
        for (std::size_t r = 0; r < count; ++r) {
            sequence_set x(modalities);
            const std::size_t label = rng.below(classes);
            std::vector<std::int64_t> words(3 + rng.below(10));
            for (auto& w : words) w = static_cast<std::int64_t>(10 + rng.below(54));
            const std::size_t at = rng.below(words.size());
            words[at] = first_planted + static_cast<std::int64_t>(label);
            x.set_tokens(0, words);
            if (rng.uniform() < 0.7) {
                std::vector<float> regions((1 + rng.below(6)) * 8);
                for (auto& v : regions) v = static_cast<float>(rng.normal());
                x.set_dense(1, regions);
            }
            if (rng.uniform() < 0.7) {
                std::vector<std::int64_t> tags(1 + rng.below(4));
                for (auto& t : tags) t = static_cast<std::int64_t>(rng.below(10));
                x.set_categorical(2, tags);
            }
            records.push_back(std::move(x));
            labels.push_back(label);
            planted_position.push_back(at);
        }
    }

    /// The labels as multiclass targets: class indices [records].
    template <scalar T>
    tensor<T> targets() const
    {
        tensor<T> t({labels.size()});
        for (std::size_t i = 0; i < labels.size(); ++i) t[i] = static_cast<T>(labels[i]);
        return t;
    }

    /// A small DM²S²: 2 layers, hidden 64, 4 heads.
    static model_config config()
    {
        model_config c;
        c.bert.vocab_size = 64;
        c.bert.hidden_size = 64;
        c.bert.num_hidden_layers = 2;
        c.bert.num_attention_heads = 4;
        c.bert.intermediate_size = 128;
        c.bert.max_position_embeddings = 32;
        c.cls_id = 1;
        c.sep_id = 2;
        c.num_outputs = classes;
        return c;
    }
};

}  // namespace dm2s2
