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

#include "dm2s2/core/batch_layout.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// The attention scorer of IntraMRA / InterMRA: `weight` [A, H], `bias` [A], `context` (v) [A].
template <scalar T>
struct modality_attention {
    linear<T> projection;
    tensor<T> context;

    modality_attention() = default;
    modality_attention(std::size_t hidden, std::size_t attention_dim)
        : projection(hidden, attention_dim), context({attention_dim})
    {
    }

    /// scores[i] = vᵀ tanh(W rows[i] + b) for `n` rows of width H. `activation`, when given, keeps
    /// tanh(W rows + b) [n, A] for `score_backward`.
    template <host_backend_for<T> Backend>
    void score(const Backend& backend, const T* rows, std::size_t n, T* scores, tensor<T>* activation = nullptr) const
    {
        const std::size_t a = projection.out_features();
        tensor<T> local;
        tensor<T>& u = activation ? *activation : local;
        u.resize({n, a});
        projection.forward(backend, rows, n, u.data());
        backend.tanh(u.data(), u.size());
        backend.gemm(transpose::no, transpose::no, n, 1, a, T(1), u.data(), a, context.data(), 1, T(0), scores, 1);
    }

    /// Backward of `score`: adds d(rows) to `d_rows` and the parameter gradients to `grad`.
    template <host_training_backend_for<T> Backend>
    void score_backward(const Backend& backend, const T* rows, std::size_t n, const tensor<T>& activation,
                        const T* d_scores, T* d_rows, modality_attention& grad) const
    {
        const std::size_t a = projection.out_features();
        // scores = U v: dv += Uᵀ dscores, dU = dscores vᵀ.
        backend.gemm(transpose::yes, transpose::no, a, 1, n, T(1), activation.data(), a, d_scores, 1, T(1),
                     grad.context.data(), 1);
        tensor<T> du({n, a});
        backend.gemm(transpose::no, transpose::no, n, a, 1, T(1), d_scores, 1, context.data(), a, T(0), du.data(), a);
        backend.tanh_backward(activation.data(), du.data(), du.size());
        projection.backward(backend, rows, du.data(), n, d_rows, grad.projection, true);
    }

    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        projection.for_each_parameter(prefix, visit);
        visit(prefix + "context", context);
    }

    void initialize(random_generator& rng, double stddev)
    {
        projection.initialize(rng, stddev);
        fill_normal(context, rng, stddev);
    }
};

/// For each group g of `rows` ([n, H]): weights = softmax of the group's `scores` (overwritten with
/// the weights), pooled[g] = Σ weights_i rows_i + residual · mean rows. Empty groups are not allowed.
template <scalar T, host_backend_for<T> Backend>
void attention_pool(const Backend& backend, const T* rows, std::size_t hidden, std::span<const row_group> groups,
                    T* scores, T residual, T* pooled)
{
    backend.segment_attention_pool(rows, hidden, groups.data(), groups.size(), scores, residual, pooled);
}

/// Backward of `attention_pool`. `weights` are the softmax weights the forward left in its scores.
/// Adds d(rows) to `d_rows`, writes d(scores) to `d_scores` and, when `d_residual` is given, adds
/// d(residual) to it (a learned residual).
template <scalar T, host_training_backend_for<T> Backend>
void attention_pool_backward(const Backend& backend, const T* rows, std::size_t hidden, std::span<const row_group> groups,
                             const T* weights, T residual, const T* d_pooled, T* d_rows, T* d_scores, T* d_residual = nullptr)
{
    backend.segment_attention_pool_backward(rows, hidden, groups.data(), groups.size(), weights, residual, d_pooled, d_rows,
                                            d_scores, d_residual);
}

}  // namespace dm2s2::nn
