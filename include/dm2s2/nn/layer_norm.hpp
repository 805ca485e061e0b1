#pragma once
/// \file
/// `layer_norm`: y = (v − mean) / sqrt(var + eps) · γ + β over the last dimension, v = x + residual,
/// with the biased variance (as torch.nn.LayerNorm).

#include <cstddef>
#include <string>
#include <utility>

#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/nn/parameter.hpp"

namespace dm2s2::nn {

/// Layer normalisation with HuggingFace parameter names `weight` (γ) and `bias` (β), its parameters
/// in memory space `Space`.
template <scalar T, memory_space Space = host_space>
struct layer_norm {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;

    tensor<T, Space> weight;
    tensor<T, Space> bias;
    T eps = T(1e-12);

    layer_norm() = default;
    layer_norm(std::size_t features, double epsilon)
        requires host_accessible_space<Space>
        : weight({features}, T(1)), bias({features}), eps(static_cast<T>(epsilon))
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    layer_norm(const layer_norm<T, From>& other, Transfer&& transfer)
        : weight(transfer(other.weight)), bias(transfer(other.bias)), eps(other.eps)
    {
    }

    std::size_t features() const { return weight.dim(0); }

    /// y = LN(x + residual) for `rows` rows; residual may be null, y may alias x. When `input` is given
    /// it receives x + residual, which `backward` needs.
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, const_pointer x, const_pointer residual, pointer y, std::size_t rows,
                 tensor<T, Space>* input = nullptr) const
    {
        if (input == nullptr) {
            backend.layer_norm(x, residual, y, rows, features(), weight.data(), bias.data(), eps);
            return;
        }
        input->resize({rows, features()}, uninitialized);
        if (residual != nullptr) backend.add(x, residual, input->data(), input->size());
        else backend.copy(x, input->size(), input->data());
        backend.layer_norm(std::as_const(*input).data(), const_pointer{}, y, rows, features(), weight.data(), bias.data(), eps);
    }

    /// Backward of `forward`: `v` is the forward's x + residual, dy the output gradient; writes dv (the
    /// gradient of both x and residual) and accumulates dγ, dβ into `grad`.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const_pointer v, const_pointer dy, pointer dv, std::size_t rows, layer_norm& grad) const
    {
        backend.layer_norm_backward(v, dy, dv, rows, features(), weight.data(), eps, grad.weight.data(), grad.bias.data());
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        visit(prefix + "weight", weight);
        visit(prefix + "bias", bias);
    }
};

}  // namespace dm2s2::nn
