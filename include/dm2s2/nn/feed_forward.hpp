#pragma once
/// \file
/// `feed_forward`: HuggingFace `BertIntermediate` + `BertOutput`: y = LN(x + W2 GELU(W1 x + b1) + b2).

#include <cstddef>
#include <string>

#include "dm2s2/nn/bert_config.hpp"
#include "dm2s2/nn/layer_norm.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// Position-wise feed-forward block with residual and LayerNorm (GELU, erf form).
template <scalar T>
struct feed_forward {
    linear<T> intermediate, output;
    layer_norm<T> output_norm;

    feed_forward() = default;
    explicit feed_forward(const bert_config& c)
        : intermediate(c.hidden_size, c.intermediate_size), output(c.intermediate_size, c.hidden_size),
          output_norm(c.hidden_size, c.layer_norm_eps)
    {
    }

    /// x, y: [rows, H]; y must not alias x.
    template <backend_for<T> Backend>
    void forward(const Backend& backend, const T* x, std::size_t rows, T* y) const
    {
        tensor<T> inner({rows, intermediate.out_features()});
        intermediate.forward(backend, x, rows, inner.data());
        backend.gelu(inner.data(), inner.size());
        output.forward(backend, inner.data(), rows, y);
        output_norm.forward(backend, y, x, y, rows);
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
