#pragma once
/// \file
/// `encoder_layer` (HuggingFace `BertLayer`, post-LN) and `encoder`, the stack of layers, with the
/// optional capture of every hidden state and attention map.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dm2s2/nn/attention.hpp"
#include "dm2s2/nn/feed_forward.hpp"

namespace dm2s2::nn {

/// What `encoder_layer::backward` needs from the forward pass.
template <scalar T, memory_space Space = host_space>
struct encoder_layer_cache {
    self_attention_cache<T, Space> attention;
    feed_forward_cache<T, Space> ffn;
};

/// One transformer layer: a = LN(x + MHA(x)), y = LN(a + FFN(a)), its parameters in memory space
/// `Space`.
template <scalar T, memory_space Space = host_space>
struct encoder_layer {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;

    self_attention<T, Space> attention;
    feed_forward<T, Space> ffn;

    encoder_layer() = default;
    explicit encoder_layer(const bert_config& c)
        requires host_accessible_space<Space>
        : attention(c), ffn(c)
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`): a host layer uploaded to a device,
    /// for instance.
    template <memory_space From, class Transfer>
    encoder_layer(const encoder_layer<T, From>& other, Transfer&& transfer)
        : attention(other.attention, transfer), ffn(other.ffn, transfer)
    {
    }

    /// x → y, both [rows, H]; y must not alias x. With `cache`, the backward intermediates are kept; with
    /// `dropout_rng` (training), dropout is applied.
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, const_pointer x, batch_layout layout, space_pointer<const std::uint8_t, Space> key_mask,
                 pointer y, pointer probabilities = nullptr, encoder_layer_cache<T, Space>* cache = nullptr,
                 random_generator* dropout_rng = nullptr) const
    {
        tensor<T, Space> a({layout.rows(), attention.hidden_size()}, uninitialized);
        attention.forward(backend, x, layout, key_mask, a.data(), probabilities, cache ? &cache->attention : nullptr,
                          dropout_rng);
        ffn.forward(backend, std::as_const(a).data(), layout.rows(), y, cache ? &cache->ffn : nullptr, dropout_rng,
                    layout.offset.rows);
    }

    /// Backward of `forward` run with `cache`: dy → dx (both [rows, H]); gradients accumulate into `grad`.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const encoder_layer_cache<T, Space>& cache, batch_layout layout, const_pointer dy,
                  pointer dx, encoder_layer& grad) const
    {
        tensor<T, Space> da({layout.rows(), attention.hidden_size()}, uninitialized);  // the FFN's LayerNorm backward writes it
        ffn.backward(backend, cache.ffn, layout.rows(), dy, da.data(), grad.ffn);
        attention.backward(backend, cache.attention, layout, std::as_const(da).data(), dx, grad.attention);
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        attention.for_each_parameter(prefix + "attention.", visit);
        ffn.for_each_parameter(prefix, visit);
    }

    void initialize(random_generator& rng, double stddev)
    {
        attention.initialize(rng, stddev);
        ffn.initialize(rng, stddev);
    }

    /// The layer's six affine maps, which carry all of its products with weights.
    std::array<linear<T, Space>*, 6> linears() noexcept
    {
        return {&attention.query, &attention.key, &attention.value, &attention.output, &ffn.intermediate, &ffn.output};
    }
};

/// What the encoder records besides its output.
template <scalar T, memory_space Space = host_space>
struct encoder_trace {
    std::vector<tensor<T, Space>> hidden_states;  ///< [layers + 1] × [rows, H]; 0 is the encoder input
    std::vector<tensor<T, Space>> attentions;     ///< [layers] × [batch, heads, length, length] (ragged: flat blocks)
};

/// The stack of encoder layers (HuggingFace `BertEncoder`, names `layer.{i}.…`), its parameters in
/// memory space `Space`.
template <scalar T, memory_space Space = host_space>
struct encoder {
    std::vector<encoder_layer<T, Space>> layers;

    encoder() = default;
    explicit encoder(const bert_config& c)
        requires host_accessible_space<Space>
        : layers(c.num_hidden_layers, encoder_layer<T>(c))
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    encoder(const encoder<T, From>& other, Transfer&& transfer)
    {
        layers.reserve(other.layers.size());
        for (const auto& layer : other.layers) layers.emplace_back(layer, transfer);
    }

    /// Runs every layer over `hidden` ([rows, H]) in place. When `trace` is given it receives the input
    /// and each layer's output, and the attention probabilities; `caches`, when given, receives one
    /// backward cache per layer; `dropout_rng` (training) turns dropout on.
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, tensor<T, Space>& hidden, batch_layout layout,
                 space_pointer<const std::uint8_t, Space> key_mask, encoder_trace<T, Space>* trace = nullptr,
                 std::vector<encoder_layer_cache<T, Space>>* caches = nullptr, random_generator* dropout_rng = nullptr) const
    {
        if (caches != nullptr) caches->assign(layers.size(), {});
        if (trace != nullptr) {
            trace->hidden_states.assign(1, hidden);
            trace->attentions.clear();
        }
        tensor<T, Space> next(hidden.shape(), uninitialized);  // each layer writes its whole output
        for (std::size_t i = 0; i < layers.size(); ++i) {
            space_pointer<T, Space> probabilities = nullptr;
            if (trace != nullptr) {
                const std::size_t heads = layers[i].attention.heads;
                trace->attentions.emplace_back(layout.ragged() ? shape_t{layout.attention_offset(layout.batch, heads)}
                                                               : shape_t{layout.batch, heads, layout.length, layout.length},
                                               uninitialized);  // the layer writes every map
                probabilities = trace->attentions.back().data();
            }
            layers[i].forward(backend, hidden.data(), layout, key_mask, next.data(), probabilities,
                              caches ? &(*caches)[i] : nullptr, dropout_rng);
            std::swap(hidden, next);
            if (trace != nullptr) trace->hidden_states.push_back(hidden);
        }
    }

    /// Backward through every layer: `grad_hidden` holds d(output) on entry and d(input) on return.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const std::vector<encoder_layer_cache<T, Space>>& caches, batch_layout layout,
                  tensor<T, Space>& grad_hidden, encoder& grad) const
    {
        tensor<T, Space> next(grad_hidden.shape(), uninitialized);  // each layer writes its whole dx
        for (std::size_t i = layers.size(); i-- > 0;) {
            layers[i].backward(backend, caches[i], layout, std::as_const(grad_hidden).data(), next.data(), grad.layers[i]);
            std::swap(grad_hidden, next);
        }
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        for (std::size_t i = 0; i < layers.size(); ++i)
            layers[i].for_each_parameter(prefix + "layer." + std::to_string(i) + ".", visit);
    }

    void initialize(random_generator& rng, double stddev)
    {
        for (auto& layer : layers) layer.initialize(rng, stddev);
    }

    /// Packs every layer's weights for `backend`, rounded where `allowed` says so
    /// (`linear::pack_weights`); returns how many it packed.
    template <backend_in<T, Space> Backend>
    std::size_t pack_weights(const Backend& backend, weight_rounding allowed = weight_rounding::none)
    {
        std::size_t packed = 0;
        for (auto& layer : layers)
            for (linear<T, Space>* l : layer.linears()) packed += l->pack_weights(backend, allowed) ? 1 : 0;
        return packed;
    }

    /// Puts every packed weight back into plain form.
    void unpack_weights()
    {
        for (auto& layer : layers)
            for (linear<T, Space>* l : layer.linears()) l->unpack_weights();
    }
};

}  // namespace dm2s2::nn
