#pragma once
/// \file
/// Element types of safetensors files and the conversions between them and the model scalars.

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "dm2s2/core/scalar.hpp"

namespace dm2s2 {

/// Element type of a stored tensor, named as in the safetensors format.
enum class dtype { f64, f32, f16, bf16, f8_e4m3, f8_e5m2, i64, i32, i16, i8, u64, u32, u16, u8, boolean };

/// The safetensors spelling of a dtype ("F32", "BF16", ...).
constexpr std::string_view dtype_name(dtype t) noexcept
{
    switch (t) {
    case dtype::f64: return "F64";
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::f8_e4m3: return "F8_E4M3";
    case dtype::f8_e5m2: return "F8_E5M2";
    case dtype::i64: return "I64";
    case dtype::i32: return "I32";
    case dtype::i16: return "I16";
    case dtype::i8: return "I8";
    case dtype::u64: return "U64";
    case dtype::u32: return "U32";
    case dtype::u16: return "U16";
    case dtype::u8: return "U8";
    case dtype::boolean: return "BOOL";
    }
    return "?";
}

/// Parses a safetensors dtype name; nullopt when unknown.
inline std::optional<dtype> parse_dtype(std::string_view name) noexcept
{
    for (auto t : {dtype::f64, dtype::f32, dtype::f16, dtype::bf16, dtype::f8_e4m3, dtype::f8_e5m2, dtype::i64, dtype::i32,
                   dtype::i16, dtype::i8, dtype::u64, dtype::u32, dtype::u16, dtype::u8, dtype::boolean})
        if (dtype_name(t) == name) return t;
    return std::nullopt;
}

/// Bytes per element.
constexpr std::size_t dtype_size(dtype t) noexcept
{
    switch (t) {
    case dtype::f64:
    case dtype::i64:
    case dtype::u64: return 8;
    case dtype::f32:
    case dtype::i32:
    case dtype::u32: return 4;
    case dtype::f16:
    case dtype::bf16:
    case dtype::i16:
    case dtype::u16: return 2;
    default: return 1;
    }
}

/// True for the floating-point dtypes a model scalar can be read from or written to.
constexpr bool is_float_dtype(dtype t) noexcept
{
    return t == dtype::f64 || t == dtype::f32 || t == dtype::f16 || t == dtype::bf16;
}

/// True for integer (and boolean) dtypes.
constexpr bool is_integer_dtype(dtype t) noexcept
{
    return !is_float_dtype(t) && t != dtype::f8_e4m3 && t != dtype::f8_e5m2;
}

/// The dtype that stores T exactly.
template <scalar T>
constexpr dtype dtype_of() noexcept
{
    return std::is_same_v<T, float> ? dtype::f32 : dtype::f64;
}

/// IEEE half (binary16) bits to float; exact, including subnormals, infinities and NaN.
inline float half_to_float(std::uint16_t h) noexcept
{
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1fu;
    const std::uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
        const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
        return sign ? -magnitude : magnitude;
    }
    const std::uint32_t bits =
        exponent == 0x1f ? sign | 0x7f800000u | (mantissa << 13) : sign | ((exponent + 112) << 23) | (mantissa << 13);
    return std::bit_cast<float>(bits);
}

/// Float to IEEE half, rounding to nearest even; overflow gives infinity, NaN stays NaN.
inline std::uint16_t float_to_half(float f) noexcept
{
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
    const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
    const std::uint32_t abs = bits & 0x7fffffffu;
    if (abs >= 0x7f800000u)  // inf or NaN
        return static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504
    if (abs < 0x38800000u) {  // below the smallest normal half: subnormal result, rounded to nearest even
        const float magnitude = std::bit_cast<float>(abs);
        const float scaled = magnitude * 16777216.0f;  // exact: units of 2^-24
        return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(std::nearbyint(scaled)));
    }
    // Normal: drop 13 mantissa bits with round-to-nearest-even, then rebias the exponent.
    const std::uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
}

/// bfloat16 bits to float (exact).
inline float bf16_to_float(std::uint16_t b) noexcept
{
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// Float to bfloat16, rounding to nearest even; NaN stays NaN.
inline std::uint16_t float_to_bf16(float f) noexcept
{
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/// Reads element i of a little-endian buffer of dtype t as a double (float dtypes only).
inline double load_float_element(const std::byte* data, dtype t, std::size_t i) noexcept
{
    switch (t) {
    case dtype::f64: {
        double v;
        std::memcpy(&v, data + 8 * i, 8);
        return v;
    }
    case dtype::f32: {
        float v;
        std::memcpy(&v, data + 4 * i, 4);
        return v;
    }
    case dtype::f16: {
        std::uint16_t v;
        std::memcpy(&v, data + 2 * i, 2);
        return half_to_float(v);
    }
    case dtype::bf16: {
        std::uint16_t v;
        std::memcpy(&v, data + 2 * i, 2);
        return bf16_to_float(v);
    }
    default: return 0.0;
    }
}

/// Writes v as element i of a little-endian buffer of float dtype t (rounding to nearest even).
inline void store_float_element(std::byte* data, dtype t, std::size_t i, double v) noexcept
{
    switch (t) {
    case dtype::f64: std::memcpy(data + 8 * i, &v, 8); break;
    case dtype::f32: {
        const float f = static_cast<float>(v);
        std::memcpy(data + 4 * i, &f, 4);
        break;
    }
    case dtype::f16: {
        const std::uint16_t h = float_to_half(static_cast<float>(v));
        std::memcpy(data + 2 * i, &h, 2);
        break;
    }
    case dtype::bf16: {
        const std::uint16_t b = float_to_bf16(static_cast<float>(v));
        std::memcpy(data + 2 * i, &b, 2);
        break;
    }
    default: break;
    }
}

/// Reads element i of a little-endian integer or boolean buffer; false when it does not fit int64.
inline bool load_integer_element(const std::byte* data, dtype t, std::size_t i, std::int64_t& out) noexcept
{
    const auto read = [&](auto v) {
        std::memcpy(&v, data + sizeof(v) * i, sizeof(v));
        return v;
    };
    switch (t) {
    case dtype::i64: out = read(std::int64_t{}); return true;
    case dtype::i32: out = read(std::int32_t{}); return true;
    case dtype::i16: out = read(std::int16_t{}); return true;
    case dtype::i8: out = read(std::int8_t{}); return true;
    case dtype::u64: {
        const std::uint64_t v = read(std::uint64_t{});
        out = static_cast<std::int64_t>(v);
        return v <= static_cast<std::uint64_t>(INT64_MAX);
    }
    case dtype::u32: out = read(std::uint32_t{}); return true;
    case dtype::u16: out = read(std::uint16_t{}); return true;
    case dtype::u8:
    case dtype::boolean: out = read(std::uint8_t{}); return true;
    default: return false;
    }
}

/// Writes v as element i of an integer buffer of dtype t; false when v does not fit t.
inline bool store_integer_element(std::byte* data, dtype t, std::size_t i, std::int64_t v) noexcept
{
    const auto write = [&](auto typed) {
        using U = decltype(typed);
        if (static_cast<std::int64_t>(static_cast<U>(v)) != v || (std::is_unsigned_v<U> && v < 0)) return false;
        const U value = static_cast<U>(v);
        std::memcpy(data + sizeof(U) * i, &value, sizeof(U));
        return true;
    };
    switch (t) {
    case dtype::i64: return write(std::int64_t{});
    case dtype::i32: return write(std::int32_t{});
    case dtype::i16: return write(std::int16_t{});
    case dtype::i8: return write(std::int8_t{});
    case dtype::u64: return write(std::uint64_t{});
    case dtype::u32: return write(std::uint32_t{});
    case dtype::u16: return write(std::uint16_t{});
    case dtype::u8: return write(std::uint8_t{});
    case dtype::boolean: return (v == 0 || v == 1) && write(std::uint8_t{});
    default: return false;
    }
}

}  // namespace dm2s2
