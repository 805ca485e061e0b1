#pragma once
/// \file
/// The `scalar` concept: the floating-point types a model computes in.

#include <concepts>
#include <string_view>

namespace dm2s2 {

/// A type the model can compute in. float and double today; a bf16 storage type will be added as a
/// storage-only type that computes in float, so code that needs arithmetic keeps this concept.
template <class T>
concept scalar = std::same_as<T, float> || std::same_as<T, double>;

/// Short name of a scalar type ("f32", "f64"), used in messages and benchmark labels.
template <scalar T>
constexpr std::string_view scalar_name() noexcept
{
    return std::same_as<T, float> ? "f32" : "f64";
}

}  // namespace dm2s2
