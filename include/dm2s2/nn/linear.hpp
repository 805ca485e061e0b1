#pragma once
/// \file
/// `linear`: y = x Wᵀ + b with W stored [out, in] as in PyTorch.

#include <cstddef>
#include <string>

#include "dm2s2/backend/backward_kernels.hpp"
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

    /// Backward of `forward` for input x [rows, in] and output gradient dy [rows, out]: accumulates
    /// dW += dyᵀ x and db += Σ dy into `grad`; writes dx = dy W (adds it when `accumulate_dx`), or
    /// skips it when dx is null.
    template <training_backend_for<T> Backend>
    void backward(const Backend& backend, const T* x, const T* dy, std::size_t rows, T* dx, linear& grad,
                  bool accumulate_dx = false) const
    {
        backend.gemm(transpose::yes, transpose::no, out_features(), in_features(), rows, T(1), dy, out_features(), x,
                     in_features(), T(1), grad.weight.data(), in_features());
        backend.add_column_sums(dy, rows, out_features(), out_features(), grad.bias.data());
        if (dx != nullptr)
            backend.gemm(transpose::no, transpose::no, rows, in_features(), out_features(), T(1), dy, out_features(),
                         weight.data(), in_features(), accumulate_dx ? T(1) : T(0), dx, in_features());
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
