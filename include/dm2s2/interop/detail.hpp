#pragma once
/// \file
/// What the Eigen and xtensor interop headers share: a modality addressed by index or by name.

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>

#include "dm2s2/core/error.hpp"
#include "dm2s2/data/schema.hpp"

namespace dm2s2::interop_detail {

/// The index of modality `index` of `s`; throws `input_error` when it is outside the schema.
template <std::convertible_to<std::size_t> Index>
    requires(!std::convertible_to<const Index&, std::string_view>)
std::size_t modality_index(const schema& s, const Index& index)
{
    const std::size_t m = std::size_t(index);
    if (m >= s.size())
        throw input_error("modality index " + std::to_string(m) + " is outside the schema of " + std::to_string(s.size()) +
                          " modalities");
    return m;
}

/// The index of the modality named `name`; throws `input_error` naming it when the schema has none.
inline std::size_t modality_index(const schema& s, std::string_view name)
{
    return s.index_of(name);
}

}  // namespace dm2s2::interop_detail
