#pragma once
/// \file
/// Hierarchical modality attention (docs/design.md §5). `modality_attention` scores rows,
/// s = vᵀ tanh(W h + b); `attention_pool` turns the scores of each group of consecutive rows into
/// softmax weights and pools the group, z = Σ α h + r · mean h. IntraMRA pools the elements of each
/// modality, InterMRA the modality vectors of each sample; both are these two steps.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/core/batch_layout.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// The attention scorer of IntraMRA / InterMRA: `weight` [A, H], `bias` [A], `context` (v) [A], in
/// memory space `Space`.
template <scalar T, memory_space Space = host_space>
struct modality_attention {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;

    linear<T, Space> projection;
    tensor<T, Space> context;

    modality_attention() = default;
    modality_attention(std::size_t hidden, std::size_t attention_dim)
        requires host_accessible_space<Space>
        : projection(hidden, attention_dim), context({attention_dim})
    {
    }

    /// `other` with its tensors moved by `transfer` (see `linear`).
    template <memory_space From, class Transfer>
    modality_attention(const modality_attention<T, From>& other, Transfer&& transfer)
        : projection(other.projection, transfer), context(transfer(other.context))
    {
    }

    /// scores[i] = vᵀ tanh(W rows[i] + b) for `n` rows of width H. `activation`, when given, keeps
    /// tanh(W rows + b) [n, A] for `score_backward`.
    template <backend_in<T, Space> Backend>
    void score(const Backend& backend, const_pointer rows, std::size_t n, pointer scores,
               tensor<T, Space>* activation = nullptr) const
    {
        const std::size_t a = projection.out_features();
        tensor<T, Space> local;
        tensor<T, Space>& u = activation ? *activation : local;
        u.resize({n, a}, uninitialized);  // the product writes it
        projection.forward(backend, rows, n, u.data());
        backend.tanh(u.data(), u.size());
        backend.gemm(transpose::no, transpose::no, n, 1, a, T(1), std::as_const(u).data(), a, context.data(), 1, T(0), scores, 1);
    }

    /// Backward of `score`: adds d(rows) to `d_rows` and the parameter gradients to `grad`.
    template <training_backend_in<T, Space> Backend>
    void score_backward(const Backend& backend, const_pointer rows, std::size_t n, const tensor<T, Space>& activation,
                        const_pointer d_scores, pointer d_rows, modality_attention& grad) const
    {
        const std::size_t a = projection.out_features();
        // scores = U v: dv += Uᵀ dscores, dU = dscores vᵀ.
        backend.gemm(transpose::yes, transpose::no, a, 1, n, T(1), activation.data(), a, d_scores, 1, T(1), grad.context.data(),
                     1);
        tensor<T, Space> du({n, a}, uninitialized);  // beta = 0: the product writes it
        backend.gemm(transpose::no, transpose::no, n, a, 1, T(1), d_scores, 1, context.data(), a, T(0), du.data(), a);
        backend.tanh_backward(activation.data(), du.data(), du.size());
        projection.backward(backend, rows, std::as_const(du).data(), n, d_rows, grad.projection, true);
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        projection.for_each_parameter(prefix, visit);
        visit(prefix + "context", context);
    }

    void initialize(random_generator& rng, double stddev)
        requires host_accessible_space<Space>
    {
        projection.initialize(rng, stddev);
        fill_normal(context, rng, stddev);
    }
};

/// For each of `group_count` groups of `rows` ([n, H]): weights = softmax of the group's `scores`
/// (overwritten with the weights), pooled[g] = Σ weights_i rows_i + r · mean rows, r the value at
/// `residual` (null: 0). Empty groups are not allowed. Every pointer is of the backend's space.
template <scalar T, class Backend>
    requires backend_for<Backend, T>
void attention_pool(const Backend& backend, backend_pointer<Backend, const T> rows, std::size_t hidden,
                    backend_pointer<Backend, const row_group> groups, std::size_t group_count, backend_pointer<Backend, T> scores,
                    backend_pointer<Backend, const T> residual, backend_pointer<Backend, T> pooled)
{
    backend.segment_attention_pool(rows, hidden, groups, group_count, scores, residual, pooled);
}

/// Backward of `attention_pool`. `weights` are the softmax weights the forward left in its scores.
/// Adds d(rows) to `d_rows`, writes d(scores) to `d_scores` and, when `d_residual` is given, adds
/// d(residual) to it (a learned residual).
template <scalar T, class Backend>
    requires training_backend_for<Backend, T>
void attention_pool_backward(const Backend& backend, backend_pointer<Backend, const T> rows, std::size_t hidden,
                             backend_pointer<Backend, const row_group> groups, std::size_t group_count,
                             backend_pointer<Backend, const T> weights, backend_pointer<Backend, const T> residual,
                             backend_pointer<Backend, const T> d_pooled, backend_pointer<Backend, T> d_rows,
                             backend_pointer<Backend, T> d_scores, backend_pointer<Backend, T> d_residual = nullptr)
{
    backend.segment_attention_pool_backward(rows, hidden, groups, group_count, weights, residual, d_pooled, d_rows, d_scores,
                                            d_residual);
}

}  // namespace dm2s2::nn
