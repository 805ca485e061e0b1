#pragma once
/// \file
/// `bert_embeddings`: BERT's word, position and token-type tables and the embedding LayerNorm.
/// The element part of each row (a word vector, a projected dense vector, ...) is produced first;
/// `forward` then adds position and type vectors and normalises, as HF `BertEmbeddings` does.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "dm2s2/core/error.hpp"
#include "dm2s2/nn/bert_config.hpp"
#include "dm2s2/nn/dropout.hpp"
#include "dm2s2/nn/layer_norm.hpp"
#include "dm2s2/nn/parameter.hpp"

namespace dm2s2::nn {

/// Throws input_error unless every id lies in [0, limit); `what` names the ids in the message.
inline void check_ids(std::span<const std::int64_t> ids, std::size_t limit, const std::string& what)
{
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || static_cast<std::uint64_t>(ids[i]) >= limit)
            throw input_error(what + " " + std::to_string(ids[i]) + " at flat index " + std::to_string(i) +
                              " is outside [0, " + std::to_string(limit) + ")");
}

/// BERT embedding tables with HuggingFace names (`word_embeddings.weight`, ...).
template <scalar T>
struct bert_embeddings {
    tensor<T> word_embeddings;      ///< [vocab, H]
    tensor<T> position_embeddings;  ///< [max_positions, H]
    tensor<T> token_type_embeddings;///< [type_vocab, H]
    layer_norm<T> norm;
    double hidden_dropout = 0;  ///< after the LayerNorm

    bert_embeddings() = default;
    explicit bert_embeddings(const bert_config& c)
        : word_embeddings({c.vocab_size, c.hidden_size}),
          position_embeddings({c.max_position_embeddings, c.hidden_size}),
          token_type_embeddings({c.type_vocab_size, c.hidden_size}),
          norm(c.hidden_size, c.layer_norm_eps), hidden_dropout(c.hidden_dropout_prob)
    {
    }

    std::size_t hidden_size() const { return word_embeddings.dim(1); }

    /// Copies the word vectors of `ids` into rows `rows[i]` of `out` (rows i when `rows` is null).
    template <host_backend_for<T> Backend>
    void embed_words(const Backend& backend, std::span<const std::int64_t> ids, T* out, const std::size_t* rows = nullptr) const
    {
        check_ids(ids, word_embeddings.dim(0), "word id");
        backend.copy_rows(word_embeddings.data(), ids.data(), out, rows, ids.size(), hidden_size());
    }

    /// rows[i] = LN(rows[i] + token_type[types[i]] + position[positions[i]]), in place, then dropout
    /// when `dropout_rng` is given. `pre_norm` and `dropout`, when given, keep what `backward` needs.
    template <host_backend_for<T> Backend>
    void forward(const Backend& backend, T* rows, std::span<const std::int64_t> positions,
                 std::span<const std::int64_t> types, tensor<T>* pre_norm = nullptr,
                 random_generator* dropout_rng = nullptr, dropout_draw* dropout = nullptr) const
    {
        if (positions.size() != types.size())
            throw shape_error("bert_embeddings: " + std::to_string(positions.size()) + " position ids but " +
                              std::to_string(types.size()) + " token type ids");
        check_ids(positions, position_embeddings.dim(0), "position id");
        check_ids(types, token_type_embeddings.dim(0), "token type id");
        const std::size_t h = hidden_size();
        // Same order of additions as HF: (element + type) + position.
        backend.add_type_and_position_rows(rows, positions.size(), h, token_type_embeddings.data(), types.data(),
                                           position_embeddings.data(), positions.data());
        norm.forward(backend, rows, static_cast<const T*>(nullptr), rows, positions.size(), pre_norm);
        const dropout_draw drop = draw_dropout(hidden_dropout, dropout_rng);
        if (dropout != nullptr) *dropout = drop;
        apply_dropout(backend, rows, positions.size() * h, drop);
    }

    /// Backward of `forward` run with `pre_norm`: `rows` holds d(output) on entry and d(element rows) on
    /// return; position, type and LayerNorm gradients accumulate into `grad`.
    template <host_training_backend_for<T> Backend>
    void backward(const Backend& backend, const tensor<T>& pre_norm, const dropout_draw& dropout,
                  std::span<const std::int64_t> positions, std::span<const std::int64_t> types, T* rows,
                  bert_embeddings& grad) const
    {
        const std::size_t h = hidden_size();
        tensor<T> d_output({positions.size(), h}, uninitialized);
        backend.copy(static_cast<const T*>(rows), d_output.size(), d_output.data());
        apply_dropout(backend, d_output.data(), d_output.size(), dropout);
        norm.backward(backend, pre_norm.data(), d_output.data(), rows, positions.size(), grad.norm);
        const std::size_t* identity = nullptr;
        backend.add_rows(static_cast<const T*>(rows), identity, grad.token_type_embeddings.data(), types.data(), types.size(), h);
        backend.add_rows(static_cast<const T*>(rows), identity, grad.position_embeddings.data(), positions.data(), positions.size(), h);
    }

    /// Adds the gradients of rows `rows[i]` of `d_rows` (rows i when `rows` is null) to the rows of
    /// `ids` in `grad.word_embeddings`, in the order of `ids`.
    template <host_training_backend_for<T> Backend>
    void backward_words(const Backend& backend, std::span<const std::int64_t> ids, const T* d_rows, bert_embeddings& grad,
                        const std::size_t* rows = nullptr) const
    {
        backend.add_rows(d_rows, rows, grad.word_embeddings.data(), ids.data(), ids.size(), hidden_size());
    }

    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        visit(prefix + "word_embeddings.weight", word_embeddings);
        visit(prefix + "position_embeddings.weight", position_embeddings);
        visit(prefix + "token_type_embeddings.weight", token_type_embeddings);
        norm.for_each_parameter(prefix + "LayerNorm.", visit);
    }

    void initialize(random_generator& rng, double stddev)
    {
        fill_normal(word_embeddings, rng, stddev);
        fill_normal(position_embeddings, rng, stddev);
        fill_normal(token_type_embeddings, rng, stddev);
    }
};

}  // namespace dm2s2::nn
