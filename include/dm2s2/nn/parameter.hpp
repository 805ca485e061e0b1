#pragma once
/// \file
/// How modules expose their parameters: `for_each_parameter(prefix, visit)` calls
/// `visit(full_name, tensor)` for every parameter, with HuggingFace-style dotted names. Checkpoint
/// reading and writing, initialisation and (later) optimisers are written once against this.

#include <concepts>
#include <string>

#include "dm2s2/core/random.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2 {

/// A callable that receives each parameter of a module as (name, tensor).
template <class F, class T>
concept parameter_visitor = std::invocable<F&, const std::string&, tensor<T>&>;

/// Fills `t` with normal deviates N(0, stddev) from `rng` (BERT's initialisation of weights).
template <class T>
void fill_normal(tensor<T>& t, random_generator& rng, double stddev)
{
    for (auto& v : t.values()) v = static_cast<T>(rng.normal(0.0, stddev));
}

/// A module of the same shapes as `module` with every parameter zero: the holder of its gradients.
template <class Module>
Module zeros_like(const Module& module)
{
    Module zeros = module;
    zeros.for_each_parameter("", [](const std::string&, auto& t) { t.fill(0); });
    return zeros;
}

}  // namespace dm2s2
