#pragma once
/// \file
/// Inverted dropout driven by an explicit generator: in training each element is kept with
/// probability 1 − p and scaled by 1 / (1 − p); without a generator (inference) it is the identity.
/// The factors are drawn on the host and applied by the backend; the mask is kept so that the backward
/// pass drops the same elements.

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

/// Dropout of x[0..n) when active: the factors are drawn in order (`dropout_factors`) and multiplied in
/// by the backend. `mask` (when given) keeps the factors, or is emptied when dropout is inactive, which
/// `dropout_backward` reads as "nothing dropped".
template <class Backend, class T>
void dropout(const Backend& backend, T* x, std::size_t n, double p, random_generator* rng, tensor<T>* mask)
{
    if (!dropout_active(p, rng)) {
        if (mask != nullptr) mask->resize({0});
        return;
    }
    tensor<T> local;
    tensor<T>& factors = mask != nullptr ? *mask : local;
    factors.resize({n}, uninitialized);
    dropout_factors(factors.data(), n, p, *rng);
    backend.multiply(x, static_cast<const T*>(factors.data()), n);
}

/// Backward of `dropout`: grad ⊙= mask; an empty mask means nothing was dropped.
template <class Backend, class T>
void dropout_backward(const Backend& backend, const tensor<T>& mask, T* grad)
{
    if (!mask.empty()) backend.multiply(grad, mask.data(), mask.size());
}

}  // namespace dm2s2::nn
