#pragma once
/// \file
/// `matmul_precision`: how a backend multiplies float matrices, the one precision setting every
/// backend reads. Double products are always double.

namespace dm2s2 {

/// How float matrix products are computed.
enum class matmul_precision {
    fp32,  ///< fp32 products and sums
    bf16   ///< operands rounded to bfloat16, products summed in fp32
};

}  // namespace dm2s2
