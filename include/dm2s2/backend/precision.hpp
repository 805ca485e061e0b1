#pragma once
/// \file
/// `matmul_precision`: how a backend multiplies float matrices, the one precision setting every
/// backend reads. Double products are always double.

#include <optional>
#include <string_view>

namespace dm2s2 {

/// How float matrix products are computed.
enum class matmul_precision {
    fp32,  ///< fp32 products and sums
    /// operands rounded to TF32 (10 stored mantissa bits, fp32's exponent), products summed in fp32: the
    /// tensor-core mode of NVIDIA GPUs. The CPU backend computes it as Eigen's products of rounded
    /// copies, to compare with a GPU, not for speed.
    tf32,
    bf16  ///< operands rounded to bfloat16 (7 stored mantissa bits), products summed in fp32
};

/// Every precision, the exact one first.
inline constexpr matmul_precision all_matmul_precisions[] = {matmul_precision::fp32, matmul_precision::tf32,
                                                             matmul_precision::bf16};

/// The precision's name: "fp32", "tf32" or "bf16".
constexpr std::string_view to_string(matmul_precision p) noexcept
{
    switch (p) {
    case matmul_precision::fp32: return "fp32";
    case matmul_precision::tf32: return "tf32";
    case matmul_precision::bf16: return "bf16";
    }
    return "?";
}

/// Parses a precision's name ("fp32", "tf32", "bf16").
inline std::optional<matmul_precision> parse_matmul_precision(std::string_view s) noexcept
{
    for (const auto p : all_matmul_precisions)
        if (to_string(p) == s) return p;
    return std::nullopt;
}

}  // namespace dm2s2
