#pragma once
/// \file
/// Hierarchical modality attention (DESIGN §5). `modality_attention` scores rows,
/// s = vᵀ tanh(W h + b); `attention_pool` turns the scores of each group of consecutive rows into
/// softmax weights and pools the group, z = Σ α h + r · mean h. IntraMRA pools the elements of each
/// modality, InterMRA the modality vectors of each sample; both are these two steps.

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// Consecutive rows [begin, begin + length) pooled together.
struct row_group {
    std::size_t begin = 0;
    std::size_t length = 0;
};

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

    /// scores[i] = vᵀ tanh(W rows[i] + b) for `n` rows of width H.
    template <backend_for<T> Backend>
    void score(const Backend& backend, const T* rows, std::size_t n, T* scores) const
    {
        const std::size_t a = projection.out_features();
        tensor<T> u({n, a});
        projection.forward(backend, rows, n, u.data());
        backend.tanh(u.data(), u.size());
        backend.gemm(transpose::no, transpose::no, n, 1, a, T(1), u.data(), a, context.data(), 1, T(0), scores, 1);
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
template <scalar T, backend_for<T> Backend>
void attention_pool(const Backend& backend, const T* rows, std::size_t hidden, std::span<const row_group> groups,
                    T* scores, T residual, T* pooled)
{
    std::vector<T> coefficients;
    for (std::size_t g = 0; g < groups.size(); ++g) {
        const auto [begin, length] = groups[g];
        backend.masked_softmax(scores + begin, length, nullptr);
        // One product per group: the residual mean folds into the coefficients.
        coefficients.assign(scores + begin, scores + begin + length);
        for (auto& c : coefficients) c += residual / static_cast<T>(length);
        backend.gemm(transpose::no, transpose::no, 1, hidden, length, T(1), coefficients.data(), length,
                     rows + begin * hidden, hidden, T(0), pooled + g * hidden, hidden);
    }
}

}  // namespace dm2s2::nn
