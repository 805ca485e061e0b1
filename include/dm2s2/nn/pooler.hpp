#pragma once
/// \file
/// `pooler`: HuggingFace `BertPooler`, tanh(W h_[CLS] + b) on the first row of each sequence.

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "dm2s2/nn/attention.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// The [CLS] pooler with HF names `dense.weight`, `dense.bias`, in memory space `Space`.
template <scalar T, memory_space Space = host_space>
struct pooler {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;

    linear<T, Space> dense;

    pooler() = default;
    explicit pooler(std::size_t hidden)
        requires host_accessible_space<Space>
        : dense(hidden, hidden)
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    pooler(const pooler<T, From>& other, Transfer&& transfer) : dense(other.dense, transfer)
    {
    }

    /// The [CLS] rows `first` [batch, H] → out [batch, H].
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, const_pointer first, std::size_t batch, pointer out) const
    {
        dense.forward(backend, first, batch, out);
        backend.tanh(out, batch * dense.out_features());
    }

    /// Backward of the pooler for the [CLS] rows `first` [batch, H] it read and its output `pooled`:
    /// writes d(first) and accumulates the dense gradients into `grad`.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const_pointer first, const_pointer pooled, const_pointer d_pooled, std::size_t batch,
                  pointer d_first, pooler& grad) const
    {
        const std::size_t h = dense.out_features();
        tensor<T, Space> d_pre({batch, h}, uninitialized);
        backend.copy(d_pooled, batch * h, d_pre.data());
        backend.tanh_backward(pooled, d_pre.data(), d_pre.size());
        dense.backward(backend, first, std::as_const(d_pre).data(), batch, d_first, grad.dense);
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        dense.for_each_parameter(prefix + "dense.", visit);
    }
};

}  // namespace dm2s2::nn
