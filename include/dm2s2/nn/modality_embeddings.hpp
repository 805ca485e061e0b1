#pragma once
/// \file
/// Element embeddings of the non-vocabulary modalities (docs/design.md §4): dense rows → W_m x + b_m,
/// categorical ids → C_m[id], numbers → v · a_m + c_m. Text and token elements use BERT's word table.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
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

/// Writes the element vector of every slot of `batch` into `rows` ([slots, H]): word vectors for
/// [CLS], [SEP], tokens and padding, and the modality embeddings for the other elements.
template <scalar T, host_backend_for<T> Backend>
void embed_elements(const Backend& backend, const packed_batch& batch, const bert_embeddings<T>& words,
                    const std::vector<modality_embedding<T>>& modalities, T* rows)
{
    const std::size_t h = words.hidden_size();
    for (std::size_t slot = 0; slot < batch.layout.rows(); ++slot) {
        T* row = rows + slot * h;
        switch (batch.sources[slot]) {
        case element_source::padding:
        case element_source::special:
        case element_source::token: words.embed_words({&batch.ids[slot], 1}, row); break;
        case element_source::categorical: {
            const auto& table = modalities[static_cast<std::size_t>(batch.modality[slot])].table;
            check_ids({&batch.ids[slot], 1}, table.dim(0), "category id");
            std::memcpy(row, table.row(static_cast<std::size_t>(batch.ids[slot])), h * sizeof(T));
            break;
        }
        case element_source::numeric: {
            const auto& e = modalities[static_cast<std::size_t>(batch.modality[slot])];
            const T v = static_cast<T>(batch.numbers[slot]);
            for (std::size_t j = 0; j < h; ++j) row[j] = v * e.scale[j] + e.shift[j];
            break;
        }
        case element_source::dense: break;  // projected below, one product per modality
        }
    }
    for (std::size_t m = 0; m < modalities.size(); ++m) {
        const auto& slots = batch.dense_slots[m];
        if (slots.empty()) continue;
        const auto& projection = modalities[m].projection;
        const tensor<T> in = dense_input<T>(batch, m, projection.in_features());
        tensor<T> out({slots.size(), h});
        projection.forward(backend, in.data(), slots.size(), out.data());
        for (std::size_t i = 0; i < slots.size(); ++i) std::memcpy(rows + slots[i] * h, out.row(i), h * sizeof(T));
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
    for (std::size_t slot = 0; slot < batch.layout.rows(); ++slot) {
        const T* d = d_rows + slot * h;
        const auto m = static_cast<std::size_t>(batch.modality[slot]);
        switch (batch.sources[slot]) {
        case element_source::padding:
        case element_source::special:
        case element_source::token: words.backward_words({&batch.ids[slot], 1}, d, words_grad); break;
        case element_source::categorical: {
            T* row = modalities_grad[m].table.row(static_cast<std::size_t>(batch.ids[slot]));
            for (std::size_t j = 0; j < h; ++j) row[j] += d[j];
            break;
        }
        case element_source::numeric: {
            auto& g = modalities_grad[m];
            const T v = static_cast<T>(batch.numbers[slot]);
            for (std::size_t j = 0; j < h; ++j) {
                g.scale[j] += v * d[j];
                g.shift[j] += d[j];
            }
            break;
        }
        case element_source::dense: break;  // below, one product per modality
        }
    }
    for (std::size_t m = 0; m < modalities.size(); ++m) {
        const auto& slots = batch.dense_slots[m];
        if (slots.empty()) continue;
        const auto& projection = modalities[m].projection;
        const tensor<T> in = dense_input<T>(batch, m, projection.in_features());
        tensor<T> d_out({slots.size(), h});
        for (std::size_t i = 0; i < slots.size(); ++i) std::copy_n(d_rows + slots[i] * h, h, d_out.row(i));
        projection.backward(backend, in.data(), d_out.data(), slots.size(), static_cast<T*>(nullptr), modalities_grad[m].projection);
    }
}

}  // namespace dm2s2::nn
