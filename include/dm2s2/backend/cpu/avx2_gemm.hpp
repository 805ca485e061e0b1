#pragma once
/// \file
/// `avx2_kernels`: the blocked product's micro-kernels for AVX2 with FMA (`blocked_gemm.hpp`), fp32
/// multiplications (bf16 products round their operands while packing). A 6 × 16 tile of C fills 12 of
/// the 16 vector registers, the classic shape for this register file; a tile reads half of each
/// 32-column B panel, every other cache line.

#include <cstddef>
#include <cstdint>

#include "dm2s2/backend/cpu/blocked_gemm.hpp"

namespace dm2s2::detail::avx2 {

using blocked::b_stream;
using blocked::operand_format;

/// Rows of a C tile.
constexpr std::size_t mr = 6;

#if DM2S2_HAS_X86_KERNELS

/// Whether the processor running the program has AVX2 and FMA (`__builtin_cpu_init` makes the answer
/// right even when asked from another static initialiser).
inline bool has_fp32_kernels() noexcept
{
    static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
    return yes;
}

/// Eight floats rounded to bf16 precision as `to_bfloat16_bits` rounds them (ties to even, subnormals
/// kept, NaN kept NaN), in fp32 format.
__attribute__((target("avx2"))) inline __m256 round_to_bfloat16(__m256 x) noexcept
{
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
    // |x| as bits is below 2^31, so the signed comparison finds the NaNs.
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    const __m256i quiet = _mm256_or_si256(bits, _mm256_set1_epi32(0x00400000));  // not carried into
    const __m256i chosen = _mm256_blendv_epi8(rounded, quiet, nan);
    return _mm256_castsi256_ps(_mm256_and_si256(chosen, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

/// Stores lanes [first, last) of v (both even) at lane0 + first …, in whole halves and lane pairs:
/// plain stores, where a masked store is slow on AMD processors.
__attribute__((target("avx2"))) inline void store_lanes(__m256 v, std::size_t first, std::size_t last, float* lane0) noexcept
{
    const __m128 halves[2] = {_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)};
    for (std::size_t q = first; q < last;) {
        const __m128 half = halves[q / 4];
        if (q % 4 == 0 && q + 4 <= last) {
            _mm_storeu_ps(lane0 + q, half);
            q += 4;
        } else {
            if (q % 4 == 0) _mm_storel_pi(reinterpret_cast<__m64*>(lane0 + q), half);
            else _mm_storeh_pi(reinterpret_cast<__m64*>(lane0 + q), half);
            q += 2;
        }
    }
}

/// Packs 8 rows × 8 k units (`pack_block` of `micro_kernel_set`), transposing in registers. The 8
/// rows may straddle two panels of 6, so each panel's share of a transposed column is written on its
/// own, with plain stores wherever the panel edges allow (masked stores are slow on AMD processors:
/// benchmarks/README.md, step 20).
template <operand_format F>
__attribute__((target("avx2"))) void pack_8x8(const float* src, std::size_t ld, std::uint32_t* out, std::size_t width,
                                              std::size_t units, std::size_t row, std::size_t unit) noexcept
{
    __m256 r[8], t[8];
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
        r[q] = _mm256_loadu_ps(src + q * ld);
        if constexpr (F == operand_format::rounded_bf16) r[q] = round_to_bfloat16(r[q]);
    }
#pragma GCC unroll 8
    for (int q = 0; q < 8; q += 2) {  // interleave row pairs
        t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
        t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
    }
#pragma GCC unroll 8
    for (int q = 0; q < 8; q += 4) {  // 4 × 4 blocks inside each 128-bit lane
        r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xee);
        r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xee);
    }
#pragma GCC unroll 8
    for (int q = 0; q < 4; ++q) {  // register u now holds unit u of all 8 rows
        t[q] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x20);
        t[q + 4] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x31);
    }
    if (row % width + 8 <= width) {  // inside one panel (always so for B)
        float* const dst = reinterpret_cast<float*>(out + row / width * width * units + unit * width + row % width);
#pragma GCC unroll 8
        for (std::size_t u = 0; u < 8; ++u) _mm256_storeu_ps(dst + u * width, t[u]);
        return;
    }
    if (width % 2 == 0 && row % 2 == 0) {  // panel edges fall between lane pairs (A's 6-row panels)
        for (std::size_t panel = row / width; panel * width < row + 8; ++panel) {
            const std::size_t first = std::max(row, panel * width) - row, last = std::min(row + 8, (panel + 1) * width) - row;
            float* const lane0 = reinterpret_cast<float*>(out + panel * width * units + unit * width) + row - panel * width;
            for (std::size_t u = 0; u < 8; ++u) store_lanes(t[u], first, last, lane0 + u * width);
        }
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (std::size_t panel = row / width; panel * width < row + 8; ++panel) {
        const auto first = static_cast<int>(std::max(row, panel * width) - row);
        const auto last = static_cast<int>(std::min(row + 8, (panel + 1) * width) - row);
        const __m256i mask = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(first), lane),
                                                 _mm256_cmpgt_epi32(_mm256_set1_epi32(last), lane));
        // Lane q belongs at row (row + q) of this panel; the address is lane 0's, which lies inside the
        // buffer because the panel's earlier units precede it.
        float* lane0 = reinterpret_cast<float*>(out + panel * width * units + unit * width + row - panel * width);
#pragma GCC unroll 8
        for (std::size_t u = 0; u < 8; ++u) _mm256_maskstore_ps(lane0 + u * width, mask, t[u]);
    }
}

/// One k unit of `count` rows of an operand whose rows are contiguous (k is not) as words of format
/// `F` (fp32 or rounded_bf16): word q holds src[q], rounded for `rounded_bf16`. `unused` stands for
/// the next k's row, which only `bf16_pairs` (not on AVX2) reads. Whole vectors where they fit, plain
/// stores (masked stores are slow on AMD processors), the last few words one by one.
template <operand_format F>
__attribute__((target("avx2"))) void pack_row(const float* src, const float* unused, std::uint32_t* out,
                                              std::size_t count) noexcept
{
    static_assert(F != operand_format::bf16_pairs, "AVX2 has no bf16 dot products");
    (void)unused;
    std::size_t q = 0;
    for (; q + 8 <= count; q += 8) {
        __m256 words = _mm256_loadu_ps(src + q);
        if constexpr (F == operand_format::rounded_bf16) words = round_to_bfloat16(words);
        _mm256_storeu_ps(reinterpret_cast<float*>(out + q), words);
    }
    for (; q < count; ++q) out[q] = blocked::word_of<F>(src[q]);
}

/// The C tile [rows, cols ≤ 16] = alpha · acc (+ its old values when `add_to_c`), row stride ldc.
__attribute__((target("avx2,fma"))) inline void store_tile(const __m256 (&acc)[mr][2], float alpha, float* c, std::size_t ldc,
                                                           std::size_t rows, std::size_t cols, bool add_to_c) noexcept
{
    const __m256 scale = _mm256_set1_ps(alpha);
    if (cols == 16) {
        for (std::size_t r = 0; r < rows; ++r) {
            float* row = c + r * ldc;
            const __m256 old0 = add_to_c ? _mm256_loadu_ps(row) : _mm256_setzero_ps();
            const __m256 old1 = add_to_c ? _mm256_loadu_ps(row + 8) : _mm256_setzero_ps();
            _mm256_storeu_ps(row, _mm256_fmadd_ps(acc[r][0], scale, old0));
            _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(acc[r][1], scale, old1));
        }
        return;
    }
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols)), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols) - 8), lane);
    for (std::size_t r = 0; r < rows; ++r) {
        float* row = c + r * ldc;
        const __m256 old0 = add_to_c ? _mm256_maskload_ps(row, m0) : _mm256_setzero_ps();
        const __m256 old1 = add_to_c ? _mm256_maskload_ps(row + 8, m1) : _mm256_setzero_ps();
        _mm256_maskstore_ps(row, m0, _mm256_fmadd_ps(acc[r][0], scale, old0));
        _mm256_maskstore_ps(row + 8, m1, _mm256_fmadd_ps(acc[r][1], scale, old1));
    }
}

/// The 6 × 16 micro-kernel (`micro_kernel_set`). `b_stream::own` asks for B's lines `b_ahead` units
/// ahead, for a B read from memory; `b_stream::given` asks for the two lines at `ahead` each
/// `ahead_every` units.
template <operand_format F, b_stream Stream>
__attribute__((target("avx2,fma"))) void micro_kernel(const std::uint32_t* a, const std::uint32_t* b, std::size_t units,
                                                      float alpha, float* c, std::size_t ldc, std::size_t rows, std::size_t cols,
                                                      bool add_to_c, const std::uint32_t* ahead, std::size_t ahead_every) noexcept
{
    static_assert(F != operand_format::bf16_pairs, "AVX2 has no bf16 dot products");
    constexpr std::size_t nr = blocked::nr, b_ahead = 16;
    __m256 acc[mr][2];
#pragma GCC unroll 6
    for (std::size_t r = 0; r < mr; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    std::size_t countdown = ahead_every;
#pragma GCC unroll 4
    for (std::size_t u = 0; u < units; ++u, a += mr, b += nr) {
        if constexpr (Stream == b_stream::own) {
            __builtin_prefetch(b + b_ahead * nr, 0, 3);
        } else if constexpr (Stream == b_stream::given) {
            blocked::request_given_b(ahead, countdown, ahead_every);
        }
        const __m256 b0 = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
        const __m256 b1 = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 8)));
#pragma GCC unroll 6
        for (std::size_t r = 0; r < mr; ++r) {
            const __m256 ar = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(a[r])));
            acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
        }
    }
    store_tile(acc, alpha, c, ldc, rows, cols, add_to_c);
}

#else

inline bool has_fp32_kernels() noexcept
{
    return false;
}

#endif

/// The AVX2 kernel set for `blocked_gemm.hpp`: 6 × 16 tiles. On cores with 32 KiB L1 and 512 KiB L2
/// (AMD Zen 3) a 6-row A panel (6 KiB) stays in L1 while a pass of 256 columns of the B slice (kc ×
/// 256, 256 KiB) streams past it from L2, next to the packed A block (`derive_gemm_blocking`). In a
/// model of the product's loops this order ran faster than the transposed one (half a B panel kept in
/// L1, the A block streaming past it), where the B half panel's lines, every other one, crowd half of
/// L1's sets (benchmarks/README.md, step 18).
struct avx2_kernels {
    static constexpr std::size_t mr = avx2::mr;
    static constexpr std::size_t tile_cols = 16;
    static constexpr std::size_t block = 8;
    static constexpr bool bf16_dot_products = false;

#if DM2S2_HAS_X86_KERNELS
    template <operand_format F, b_stream Stream>
    static constexpr auto micro_kernel = &avx2::micro_kernel<F, Stream>;
    template <operand_format F>
    static constexpr auto pack_block = &pack_8x8<F>;
    template <operand_format F>
    static constexpr auto pack_row = &avx2::pack_row<F>;
#endif
};
#if DM2S2_HAS_X86_KERNELS
static_assert(blocked::micro_kernel_set<avx2_kernels>);
#endif

}  // namespace dm2s2::detail::avx2
