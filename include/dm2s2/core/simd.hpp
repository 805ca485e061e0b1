#pragma once
/// \file
/// The one place that decides whether element-wise kernels use xsimd, and that hides the differences
/// between xsimd versions. Define DM2S2_NO_XSIMD to build every kernel from its scalar loop only.

#include <cstddef>

#if !defined(DM2S2_NO_XSIMD) && __has_include(<xsimd/xsimd.hpp>)
#define DM2S2_HAS_XSIMD 1
#include <xsimd/xsimd.hpp>
#else
#define DM2S2_HAS_XSIMD 0
#endif

namespace dm2s2::simd {

#if DM2S2_HAS_XSIMD

/// A register of T for the instruction set selected at compile time (SSE2 at least on x86-64).
template <class T>
using batch = xsimd::batch<T>;

/// Number of T lanes in one `batch<T>`.
template <class T>
inline constexpr std::size_t width = batch<T>::size;

/// Sum of the lanes of a batch (xsimd 8 calls it `hadd`, xsimd 9+ `reduce_add`).
template <class T>
inline T reduce_sum(const batch<T>& b) noexcept
{
#if XSIMD_VERSION_MAJOR >= 9
    return xsimd::reduce_add(b);
#else
    return xsimd::hadd(b);
#endif
}

/// Largest lane of a batch.
template <class T>
inline T reduce_max(const batch<T>& b) noexcept
{
#if XSIMD_VERSION_MAJOR >= 9
    return xsimd::reduce_max(b);
#else
    alignas(64) T lanes[width<T>];
    b.store_aligned(lanes);
    T m = lanes[0];
    for (std::size_t i = 1; i < width<T>; ++i) m = lanes[i] > m ? lanes[i] : m;
    return m;
#endif
}

#endif

/// Name of the instruction set the element-wise kernels were compiled for.
inline const char* instruction_set() noexcept
{
#if DM2S2_HAS_XSIMD
    return xsimd::default_arch::name();
#else
    return "scalar";
#endif
}

}  // namespace dm2s2::simd
