#pragma once
/// \file
/// `feed_forward`: HuggingFace `BertIntermediate` + `BertOutput`: y = LN(x + W2 GELU(W1 x + b1) + b2).

#include <algorithm>
#include <cstddef>
#include <string>

#include "dm2s2/nn/bert_config.hpp"
#include "dm2s2/nn/dropout.hpp"
#include "dm2s2/nn/layer_norm.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// What `feed_forward::backward` needs from the forward pass.
template <scalar T>
struct feed_forward_cache {
    tensor<T> input, pre_activation, activation, pre_norm;
    dropout_draw output_dropout;  ///< the dropout applied (inactive: none)
};

/// Position-wise feed-forward block with residual and LayerNorm (GELU, erf form).
template <scalar T>
struct feed_forward {
    linear<T> intermediate, output;
    layer_norm<T> output_norm;
    double hidden_dropout = 0;  ///< on the output projection, before the residual

    feed_forward() = default;
    explicit feed_forward(const bert_config& c)
        : intermediate(c.hidden_size, c.intermediate_size), output(c.intermediate_size, c.hidden_size),
          output_norm(c.hidden_size, c.layer_norm_eps), hidden_dropout(c.hidden_dropout_prob)
    {
    }

    /// x, y: [rows, H]; y must not alias x. With `cache`, the intermediates of the backward pass are kept;
    /// with `dropout_rng` (training), dropout is applied.
    template <host_backend_for<T> Backend>
    void forward(const Backend& backend, const T* x, std::size_t rows, T* y, feed_forward_cache<T>* cache = nullptr,
                 random_generator* dropout_rng = nullptr) const
    {
        tensor<T> inner({rows, intermediate.out_features()}, uninitialized);
        if (cache == nullptr) {
            intermediate.forward(backend, x, rows, inner.data(), activation::gelu);  // fused where the backend can
        } else {  // the backward pass needs the values before GELU
            intermediate.forward(backend, x, rows, inner.data());
            cache->input.resize({rows, output.out_features()});
            backend.copy(x, cache->input.size(), cache->input.data());
            cache->pre_activation = inner;
            backend.gelu(inner.data(), inner.size());
        }
        output.forward(backend, inner.data(), rows, y);
        const dropout_draw drop = draw_dropout(hidden_dropout, dropout_rng);
        if (cache != nullptr) cache->output_dropout = drop;
        apply_dropout(backend, y, rows * output.out_features(), drop);
        output_norm.forward(backend, y, x, y, rows, cache ? &cache->pre_norm : nullptr);
        if (cache != nullptr) cache->activation = std::move(inner);
    }

    /// Backward of `forward` run with `cache`: dy → dx (both [rows, H]); gradients accumulate into `grad`.
    template <host_training_backend_for<T> Backend>
    void backward(const Backend& backend, const feed_forward_cache<T>& cache, std::size_t rows, const T* dy, T* dx,
                  feed_forward& grad) const
    {
        tensor<T> d_inner({rows, intermediate.out_features()}, uninitialized);  // the output projection's dx
        output_norm.backward(backend, cache.pre_norm.data(), dy, dx, rows, grad.output_norm);  // dx: residual path
        tensor<T> d_projection({rows, output.out_features()}, uninitialized);
        backend.copy(static_cast<const T*>(dx), d_projection.size(), d_projection.data());
        apply_dropout(backend, d_projection.data(), d_projection.size(), cache.output_dropout);
        output.backward(backend, cache.activation.data(), d_projection.data(), rows, d_inner.data(), grad.output);
        backend.gelu_backward(cache.pre_activation.data(), d_inner.data(), d_inner.size());
        intermediate.backward(backend, cache.input.data(), d_inner.data(), rows, dx, grad.intermediate, true);
    }

    template <class F>
        requires parameter_visitor<F, T>
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
