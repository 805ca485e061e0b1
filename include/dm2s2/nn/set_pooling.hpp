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
template <scalar T, memory_space Space = host_space>
struct element_mlp_cache {
    tensor<T, Space> input, pre_activation, activation;
};

/// `y = W2 GELU(W1 x + b1) + b2`, row by row (no interaction between elements); H → H → H. Its
/// parameters live in memory space `Space`.
template <scalar T, memory_space Space = host_space>
struct element_mlp {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;

    linear<T, Space> first, second;

    element_mlp() = default;
    explicit element_mlp(std::size_t hidden)
        requires host_accessible_space<Space>
        : first(hidden, hidden), second(hidden, hidden)
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    element_mlp(const element_mlp<T, From>& other, Transfer&& transfer)
        : first(other.first, transfer), second(other.second, transfer)
    {
    }

    /// x, y: [rows, H]; y must not alias x.
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, const_pointer x, std::size_t rows, pointer y,
                 element_mlp_cache<T, Space>* cache = nullptr) const
    {
        tensor<T, Space> inner({rows, first.out_features()}, uninitialized);  // the product writes it
        first.forward(backend, x, rows, inner.data());
        if (cache != nullptr) {
            cache->input.resize({rows, first.in_features()}, uninitialized);
            backend.copy(x, cache->input.size(), cache->input.data());
            cache->pre_activation = inner;
        }
        backend.gelu(inner.data(), inner.size());
        second.forward(backend, std::as_const(inner).data(), rows, y);
        if (cache != nullptr) cache->activation = std::move(inner);
    }

    /// Backward of `forward` run with `cache`: dy → dx (both [rows, H]); gradients accumulate into `grad`.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const element_mlp_cache<T, Space>& cache, std::size_t rows, const_pointer dy,
                  pointer dx, element_mlp& grad) const
    {
        tensor<T, Space> d_inner({rows, first.out_features()}, uninitialized);  // beta = 0: the product writes it
        second.backward(backend, cache.activation.data(), dy, rows, d_inner.data(), grad.second);
        backend.gelu_backward(cache.pre_activation.data(), d_inner.data(), d_inner.size());
        first.backward(backend, cache.input.data(), std::as_const(d_inner).data(), rows, dx, grad.first);
    }

    /// Names `0.{weight,bias}` and `1.{weight,bias}` after `prefix`.
    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        first.for_each_parameter(prefix + "0.", visit);
        second.for_each_parameter(prefix + "1.", visit);
    }

    void initialize(random_generator& rng, double stddev)
        requires host_accessible_space<Space>
    {
        first.initialize(rng, stddev);
        second.initialize(rng, stddev);
    }
};

/// Element-wise maximum over each of `group_count` groups of rows of `x` ([rows, width]) into `out`
/// ([groups, width]); `argmax` ([groups, width]) receives the row each maximum came from. Groups must not
/// be empty.
template <scalar T, class Backend>
    requires backend_for<Backend, T>
void max_pool(const Backend& backend, backend_pointer<Backend, const T> x, std::size_t width,
              backend_pointer<Backend, const row_group> groups, std::size_t group_count, backend_pointer<Backend, T> out,
              tensor<std::uint32_t, backend_space<Backend>>& argmax)
{
    argmax.resize({group_count, width}, uninitialized);  // every entry is written
    backend.max_pool(x, width, groups, group_count, out, argmax.data());
}

/// Backward of `max_pool`: routes each output gradient to the row its maximum came from; `dx`
/// ([rows, width]) is overwritten.
template <scalar T, class Backend>
    requires training_backend_for<Backend, T>
void max_pool_backward(const Backend& backend, backend_pointer<Backend, const T> d_out, std::size_t width, std::size_t rows,
                       const tensor<std::uint32_t, backend_space<Backend>>& argmax, backend_pointer<Backend, T> dx)
{
    backend.max_pool_backward(d_out, width, argmax.empty() ? 0 : argmax.dim(0), argmax.data(), rows, dx);
}

}  // namespace dm2s2::nn
