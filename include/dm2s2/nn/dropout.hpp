#pragma once
/// \file
/// Inverted dropout driven by an explicit generator: in training each element is kept with
/// probability 1 − p and scaled by 1 / (1 − p); without a generator (inference) it is the identity.
/// The mask is kept so that the backward pass drops the same elements.

#include <algorithm>
#include <cstddef>

#include "dm2s2/core/random.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2::nn {

/// True when dropout with probability p does anything: training (a generator is given) and p > 0.
inline bool dropout_active(double p, const random_generator* rng) noexcept { return rng != nullptr && p > 0; }

/// Draws the dropout factors of n elements into `factors`: 0 with probability p, else 1 / (1 − p).
template <class T>
void dropout_factors(T* factors, std::size_t n, double p, random_generator& rng)
{
    const T keep_scale = static_cast<T>(1.0 / (1.0 - p));
    for (std::size_t i = 0; i < n; ++i) factors[i] = rng.uniform() < p ? T(0) : keep_scale;
}

/// Drops elements of x[0..n) with probability p; `mask`, when not null, receives the factors
/// (0 or 1 / (1 − p)) of the n elements. The draws are those of `dropout_factors`, in the same order.
template <class T>
void dropout(T* x, std::size_t n, double p, random_generator& rng, T* mask)
{
    constexpr std::size_t block = 256;
    T local[block];
    for (std::size_t first = 0; first < n; first += block) {
        const std::size_t count = std::min(block, n - first);
        T* factors = mask != nullptr ? mask + first : local;
        dropout_factors(factors, count, p, rng);
        for (std::size_t i = 0; i < count; ++i) x[first + i] *= factors[i];
    }
}

/// Dropout of a whole buffer when active; `mask` (when given) receives the factors, or is emptied when
/// dropout is inactive, which `dropout_backward` reads as "nothing dropped".
template <class T>
void dropout(T* x, std::size_t n, double p, random_generator* rng, tensor<T>* mask)
{
    if (!dropout_active(p, rng)) {
        if (mask != nullptr) mask->resize({0});
        return;
    }
    if (mask != nullptr) mask->resize({n});
    dropout(x, n, p, *rng, mask ? mask->data() : nullptr);
}

/// Backward of `dropout`: grad ⊙= mask; an empty mask means nothing was dropped.
template <class T>
void dropout_backward(const tensor<T>& mask, T* grad)
{
    for (std::size_t i = 0; i < mask.size(); ++i) grad[i] *= mask[i];
}

}  // namespace dm2s2::nn
