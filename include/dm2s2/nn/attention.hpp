#pragma once
/// \file
/// `self_attention`: HuggingFace `BertAttention` (self-attention and its output block):
/// out = LN(x + Dense(MultiHead(x))), scores QKᵀ/√d, masked keys with exactly zero weight.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dm2s2/core/batch_layout.hpp"
#include "dm2s2/nn/bert_config.hpp"
#include "dm2s2/nn/dropout.hpp"
#include "dm2s2/nn/layer_norm.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// What `self_attention::backward` needs from the forward pass.
template <scalar T, memory_space Space = host_space>
struct self_attention_cache {
    tensor<T, Space> input, q, k, v, probabilities, context, pre_norm;
    dropout_draw probability_dropout, output_dropout;  ///< the dropout applied (inactive: none)
};

/// Multi-head self-attention with its output projection, residual and LayerNorm, its parameters in
/// memory space `Space`.
template <scalar T, memory_space Space = host_space>
struct self_attention {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;
    using mask_pointer = space_pointer<const std::uint8_t, Space>;

    linear<T, Space> query, key, value, output;
    layer_norm<T, Space> output_norm;
    std::size_t heads = 1;
    double attention_dropout = 0;  ///< on the attention probabilities
    double hidden_dropout = 0;     ///< on the output projection, before the residual

    self_attention() = default;
    explicit self_attention(const bert_config& c)
        requires host_accessible_space<Space>
        : query(c.hidden_size, c.hidden_size),
          key(c.hidden_size, c.hidden_size),
          value(c.hidden_size, c.hidden_size),
          output(c.hidden_size, c.hidden_size),
          output_norm(c.hidden_size, c.layer_norm_eps),
          heads(c.num_attention_heads),
          attention_dropout(c.attention_probs_dropout_prob),
          hidden_dropout(c.hidden_dropout_prob)
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    self_attention(const self_attention<T, From>& other, Transfer&& transfer)
        : query(other.query, transfer),
          key(other.key, transfer),
          value(other.value, transfer),
          output(other.output, transfer),
          output_norm(other.output_norm, transfer),
          heads(other.heads),
          attention_dropout(other.attention_dropout),
          hidden_dropout(other.hidden_dropout)
    {
    }

    std::size_t hidden_size() const { return query.in_features(); }

    /// x, y: [rows, H]; key_mask: [rows], non-zero where a row may be attended to (null: every row is
    /// real, as in a ragged layout). Padding rows still get an output (they attend to the unmasked keys),
    /// as in HF. `probabilities`, when not null, receives the attention weights sequence after sequence
    /// as [heads, len, len] blocks (padded: [batch, heads, length, length]). y must not alias x. With
    /// `cache`, the intermediates of the backward pass are kept; with `dropout_rng` (training), dropout
    /// is applied. Every sequence and head runs in one backend operation (`attention_forward`).
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, const_pointer x, batch_layout layout, mask_pointer key_mask, pointer y,
                 pointer probabilities = nullptr, self_attention_cache<T, Space>* cache = nullptr,
                 random_generator* dropout_rng = nullptr) const
    {
        const std::size_t h = hidden_size(), n = layout.rows(), d = h / heads;
        self_attention_cache<T, Space> local;
        auto& c = cache ? *cache : local;
        if (cache != nullptr) {
            c.input.resize({n, h}, uninitialized);
            backend.copy(x, n * h, c.input.data());
            c.probabilities.resize({layout.attention_offset(layout.batch, heads)}, uninitialized);  // the maps fill it
        }
        for (auto* t : {&c.q, &c.k, &c.v, &c.context}) t->resize({n, h}, uninitialized);  // products overwrite them
        query.forward(backend, x, n, c.q.data());
        key.forward(backend, x, n, c.k.data());
        value.forward(backend, x, n, c.v.data());
        const T scale = T(1) / std::sqrt(static_cast<T>(d));
        const attention_shape shape{layout, heads, d};
        const std::size_t maps = shape.map_elements();
        c.probability_dropout = draw_dropout(attention_dropout, dropout_rng, layout.offset.squares * heads);
        const pointer maps_out = cache != nullptr ? c.probabilities.data() : probabilities;
        backend.attention_forward(shape, scale, std::as_const(c.q).data(), std::as_const(c.k).data(), std::as_const(c.v).data(),
                                  key_mask, maps_out, c.probability_dropout, c.context.data());
        if (cache != nullptr && probabilities != nullptr)
            backend.copy(std::as_const(c.probabilities).data(), maps, probabilities);
        output.forward(backend, std::as_const(c.context).data(), n, y);
        c.output_dropout = draw_dropout(hidden_dropout, dropout_rng, layout.offset.rows * h);
        apply_dropout(backend, y, n * h, c.output_dropout);
        output_norm.forward(backend, y, x, y, n, cache ? &c.pre_norm : nullptr);
    }

    /// Backward of `forward` run with `cache`: dy [rows, H] → dx [rows, H]; parameter gradients are
    /// accumulated into `grad`.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const self_attention_cache<T, Space>& cache, batch_layout layout, const_pointer dy,
                  pointer dx, self_attention& grad) const
    {
        const std::size_t h = hidden_size(), n = layout.rows(), d = h / heads;
        // Every one is overwritten in full: by the LayerNorm backward, the output projection's dx, and
        // the products of every (sequence, head) block.
        tensor<T, Space> d_pre({n, h}, uninitialized), d_context({n, h}, uninitialized), dq({n, h}, uninitialized),
            dk({n, h}, uninitialized), dv({n, h}, uninitialized);
        output_norm.backward(backend, cache.pre_norm.data(), dy, d_pre.data(), n, grad.output_norm);
        tensor<T, Space> d_projection = d_pre;
        apply_dropout(backend, d_projection.data(), d_projection.size(), cache.output_dropout);
        output.backward(backend, cache.context.data(), std::as_const(d_projection).data(), n, d_context.data(), grad.output);
        const T scale = T(1) / std::sqrt(static_cast<T>(d));
        backend.attention_backward(attention_shape{layout, heads, d}, scale, cache.q.data(), cache.k.data(), cache.v.data(),
                                   cache.probabilities.data(), cache.probability_dropout, std::as_const(d_context).data(),
                                   dq.data(), dk.data(), dv.data());
        backend.copy(std::as_const(d_pre).data(), n * h, dx);  // the residual path
        query.backward(backend, cache.input.data(), std::as_const(dq).data(), n, dx, grad.query, true);
        key.backward(backend, cache.input.data(), std::as_const(dk).data(), n, dx, grad.key, true);
        value.backward(backend, cache.input.data(), std::as_const(dv).data(), n, dx, grad.value, true);
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        query.for_each_parameter(prefix + "self.query.", visit);
        key.for_each_parameter(prefix + "self.key.", visit);
        value.for_each_parameter(prefix + "self.value.", visit);
        output.for_each_parameter(prefix + "output.dense.", visit);
        output_norm.for_each_parameter(prefix + "output.LayerNorm.", visit);
    }

    void initialize(random_generator& rng, double stddev)
    {
        for (auto* l : {&query, &key, &value, &output}) l->initialize(rng, stddev);
    }
};

}  // namespace dm2s2::nn
