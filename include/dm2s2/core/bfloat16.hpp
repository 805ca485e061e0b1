#pragma once
/// \file
/// Rounding floats to bfloat16 (the upper 16 bits of a float: its sign, exponent and 7 stored mantissa
/// bits), as bf16 products and bf16-rounded packed weights do, and to TF32 (10 stored mantissa bits), as
/// tf32 products do.

#include <bit>
#include <cstdint>

namespace dm2s2 {

/// Rounds a float to the nearest bfloat16 (ties to even), returned as its 16 bits; NaN stays NaN.
inline std::uint16_t to_bfloat16_bits(float x) noexcept
{
    const auto bits = std::bit_cast<std::uint32_t>(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/// The float a bfloat16 stands for.
inline float from_bfloat16_bits(std::uint16_t x) noexcept
{
    return std::bit_cast<float>(std::uint32_t(x) << 16);
}

/// x rounded to bfloat16 precision, as a float.
inline float round_to_bfloat16(float x) noexcept
{
    return from_bfloat16_bits(to_bfloat16_bits(x));
}

/// x rounded to the nearest TF32 value (ties to even), as a float whose low 13 mantissa bits are zero;
/// NaN stays NaN, and a value past TF32's largest finite one becomes infinite.
inline float round_to_tf32(float x) noexcept
{
    const auto bits = std::bit_cast<std::uint32_t>(x);
    if ((bits & 0x7fffffffu) >= 0x7f800000u) return x;  // infinities and NaN as they are
    return std::bit_cast<float>((bits + 0xfffu + ((bits >> 13) & 1u)) & ~0x1fffu);
}

}  // namespace dm2s2
