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

/// The [CLS] pooler with HF names `dense.weight`, `dense.bias`.
template <scalar T>
struct pooler {
    linear<T> dense;

    pooler() = default;
    explicit pooler(std::size_t hidden) : dense(hidden, hidden) {}

    /// hidden [rows, H] → out [batch, H] from row 0 of each sequence.
    template <host_backend_for<T> Backend>
    void forward(const Backend& backend, const T* hidden, batch_layout layout, T* out) const
    {
        const std::size_t h = dense.in_features();
        tensor<T> first({layout.batch, h}, uninitialized);
        std::vector<std::size_t> first_rows(layout.batch);  // row 0 of each sequence
        for (std::size_t b = 0; b < layout.batch; ++b) first_rows[b] = layout.first_row(b);
        backend.copy_rows(hidden, first_rows.data(), first.data(), static_cast<const std::size_t*>(nullptr), layout.batch, h);
        dense.forward(backend, first.data(), layout.batch, out);
        backend.tanh(out, layout.batch * h);
    }

    /// Backward of the pooler for the [CLS] rows `first` [batch, H] it read and its output `pooled`:
    /// writes d(first) and accumulates the dense gradients into `grad`.
    template <host_training_backend_for<T> Backend>
    void backward(const Backend& backend, const T* first, const T* pooled, const T* d_pooled, std::size_t batch,
                  T* d_first, pooler& grad) const
    {
        const std::size_t h = dense.out_features();
        tensor<T> d_pre({batch, h}, uninitialized);
        backend.copy(d_pooled, batch * h, d_pre.data());
        backend.tanh_backward(pooled, d_pre.data(), d_pre.size());
        dense.backward(backend, first, d_pre.data(), batch, d_first, grad.dense);
    }

    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        dense.for_each_parameter(prefix + "dense.", visit);
    }
};

}  // namespace dm2s2::nn
