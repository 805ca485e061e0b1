#pragma once
/// \file
/// The `sequence_set_like` concept: what packing needs from one multimodal record, so that users can
/// pack their own record types without copying them into `sequence_set`.

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

namespace dm2s2 {

/// A record of M modalities, each a sequence that may be empty (missing). For modality m:
/// `length(m)` elements; `ids(m)` the vocabulary or category ids (text, tokens, categorical);
/// `dense(m)` length(m) × dim floats, row-major (dense); `numbers(m)` the values (numeric).
template <class S>
concept sequence_set_like = requires(const S& s, std::size_t m) {
    { s.modality_count() } -> std::convertible_to<std::size_t>;
    { s.length(m) } -> std::convertible_to<std::size_t>;
    { s.ids(m) } -> std::convertible_to<std::span<const std::int64_t>>;
    { s.dense(m) } -> std::convertible_to<std::span<const float>>;
    { s.numbers(m) } -> std::convertible_to<std::span<const double>>;
};

}  // namespace dm2s2
