#pragma once
/// \file
/// The pieces of the Deep Multimodal Sets baseline (`dm2s`, docs/design.md §6): a two-layer MLP applied to
/// each element on its own, and an element-wise max over the elements of each record.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dm2s2/nn/linear.hpp"
#include "dm2s2/nn/modality_attention.hpp"

namespace dm2s2::nn {

/// What `element_mlp::backward` needs from the forward pass.
template <scalar T>
struct element_mlp_cache {
    tensor<T> input, pre_activation, activation;
};

/// `y = W2 GELU(W1 x + b1) + b2`, row by row (no interaction between elements); H → H → H.
template <scalar T>
struct element_mlp {
    linear<T> first, second;

    element_mlp() = default;
    explicit element_mlp(std::size_t hidden) : first(hidden, hidden), second(hidden, hidden) {}

    /// x, y: [rows, H]; y must not alias x.
    template <host_backend_for<T> Backend>
    void forward(const Backend& backend, const T* x, std::size_t rows, T* y, element_mlp_cache<T>* cache = nullptr) const
    {
        tensor<T> inner({rows, first.out_features()});
        first.forward(backend, x, rows, inner.data());
        if (cache != nullptr) {
            cache->input.resize({rows, first.in_features()});
            backend.copy(x, cache->input.size(), cache->input.data());
            cache->pre_activation = inner;
        }
        backend.gelu(inner.data(), inner.size());
        second.forward(backend, inner.data(), rows, y);
        if (cache != nullptr) cache->activation = std::move(inner);
    }

    /// Backward of `forward` run with `cache`: dy → dx (both [rows, H]); gradients accumulate into `grad`.
    template <host_training_backend_for<T> Backend>
    void backward(const Backend& backend, const element_mlp_cache<T>& cache, std::size_t rows, const T* dy, T* dx,
                  element_mlp& grad) const
    {
        tensor<T> d_inner({rows, first.out_features()});
        second.backward(backend, cache.activation.data(), dy, rows, d_inner.data(), grad.second);
        backend.gelu_backward(cache.pre_activation.data(), d_inner.data(), d_inner.size());
        first.backward(backend, cache.input.data(), d_inner.data(), rows, dx, grad.first);
    }

    /// Names `0.{weight,bias}` and `1.{weight,bias}` after `prefix`.
    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        first.for_each_parameter(prefix + "0.", visit);
        second.for_each_parameter(prefix + "1.", visit);
    }

    void initialize(random_generator& rng, double stddev)
    {
        first.initialize(rng, stddev);
        second.initialize(rng, stddev);
    }
};

/// Element-wise maximum over each group of rows of `x` ([rows, width]) into `out` ([groups, width]);
/// `argmax` ([groups · width]) receives the row each maximum came from. Groups must not be empty.
template <scalar T, host_backend_for<T> Backend>
void max_pool(const Backend& backend, const T* x, std::size_t width, std::span<const row_group> groups, T* out,
              std::vector<std::uint32_t>& argmax)
{
    argmax.resize(groups.size() * width);
    backend.max_pool(x, width, groups.data(), groups.size(), out, argmax.data());
}

/// Backward of `max_pool`: routes each output gradient to the row its maximum came from; `dx`
/// ([rows, width]) is overwritten.
template <scalar T, host_training_backend_for<T> Backend>
void max_pool_backward(const Backend& backend, const T* d_out, std::size_t width, std::size_t rows,
                       std::span<const std::uint32_t> argmax, T* dx)
{
    backend.max_pool_backward(d_out, width, argmax.size() / std::max<std::size_t>(width, 1), argmax.data(), rows, dx);
}

}  // namespace dm2s2::nn
