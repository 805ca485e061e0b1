#pragma once
/// \file
/// `feed_forward`: HuggingFace `BertIntermediate` + `BertOutput`: y = LN(x + W2 GELU(W1 x + b1) + b2).

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>

#include "dm2s2/nn/bert_config.hpp"
#include "dm2s2/nn/dropout.hpp"
#include "dm2s2/nn/layer_norm.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// What `feed_forward::backward` needs from the forward pass.
template <scalar T, memory_space Space = host_space>
struct feed_forward_cache {
    tensor<T, Space> input, pre_activation, activation, pre_norm;
    dropout_draw output_dropout;  ///< the dropout applied (inactive: none)
};

/// Position-wise feed-forward block with residual and LayerNorm (GELU, erf form), its parameters in
/// memory space `Space`.
template <scalar T, memory_space Space = host_space>
struct feed_forward {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;

    linear<T, Space> intermediate, output;
    layer_norm<T, Space> output_norm;
    double hidden_dropout = 0;  ///< on the output projection, before the residual

    feed_forward() = default;
    explicit feed_forward(const bert_config& c)
        requires host_accessible_space<Space>
        : intermediate(c.hidden_size, c.intermediate_size),
          output(c.intermediate_size, c.hidden_size),
          output_norm(c.hidden_size, c.layer_norm_eps),
          hidden_dropout(c.hidden_dropout_prob)
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    feed_forward(const feed_forward<T, From>& other, Transfer&& transfer)
        : intermediate(other.intermediate, transfer),
          output(other.output, transfer),
          output_norm(other.output_norm, transfer),
          hidden_dropout(other.hidden_dropout)
    {
    }

    /// x, y: [rows, H]; y must not alias x. With `cache`, the intermediates of the backward pass are kept;
    /// with `dropout_rng` (training), dropout is applied, its elements numbered from row `first_row`
    /// (see `batch_offset`).
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, const_pointer x, std::size_t rows, pointer y,
                 feed_forward_cache<T, Space>* cache = nullptr, random_generator* dropout_rng = nullptr,
                 std::size_t first_row = 0) const
    {
        tensor<T, Space> inner({rows, intermediate.out_features()}, uninitialized);
        if (cache == nullptr) {
            intermediate.forward(backend, x, rows, inner.data(), activation::gelu);  // fused where the backend can
        } else {  // the backward pass needs the values before GELU
            intermediate.forward(backend, x, rows, inner.data());
            cache->input.resize({rows, output.out_features()}, uninitialized);
            backend.copy(x, cache->input.size(), cache->input.data());
            cache->pre_activation = inner;
            backend.gelu(inner.data(), inner.size());
        }
        output.forward(backend, std::as_const(inner).data(), rows, y);
        const dropout_draw drop = draw_dropout(hidden_dropout, dropout_rng, first_row * output.out_features());
        if (cache != nullptr) cache->output_dropout = drop;
        apply_dropout(backend, y, rows * output.out_features(), drop);
        output_norm.forward(backend, y, x, y, rows, cache ? &cache->pre_norm : nullptr);
        if (cache != nullptr) cache->activation = std::move(inner);
    }

    /// Backward of `forward` run with `cache`: dy → dx (both [rows, H]); gradients accumulate into `grad`.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const feed_forward_cache<T, Space>& cache, std::size_t rows, const_pointer dy,
                  pointer dx, feed_forward& grad) const
    {
        tensor<T, Space> d_inner({rows, intermediate.out_features()}, uninitialized);          // the output projection's dx
        output_norm.backward(backend, cache.pre_norm.data(), dy, dx, rows, grad.output_norm);  // dx: residual path
        tensor<T, Space> d_projection({rows, output.out_features()}, uninitialized);
        backend.copy(const_pointer(dx), d_projection.size(), d_projection.data());
        apply_dropout(backend, d_projection.data(), d_projection.size(), cache.output_dropout);
        output.backward(backend, cache.activation.data(), std::as_const(d_projection).data(), rows, d_inner.data(), grad.output);
        backend.gelu_backward(cache.pre_activation.data(), d_inner.data(), d_inner.size());
        intermediate.backward(backend, cache.input.data(), std::as_const(d_inner).data(), rows, dx, grad.intermediate, true);
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        intermediate.for_each_parameter(prefix + "intermediate.dense.", visit);
        output.for_each_parameter(prefix + "output.dense.", visit);
        output_norm.for_each_parameter(prefix + "output.LayerNorm.", visit);
    }

    void initialize(random_generator& rng, double stddev)
    {
        intermediate.initialize(rng, stddev);
        output.initialize(rng, stddev);
    }
};

}  // namespace dm2s2::nn
