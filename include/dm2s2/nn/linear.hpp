#pragma once
/// \file
/// `linear`: y = x Wᵀ + b with W stored [out, in] as in PyTorch.

#include <cstddef>
#include <string>

#include "dm2s2/backend/backend.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/nn/parameter.hpp"

namespace dm2s2::nn {

/// Affine map with PyTorch's parameter layout: `weight` [out, in], `bias` [out].
template <scalar T>
struct linear {
    tensor<T> weight;
    tensor<T> bias;

    linear() = default;
    linear(std::size_t in_features, std::size_t out_features)
        : weight({out_features, in_features}), bias({out_features})
    {
    }

    std::size_t in_features() const { return weight.dim(1); }
    std::size_t out_features() const { return weight.dim(0); }

    /// y[rows, out] = x[rows, in] Wᵀ + b; x and y are contiguous row-major.
    template <backend_for<T> Backend>
    void forward(const Backend& backend, const T* x, std::size_t rows, T* y) const
    {
        backend.gemm(transpose::no, transpose::yes, rows, out_features(), in_features(), T(1), x, in_features(),
                     weight.data(), in_features(), T(0), y, out_features());
        backend.add_row_vector(y, rows, out_features(), out_features(), bias.data());
    }

    /// Tensor overload: resizes y to [rows, out].
    template <backend_for<T> Backend>
    void forward(const Backend& backend, const tensor<T>& x, tensor<T>& y) const
    {
        const std::size_t rows = x.empty() ? 0 : x.size() / in_features();
        y.resize({rows, out_features()});
        forward(backend, x.data(), rows, y.data());
    }

    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        visit(prefix + "weight", weight);
        visit(prefix + "bias", bias);
    }

    /// Weights N(0, stddev), bias zero.
    void initialize(random_generator& rng, double stddev)
    {
        fill_normal(weight, rng, stddev);
        bias.fill(T(0));
    }
};

}  // namespace dm2s2::nn
