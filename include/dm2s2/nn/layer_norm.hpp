#pragma once
/// \file
/// `layer_norm`: y = (v − mean) / sqrt(var + eps) · γ + β over the last dimension, v = x + residual,
/// with the biased variance (as torch.nn.LayerNorm).

#include <cstddef>
#include <string>

#include "dm2s2/backend/backend.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/nn/parameter.hpp"

namespace dm2s2::nn {

/// Layer normalisation with HuggingFace parameter names `weight` (γ) and `bias` (β).
template <scalar T>
struct layer_norm {
    tensor<T> weight;
    tensor<T> bias;
    T eps = T(1e-12);

    layer_norm() = default;
    layer_norm(std::size_t features, double epsilon) : weight({features}, T(1)), bias({features}), eps(static_cast<T>(epsilon)) {}

    std::size_t features() const { return weight.dim(0); }

    /// y = LN(x + residual) for `rows` rows; residual may be null, y may alias x.
    template <backend_for<T> Backend>
    void forward(const Backend& backend, const T* x, const T* residual, T* y, std::size_t rows) const
    {
        backend.layer_norm(x, residual, y, rows, features(), weight.data(), bias.data(), eps);
    }

    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        visit(prefix + "weight", weight);
        visit(prefix + "bias", bias);
    }
};

}  // namespace dm2s2::nn
