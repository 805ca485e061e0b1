#pragma once
/// \file
/// Inverted dropout driven by an explicit generator: in training each element is kept with
/// probability 1 − p and scaled by 1 / (1 − p); without a generator (inference) it is the identity.
/// Each place draws one seed from the generator; the factors are counter-based uniforms of that seed
/// (`dropout_draw`), computed by the backend, so nothing is stored for the backward pass.

#include <cstddef>
#include <cstdint>

#include "dm2s2/core/random.hpp"

namespace dm2s2::nn {

/// True when dropout with probability p does anything: training (a generator is given) and p > 0.
inline bool dropout_active(double p, const random_generator* rng) noexcept
{
    return rng != nullptr && p > 0;
}

/// The dropout of one place in a forward pass: inactive without a generator (inference) or with
/// p = 0, otherwise probability p and a seed drawn from `rng` (one draw, whatever the size), its
/// elements numbered from `first` (see `batch_offset`).
inline dropout_draw draw_dropout(double p, random_generator* rng, std::uint64_t first = 0) noexcept
{
    if (!dropout_active(p, rng)) return {};
    return {p, rng->next(), first};
}

/// Applies `draw` to x[0..n) on the backend; the backward pass makes the same call on the gradient,
/// which regenerates the same factors.
template <class Backend, class Pointer>
void apply_dropout(const Backend& backend, Pointer x, std::size_t n, const dropout_draw& draw)
{
    if (draw.active()) backend.dropout(x, n, draw);
}

}  // namespace dm2s2::nn
