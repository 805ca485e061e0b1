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

#include "dm2s2/backend/arena.hpp"
#include "dm2s2/data/packing.hpp"
#include "dm2s2/nn/embeddings.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// The parameters of one modality's element embedding, in memory space `Space`; which ones exist
/// depends on the kind.
template <scalar T, memory_space Space = host_space>
struct modality_embedding {
    modality_kind kind = modality_kind::tokens;
    linear<T, Space> projection;  ///< dense: `weight` [H, dim], `bias` [H]
    tensor<T, Space> table;       ///< categorical: `weight` [categories, H]
    tensor<T, Space> scale;       ///< numeric: a_m [H]
    tensor<T, Space> shift;       ///< numeric: c_m [H]

    modality_embedding() = default;
    modality_embedding(const modality_spec& spec, std::size_t hidden)
        requires host_accessible_space<Space>
        : kind(spec.kind)
    {
        if (kind == modality_kind::dense) projection = linear<T>(spec.dim, hidden);
        if (kind == modality_kind::categorical) table = tensor<T>({spec.categories, hidden});
        if (kind == modality_kind::numeric) {
            scale = tensor<T>({hidden});
            shift = tensor<T>({hidden});
        }
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    modality_embedding(const modality_embedding<T, From>& other, Transfer&& transfer)
        : kind(other.kind), table(transfer(other.table)), scale(transfer(other.scale)), shift(transfer(other.shift))
    {
        if (kind == modality_kind::dense) projection = linear<T, Space>(other.projection, transfer);
    }

    /// Rows of the categorical table (0 for other kinds).
    std::size_t categories() const { return table.empty() ? 0 : table.dim(0); }

    template <class F>
        requires parameter_visitor<F, T, Space>
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
        requires host_accessible_space<Space>
    {
        if (kind == modality_kind::dense) projection.initialize(rng, stddev);
        fill_normal(table, rng, stddev);
        fill_normal(scale, rng, stddev);
        shift.fill(T(0));
    }
};

/// The slots of a packed batch grouped by where their element vectors come from, with what each reads:
/// the host's index arrays and values for the backend's row operations, in slot order.
template <scalar T>
struct element_sources {
    /// What one modality's non-word elements read.
    struct modality_sources {
        std::vector<std::size_t> category_slots;
        std::vector<std::int64_t> category_ids;
        std::vector<std::size_t> numeric_slots;
        std::vector<T> numeric_values;
        std::vector<std::size_t> dense_slots;
        std::vector<T> dense_values;  ///< [dense slots, dim] row-major
        std::size_t dense_dim = 0;
    };

    std::vector<std::size_t> word_slots;  ///< [CLS], [SEP], tokens and padding
    std::vector<std::int64_t> word_ids;
    std::vector<modality_sources> modalities;

    /// The sources of `batch`'s slots; word ids are checked against a vocabulary of `vocabulary` rows,
    /// category ids against each modality's table, dense rows against each projection's width.
    template <memory_space Space>
    element_sources(const packed_batch& batch, std::size_t vocabulary,
                    const std::vector<modality_embedding<T, Space>>& embeddings)
        : modalities(embeddings.size())
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
                modalities[m].category_slots.push_back(slot);
                modalities[m].category_ids.push_back(batch.ids[slot]);
                break;
            case element_source::numeric:
                modalities[m].numeric_slots.push_back(slot);
                modalities[m].numeric_values.push_back(static_cast<T>(batch.numbers[slot]));
                break;
            case element_source::dense: break;  // `packed_batch::dense_slots`
            }
        }
        check_ids(word_ids, vocabulary, "word id");
        for (std::size_t m = 0; m < embeddings.size(); ++m) {
            auto& s = modalities[m];
            check_ids(s.category_ids, embeddings[m].categories(), "category id");
            if (m >= batch.dense_slots.size() || batch.dense_slots[m].empty()) continue;
            s.dense_slots = batch.dense_slots[m];
            s.dense_dim = embeddings[m].projection.in_features();
            if (batch.dense_rows[m].size() != s.dense_slots.size() * s.dense_dim)
                throw shape_error("embed_elements: modality " + std::to_string(m) + " has " +
                                  std::to_string(batch.dense_rows[m].size()) + " dense values for " +
                                  std::to_string(s.dense_slots.size()) + " rows of width " + std::to_string(s.dense_dim));
            s.dense_values.assign(batch.dense_rows[m].begin(), batch.dense_rows[m].end());
        }
    }
};

/// Where `element_sources` lie in an arena: what `embed_elements` reads once the arena is uploaded.
template <scalar T>
struct element_sections {
    struct modality_sections {
        arena_section<std::size_t> category_slots;
        arena_section<std::int64_t> category_ids;
        arena_section<std::size_t> numeric_slots;
        arena_section<T> numeric_values;
        arena_section<std::size_t> dense_slots;
        arena_section<T> dense_values;
        std::size_t dense_dim = 0;
    };

    arena_section<std::size_t> word_slots;
    arena_section<std::int64_t> word_ids;
    std::vector<modality_sections> modalities;

    element_sections() = default;
    /// Lays `sources` out in `arena`.
    element_sections(const element_sources<T>& sources, host_arena& arena)
        : word_slots(arena.add(sources.word_slots)), word_ids(arena.add(sources.word_ids))
    {
        for (const auto& s : sources.modalities)
            modalities.push_back({arena.add(s.category_slots), arena.add(s.category_ids), arena.add(s.numeric_slots),
                                  arena.add(s.numeric_values), arena.add(s.dense_slots), arena.add(s.dense_values), s.dense_dim});
    }
};

/// Writes the element vector of every slot into `rows` ([slots, H]): word vectors for [CLS], [SEP],
/// tokens and padding, and the modality embeddings for the other elements, reading the index arrays of
/// `sections` from `arena`.
template <scalar T, memory_space Space, backend_in<T, Space> Backend>
void embed_elements(const Backend& backend, const element_sections<T>& sections, const space_arena<Space>& arena,
                    const bert_embeddings<T, Space>& words, const std::vector<modality_embedding<T, Space>>& modalities,
                    space_pointer<T, Space> rows)
{
    const std::size_t h = words.hidden_size();
    words.embed_words(backend, arena[sections.word_ids], sections.word_ids.size, rows, arena[sections.word_slots]);
    for (std::size_t m = 0; m < modalities.size(); ++m) {
        const auto& e = modalities[m];
        const auto& s = sections.modalities[m];
        if (const std::size_t n = s.category_slots.size; n > 0)
            backend.copy_rows(e.table.data(), arena[s.category_ids], rows, arena[s.category_slots], n, h);
        if (const std::size_t n = s.numeric_slots.size; n > 0)
            backend.scale_shift_rows(arena[s.numeric_values], e.scale.data(), e.shift.data(), rows, arena[s.numeric_slots], n, h);
        if (const std::size_t n = s.dense_slots.size; n > 0) {  // one product per modality
            tensor<T, Space> out({n, h}, uninitialized);
            e.projection.forward(backend, arena[s.dense_values], n, out.data());
            backend.copy_rows(std::as_const(out).data(), space_pointer<const std::size_t, Space>{}, rows, arena[s.dense_slots], n,
                              h);
        }
    }
}

/// `embed_elements` for a packed batch on a host backend (its index arrays laid out on the spot).
template <scalar T, host_backend_for<T> Backend>
void embed_elements(const Backend& backend, const packed_batch& batch, const bert_embeddings<T>& words,
                    const std::vector<modality_embedding<T>>& modalities, T* rows)
{
    host_arena arena;
    const element_sections<T> sections(element_sources<T>(batch, words.word_embeddings.dim(0), modalities), arena);
    embed_elements(backend, sections, *upload_arena(backend, arena), words, modalities, rows);
}

/// Backward of `embed_elements`: adds the gradients of the element rows `d_rows` ([slots, H]) to the
/// word rows used in `words_grad` and to the modality embeddings in `modalities_grad`.
template <scalar T, memory_space Space, training_backend_in<T, Space> Backend>
void embed_elements_backward(const Backend& backend, const element_sections<T>& sections, const space_arena<Space>& arena,
                             space_pointer<const T, Space> d_rows, const bert_embeddings<T, Space>& words,
                             const std::vector<modality_embedding<T, Space>>& modalities, bert_embeddings<T, Space>& words_grad,
                             std::vector<modality_embedding<T, Space>>& modalities_grad)
{
    const std::size_t h = words.hidden_size();
    words.backward_words(backend, arena[sections.word_ids], sections.word_ids.size, d_rows, words_grad,
                         arena[sections.word_slots]);
    for (std::size_t m = 0; m < modalities.size(); ++m) {
        auto& g = modalities_grad[m];
        const auto& s = sections.modalities[m];
        if (const std::size_t n = s.category_slots.size; n > 0)
            backend.add_rows(d_rows, arena[s.category_slots], g.table.data(), arena[s.category_ids], n, h);
        if (const std::size_t n = s.numeric_slots.size; n > 0)
            backend.scale_shift_rows_backward(arena[s.numeric_values], d_rows, arena[s.numeric_slots], n, h, g.scale.data(),
                                              g.shift.data());
        if (const std::size_t n = s.dense_slots.size; n > 0) {  // one product per modality
            tensor<T, Space> d_out({n, h}, uninitialized);
            backend.copy_rows(d_rows, arena[s.dense_slots], d_out.data(), space_pointer<const std::size_t, Space>{}, n, h);
            modalities[m].projection.backward(backend, arena[s.dense_values], std::as_const(d_out).data(), n,
                                              space_pointer<T, Space>{}, g.projection);
        }
    }
}

}  // namespace dm2s2::nn
