#pragma once
/// \file
/// How modules expose their parameters: `for_each_parameter(prefix, visit)` calls
/// `visit(full_name, tensor)` for every parameter, with HuggingFace-style dotted names. Checkpoint
/// reading and writing, initialisation and (later) optimisers are written once against this.

#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>

#include "dm2s2/core/random.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2 {

/// A callable that receives each parameter of a module as (name, tensor), the tensors of the module's
/// memory space.
template <class F, class T, class Space = host_space>
concept parameter_visitor = std::invocable<F&, const std::string&, tensor<T, Space>&>;

/// A visitor that only reads, wrapped so that modules can tell: a module that holds a parameter in
/// another form (a `linear` with a packed weight) then lends it a plain copy instead of converting
/// back for good. Const traversals wrap their visitor in it.
template <class F>
struct read_only_visitor {
    F& visit;

    template <class T, class Space>
    void operator()(const std::string& name, tensor<T, Space>& t) const
    {
        visit(name, static_cast<const tensor<T, Space>&>(t));
    }
};

/// Whether the visitor type `F` (cv-ref qualified or not) is a `read_only_visitor`.
template <class F>
struct is_read_only_visitor : std::false_type {};
template <class F>
struct is_read_only_visitor<read_only_visitor<F>> : std::true_type {};
template <class F>
inline constexpr bool is_read_only_visitor_v = is_read_only_visitor<std::remove_cvref_t<F>>::value;

/// Fills `t` with normal deviates N(0, stddev²) from `rng` (BERT's initialisation of weights), two at
/// a time (`random_generator::normal_pair`; an odd count drops the last pair's second).
template <class T>
void fill_normal(tensor<T>& t, random_generator& rng, double stddev)
{
    const auto values = t.values();
    for (std::size_t i = 0; i < values.size(); i += 2) {
        const auto [first, second] = rng.normal_pair();
        values[i] = static_cast<T>(stddev * first);
        if (i + 1 < values.size()) values[i + 1] = static_cast<T>(stddev * second);
    }
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
