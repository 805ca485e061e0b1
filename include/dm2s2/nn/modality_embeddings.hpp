#pragma once
/// \file
/// Element embeddings of the non-vocabulary modalities (docs/design.md §4): dense rows → W_m x + b_m,
/// categorical ids → C_m[id], numbers → v · a_m + c_m. Text and token elements use BERT's word table.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "dm2s2/data/packing.hpp"
#include "dm2s2/nn/embeddings.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// The parameters of one modality's element embedding; which ones exist depends on the kind.
template <scalar T>
struct modality_embedding {
    modality_kind kind = modality_kind::tokens;
    linear<T> projection;  ///< dense: `weight` [H, dim], `bias` [H]
    tensor<T> table;       ///< categorical: `weight` [categories, H]
    tensor<T> scale;       ///< numeric: a_m [H]
    tensor<T> shift;       ///< numeric: c_m [H]

    modality_embedding() = default;
    modality_embedding(const modality_spec& spec, std::size_t hidden) : kind(spec.kind)
    {
        if (kind == modality_kind::dense) projection = linear<T>(spec.dim, hidden);
        if (kind == modality_kind::categorical) table = tensor<T>({spec.categories, hidden});
        if (kind == modality_kind::numeric) {
            scale = tensor<T>({hidden});
            shift = tensor<T>({hidden});
        }
    }

    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        if (kind == modality_kind::dense) projection.for_each_parameter(prefix, visit);
        if (kind == modality_kind::categorical) visit(prefix + "weight", table);
        if (kind == modality_kind::numeric) {
            visit(prefix + "scale", scale);
            visit(prefix + "shift", shift);
        }
    }

    void initialize(random_generator& rng, double stddev)
    {
        if (kind == modality_kind::dense) projection.initialize(rng, stddev);
        fill_normal(table, rng, stddev);
        fill_normal(scale, rng, stddev);
        shift.fill(T(0));
    }
};

/// The dense rows of modality m of a packed batch as a [rows, dim] tensor of T.
template <scalar T>
tensor<T> dense_input(const packed_batch& batch, std::size_t m, std::size_t dim)
{
    tensor<T> in({batch.dense_slots[m].size(), dim});
    std::copy(batch.dense_rows[m].begin(), batch.dense_rows[m].end(), in.data());
    return in;
}

/// The slots of a packed batch grouped by where their element vectors come from, with what each reads:
/// the host's index arrays for the backend's row operations, in slot order.
template <scalar T>
struct element_sources {
    std::vector<std::size_t> word_slots;         ///< [CLS], [SEP], tokens and padding
    std::vector<std::int64_t> word_ids;
    std::vector<std::vector<std::size_t>> category_slots;  ///< per modality
    std::vector<std::vector<std::int64_t>> category_ids;
    std::vector<std::vector<std::size_t>> numeric_slots;   ///< per modality
    std::vector<std::vector<T>> numeric_values;

    /// The sources of `batch`'s slots; category ids are checked against each modality's table.
    element_sources(const packed_batch& batch, const std::vector<modality_embedding<T>>& modalities)
        : category_slots(modalities.size()), category_ids(modalities.size()), numeric_slots(modalities.size()),
          numeric_values(modalities.size())
    {
        for (std::size_t slot = 0; slot < batch.layout.rows(); ++slot) {
            const auto m = static_cast<std::size_t>(batch.modality[slot]);
            switch (batch.sources[slot]) {
            case element_source::padding:
            case element_source::special:
            case element_source::token:
                word_slots.push_back(slot);
                word_ids.push_back(batch.ids[slot]);
                break;
            case element_source::categorical:
                category_slots[m].push_back(slot);
                category_ids[m].push_back(batch.ids[slot]);
                break;
            case element_source::numeric:
                numeric_slots[m].push_back(slot);
                numeric_values[m].push_back(static_cast<T>(batch.numbers[slot]));
                break;
            case element_source::dense: break;  // `packed_batch::dense_slots`
            }
        }
        for (std::size_t m = 0; m < modalities.size(); ++m)
            check_ids(category_ids[m], modalities[m].table.empty() ? 0 : modalities[m].table.dim(0), "category id");
    }
};

/// Writes the element vector of every slot of `batch` into `rows` ([slots, H]): word vectors for
/// [CLS], [SEP], tokens and padding, and the modality embeddings for the other elements.
template <scalar T, host_backend_for<T> Backend>
void embed_elements(const Backend& backend, const packed_batch& batch, const bert_embeddings<T>& words,
                    const std::vector<modality_embedding<T>>& modalities, T* rows)
{
    const std::size_t h = words.hidden_size();
    const element_sources<T> sources(batch, modalities);
    words.embed_words(backend, sources.word_ids, rows, sources.word_slots.data());
    for (std::size_t m = 0; m < modalities.size(); ++m) {
        const auto& e = modalities[m];
        if (const auto& slots = sources.category_slots[m]; !slots.empty())
            backend.copy_rows(e.table.data(), sources.category_ids[m].data(), rows, slots.data(), slots.size(), h);
        if (const auto& slots = sources.numeric_slots[m]; !slots.empty())
            backend.scale_shift_rows(sources.numeric_values[m].data(), e.scale.data(), e.shift.data(), rows, slots.data(),
                                     slots.size(), h);
        if (const auto& slots = batch.dense_slots[m]; !slots.empty()) {  // one product per modality
            const tensor<T> in = dense_input<T>(batch, m, e.projection.in_features());
            tensor<T> out({slots.size(), h}, uninitialized);
            e.projection.forward(backend, in.data(), slots.size(), out.data());
            backend.copy_rows(std::as_const(out).data(), static_cast<const std::size_t*>(nullptr), rows, slots.data(), slots.size(), h);
        }
    }
}

/// Backward of `embed_elements`: adds the gradients of the element rows `d_rows` ([slots, H]) to the
/// word rows used in `words_grad` and to the modality embeddings in `modalities_grad`.
template <scalar T, host_training_backend_for<T> Backend>
void embed_elements_backward(const Backend& backend, const packed_batch& batch, const T* d_rows,
                             const bert_embeddings<T>& words, const std::vector<modality_embedding<T>>& modalities,
                             bert_embeddings<T>& words_grad, std::vector<modality_embedding<T>>& modalities_grad)
{
    const std::size_t h = words.hidden_size();
    const element_sources<T> sources(batch, modalities);
    words.backward_words(backend, sources.word_ids, d_rows, words_grad, sources.word_slots.data());
    for (std::size_t m = 0; m < modalities.size(); ++m) {
        auto& g = modalities_grad[m];
        if (const auto& slots = sources.category_slots[m]; !slots.empty())
            backend.add_rows(d_rows, slots.data(), g.table.data(), sources.category_ids[m].data(), slots.size(), h);
        if (const auto& slots = sources.numeric_slots[m]; !slots.empty())
            backend.scale_shift_rows_backward(sources.numeric_values[m].data(), d_rows, slots.data(), slots.size(), h,
                                              g.scale.data(), g.shift.data());
        if (const auto& slots = batch.dense_slots[m]; !slots.empty()) {  // one product per modality
            const auto& projection = modalities[m].projection;
            const tensor<T> in = dense_input<T>(batch, m, projection.in_features());
            tensor<T> d_out({slots.size(), h}, uninitialized);
            backend.copy_rows(d_rows, slots.data(), d_out.data(), static_cast<const std::size_t*>(nullptr), slots.size(), h);
            projection.backward(backend, in.data(), std::as_const(d_out).data(), slots.size(), static_cast<T*>(nullptr), g.projection);
        }
    }
}

}  // namespace dm2s2::nn
