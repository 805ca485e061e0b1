#pragma once
/// \file
/// `encoder_layer` (HuggingFace `BertLayer`, post-LN) and `encoder`, the stack of layers, with the
/// optional capture of every hidden state and attention map.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dm2s2/nn/attention.hpp"
#include "dm2s2/nn/feed_forward.hpp"

namespace dm2s2::nn {

/// What `encoder_layer::backward` needs from the forward pass.
template <scalar T>
struct encoder_layer_cache {
    self_attention_cache<T> attention;
    feed_forward_cache<T> ffn;
};

/// One transformer layer: a = LN(x + MHA(x)), y = LN(a + FFN(a)).
template <scalar T>
struct encoder_layer {
    self_attention<T> attention;
    feed_forward<T> ffn;

    encoder_layer() = default;
    explicit encoder_layer(const bert_config& c) : attention(c), ffn(c) {}

    /// x → y, both [rows, H]; y must not alias x. With `cache`, the backward intermediates are kept; with
    /// `dropout_rng` (training), dropout is applied.
    template <host_backend_for<T> Backend>
    void forward(const Backend& backend, const T* x, batch_layout layout, const std::uint8_t* key_mask, T* y,
                 T* probabilities = nullptr, encoder_layer_cache<T>* cache = nullptr,
                 random_generator* dropout_rng = nullptr) const
    {
        tensor<T> a({layout.rows(), attention.hidden_size()}, uninitialized);
        attention.forward(backend, x, layout, key_mask, a.data(), probabilities, cache ? &cache->attention : nullptr,
                          dropout_rng);
        ffn.forward(backend, a.data(), layout.rows(), y, cache ? &cache->ffn : nullptr, dropout_rng);
    }

    /// Backward of `forward` run with `cache`: dy → dx (both [rows, H]); gradients accumulate into `grad`.
    template <host_training_backend_for<T> Backend>
    void backward(const Backend& backend, const encoder_layer_cache<T>& cache, batch_layout layout, const T* dy, T* dx,
                  encoder_layer& grad) const
    {
        tensor<T> da({layout.rows(), attention.hidden_size()}, uninitialized);  // the FFN's LayerNorm backward writes it
        ffn.backward(backend, cache.ffn, layout.rows(), dy, da.data(), grad.ffn);
        attention.backward(backend, cache.attention, layout, da.data(), dx, grad.attention);
    }

    template <class F>
        requires parameter_visitor<F, T>
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
    std::array<linear<T>*, 6> linears() noexcept
    {
        return {&attention.query, &attention.key, &attention.value, &attention.output, &ffn.intermediate, &ffn.output};
    }
};

/// What the encoder records besides its output.
template <scalar T>
struct encoder_trace {
    std::vector<tensor<T>> hidden_states;  ///< [layers + 1] × [rows, H]; 0 is the encoder input
    std::vector<tensor<T>> attentions;     ///< [layers] × [batch, heads, length, length] (ragged: flat blocks)
};

/// The stack of encoder layers (HuggingFace `BertEncoder`, names `layer.{i}.…`).
template <scalar T>
struct encoder {
    std::vector<encoder_layer<T>> layers;

    encoder() = default;
    explicit encoder(const bert_config& c) : layers(c.num_hidden_layers, encoder_layer<T>(c)) {}

    /// Runs every layer over `hidden` ([rows, H]) in place. When `trace` is given it receives the input
    /// and each layer's output, and the attention probabilities; `caches`, when given, receives one
    /// backward cache per layer; `dropout_rng` (training) turns dropout on.
    template <host_backend_for<T> Backend>
    void forward(const Backend& backend, tensor<T>& hidden, batch_layout layout, const std::uint8_t* key_mask,
                 encoder_trace<T>* trace = nullptr, std::vector<encoder_layer_cache<T>>* caches = nullptr,
                 random_generator* dropout_rng = nullptr) const
    {
        if (caches != nullptr) caches->assign(layers.size(), {});
        if (trace != nullptr) {
            trace->hidden_states.assign(1, hidden);
            trace->attentions.clear();
        }
        tensor<T> next(hidden.shape(), uninitialized);  // each layer writes its whole output
        for (std::size_t i = 0; i < layers.size(); ++i) {
            T* probabilities = nullptr;
            if (trace != nullptr) {
                const std::size_t heads = layers[i].attention.heads;
                trace->attentions.emplace_back(layout.ragged() ? shape_t{layout.attention_offset(layout.batch, heads)}
                                                               : shape_t{layout.batch, heads, layout.length, layout.length});
                probabilities = trace->attentions.back().data();
            }
            layers[i].forward(backend, hidden.data(), layout, key_mask, next.data(), probabilities,
                              caches ? &(*caches)[i] : nullptr, dropout_rng);
            std::swap(hidden, next);
            if (trace != nullptr) trace->hidden_states.push_back(hidden);
        }
    }

    /// Backward through every layer: `grad_hidden` holds d(output) on entry and d(input) on return.
    template <host_training_backend_for<T> Backend>
    void backward(const Backend& backend, const std::vector<encoder_layer_cache<T>>& caches, batch_layout layout,
                  tensor<T>& grad_hidden, encoder& grad) const
    {
        tensor<T> next(grad_hidden.shape(), uninitialized);  // each layer writes its whole dx
        for (std::size_t i = layers.size(); i-- > 0;) {
            layers[i].backward(backend, caches[i], layout, grad_hidden.data(), next.data(), grad.layers[i]);
            std::swap(grad_hidden, next);
        }
    }

    template <class F>
        requires parameter_visitor<F, T>
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
    template <host_backend_for<T> Backend>
    std::size_t pack_weights(const Backend& backend, weight_rounding allowed = weight_rounding::none)
    {
        std::size_t packed = 0;
        for (auto& layer : layers)
            for (linear<T>* l : layer.linears()) packed += l->pack_weights(backend, allowed) ? 1 : 0;
        return packed;
    }

    /// Puts every packed weight back into plain form.
    void unpack_weights()
    {
        for (auto& layer : layers)
            for (linear<T>* l : layer.linears()) l->unpack_weights();
    }
};

}  // namespace dm2s2::nn
