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
            throw input_error(what + " " + std::to_string(ids[i]) + " at flat index " + std::to_string(i) + " is outside [0, " +
                              std::to_string(limit) + ")");
}

/// BERT embedding tables with HuggingFace names (`word_embeddings.weight`, ...), in memory space
/// `Space`. The operations take their ids as pointers of that space, checked by whoever laid them out
/// (`check_ids`, `check_positions_and_types`).
template <scalar T, memory_space Space = host_space>
struct bert_embeddings {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;
    using id_pointer = space_pointer<const std::int64_t, Space>;
    using row_pointer = space_pointer<const std::size_t, Space>;
    static constexpr bool on_host = host_accessible_space<Space>;

    tensor<T, Space> word_embeddings;        ///< [vocab, H]
    tensor<T, Space> position_embeddings;    ///< [max_positions, H]
    tensor<T, Space> token_type_embeddings;  ///< [type_vocab, H]
    layer_norm<T, Space> norm;
    double hidden_dropout = 0;  ///< after the LayerNorm

    bert_embeddings() = default;
    explicit bert_embeddings(const bert_config& c)
        requires on_host
        : word_embeddings({c.vocab_size, c.hidden_size}),
          position_embeddings({c.max_position_embeddings, c.hidden_size}),
          token_type_embeddings({c.type_vocab_size, c.hidden_size}),
          norm(c.hidden_size, c.layer_norm_eps),
          hidden_dropout(c.hidden_dropout_prob)
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    bert_embeddings(const bert_embeddings<T, From>& other, Transfer&& transfer)
        : word_embeddings(transfer(other.word_embeddings)),
          position_embeddings(transfer(other.position_embeddings)),
          token_type_embeddings(transfer(other.token_type_embeddings)),
          norm(other.norm, transfer),
          hidden_dropout(other.hidden_dropout)
    {
    }

    std::size_t hidden_size() const { return word_embeddings.dim(1); }

    /// Copies the word vectors of `count` ids into rows `rows[i]` of `out` (rows i when `rows` is null).
    template <backend_in<T, Space> Backend>
    void embed_words(const Backend& backend, id_pointer ids, std::size_t count, pointer out, row_pointer rows = nullptr) const
    {
        backend.copy_rows(word_embeddings.data(), ids, out, rows, count, hidden_size());
    }

    /// rows[i] = LN(rows[i] + token_type[types[i]] + position[positions[i]]) for `count` rows, in place,
    /// then dropout when `dropout_rng` is given, its elements numbered from row `first_row` (see
    /// `batch_offset`). `pre_norm` and `dropout`, when given, keep what `backward` needs.
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, pointer rows, std::size_t count, id_pointer positions, id_pointer types,
                 tensor<T, Space>* pre_norm = nullptr, random_generator* dropout_rng = nullptr, dropout_draw* dropout = nullptr,
                 std::size_t first_row = 0) const
    {
        const std::size_t h = hidden_size();
        // Same order of additions as HF: (element + type) + position.
        backend.add_type_and_position_rows(rows, count, h, token_type_embeddings.data(), types, position_embeddings.data(),
                                           positions);
        norm.forward(backend, rows, const_pointer{}, rows, count, pre_norm);
        const dropout_draw drop = draw_dropout(hidden_dropout, dropout_rng, first_row * h);
        if (dropout != nullptr) *dropout = drop;
        apply_dropout(backend, rows, count * h, drop);
    }

    /// Throws unless there are as many position ids as type ids and each lies within its table.
    void check_positions_and_types(std::span<const std::int64_t> positions, std::span<const std::int64_t> types) const
    {
        if (positions.size() != types.size())
            throw shape_error("bert_embeddings: " + std::to_string(positions.size()) + " position ids but " +
                              std::to_string(types.size()) + " token type ids");
        check_ids(positions, position_embeddings.dim(0), "position id");
        check_ids(types, token_type_embeddings.dim(0), "token type id");
    }

    /// Backward of `forward` run with `pre_norm`: `rows` holds d(output) on entry and d(element rows) on
    /// return; position, type and LayerNorm gradients accumulate into `grad`.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const tensor<T, Space>& pre_norm, const dropout_draw& dropout, std::size_t count,
                  id_pointer positions, id_pointer types, pointer rows, bert_embeddings& grad) const
    {
        const std::size_t h = hidden_size();
        tensor<T, Space> d_output({count, h}, uninitialized);
        backend.copy(const_pointer(rows), d_output.size(), d_output.data());
        apply_dropout(backend, d_output.data(), d_output.size(), dropout);
        norm.backward(backend, pre_norm.data(), std::as_const(d_output).data(), rows, count, grad.norm);
        const row_pointer identity = nullptr;
        backend.add_rows(const_pointer(rows), identity, grad.token_type_embeddings.data(), types, count, h);
        backend.add_rows(const_pointer(rows), identity, grad.position_embeddings.data(), positions, count, h);
    }

    /// Adds the gradients of rows `rows[i]` of `d_rows` (rows i when `rows` is null) to the rows of the
    /// `count` ids in `grad.word_embeddings`, in the order of `ids`.
    template <training_backend_in<T, Space> Backend>
    void backward_words(const Backend& backend, id_pointer ids, std::size_t count, const_pointer d_rows, bert_embeddings& grad,
                        row_pointer rows = nullptr) const
    {
        backend.add_rows(d_rows, rows, grad.word_embeddings.data(), ids, count, hidden_size());
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        visit(prefix + "word_embeddings.weight", word_embeddings);
        visit(prefix + "position_embeddings.weight", position_embeddings);
        visit(prefix + "token_type_embeddings.weight", token_type_embeddings);
        norm.for_each_parameter(prefix + "LayerNorm.", visit);
    }

    void initialize(random_generator& rng, double stddev)
        requires on_host
    {
        fill_normal(word_embeddings, rng, stddev);
        fill_normal(position_embeddings, rng, stddev);
        fill_normal(token_type_embeddings, rng, stddev);
    }
};

}  // namespace dm2s2::nn
