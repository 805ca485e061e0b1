#pragma once
/// \file
/// `avx512_kernels`: the blocked product's micro-kernels for AVX-512 (`blocked_gemm.hpp`), with fp32 or
/// bf16 multiplications: a 14 × 32 tile of C in 28 of the 32 vector registers.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "dm2s2/backend/cpu/blocked_gemm.hpp"

namespace dm2s2::detail::avx512 {

using blocked::b_stream;
using blocked::operand_format;

/// Rows of a C tile: 28 of the 32 vector registers hold a 14 × 32 tile.
constexpr std::size_t mr = 14;
constexpr std::size_t nr = blocked::nr;

#if DM2S2_HAS_X86_KERNELS
/// What the processor running the program offers. `__builtin_cpu_init` makes the answer right even
/// when asked from another static initialiser, before the runtime's own initialisation has run. The
/// kernels are compiled for AVX-512 F and BW (every AVX-512 processor since Skylake has both).
inline bool has_fp32_kernels() noexcept
{
    static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                                       __builtin_cpu_supports("fma"));
    return yes;
}
inline bool has_bf16_dot_products() noexcept
{
    static const bool yes = has_fp32_kernels() && __builtin_cpu_supports("avx512bf16");
    return yes;
}

/// Independent chains `chain_seconds` runs: enough to hide the instructions' latency.
constexpr int timing_chains = 24;

/// Seconds for `rounds` rounds of `timing_chains` independent `vdpbf16ps` (when `Dot`; needs
/// AVX512_BF16) or fp32 FMA chains held in registers: the instruction's throughput, with no memory
/// traffic. A round is 24 × 16 lanes × 1 (FMA) or 2 (`vdpbf16ps`) products. `vdpbf16ps` does twice an
/// FMA's products per instruction, but issue rates differ: Sapphire Rapids class cores issue it at a
/// fraction of the FMA's rate, Zen 5 cores at the FMA's rate (benchmarks/README.md, "What the
/// processor allows"); `measure_bf16_rates` (amx_gemm.hpp) compares them.
template <bool Dot>
__attribute__((target("avx512f,avx512bf16,fma"))) double chain_seconds(std::size_t rounds) noexcept
{
    constexpr int chains = timing_chains;
    __m512 acc[chains];
    for (auto& a : acc) a = _mm512_setzero_ps();
    __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(0x1p-20f);
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t round = 0; round < rounds; ++round) {
#pragma GCC unroll 24
        for (int i = 0; i < chains; ++i) {
            if constexpr (Dot) acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)x, (__m512bh)y);
            else acc[i] = _mm512_fmadd_ps(x, y, acc[i]);
        }
        asm volatile("" : "+v"(x), "+v"(y));  // the compiler may not fold rounds together
    }
    __m512 sum = acc[0];
    for (int i = 1; i < chains; ++i) sum = _mm512_add_ps(sum, acc[i]);
    asm volatile("" : : "v"(sum));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Sixteen floats rounded to bf16 precision as `to_bfloat16_bits` rounds them (ties to even, subnormals
/// kept, NaN kept NaN), in fp32 format.
__attribute__((target("avx512f"))) inline __m512 round_to_bfloat16(__m512 x) noexcept
{
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_maskz_srli_epi32(0xffff, bits, 16), _mm512_set1_epi32(1));  // GCC bug 105593
    __m512i rounded = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    const __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    rounded = _mm512_mask_or_epi32(rounded, nan, bits, _mm512_set1_epi32(0x00400000));  // quiet, not carried into
    return _mm512_castsi512_ps(_mm512_and_si512(rounded, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

/// Transposes 16 × 16 32-bit values held in 16 registers: afterwards register u holds what lane u of
/// every register held, lane q from register q. Each stage is unrolled explicitly: GCC at -O2 would
/// otherwise keep the 32 vectors on the stack, packing far slower (benchmarks/README.md, step 12). The
/// masked forms of the shuffles with a full mask are used because GCC 12 warns about the undefined
/// pass-through operand of the unmasked ones (GCC bug 105593).
__attribute__((target("avx512f"), always_inline)) inline void transpose_16x16(__m512 (&r)[16]) noexcept
{
    constexpr __mmask16 all = 0xffff;
    __m512 t[16];
#pragma GCC unroll 16
    for (int q = 0; q < 16; q += 2) {  // interleave row pairs
        t[q] = _mm512_mask_unpacklo_ps(r[q], all, r[q], r[q + 1]);
        t[q + 1] = _mm512_mask_unpackhi_ps(r[q], all, r[q], r[q + 1]);
    }
#pragma GCC unroll 16
    for (int q = 0; q < 16; q += 4) {  // 4 × 4 blocks inside each 128-bit lane
        r[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xee);
        r[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xee);
    }
#pragma GCC unroll 16
    for (int q = 0; q < 4; ++q) {  // gather lanes: rows 0-7 and 8-15 in halves
        t[q] = _mm512_mask_shuffle_f32x4(r[q], all, r[q], r[q + 4], 0x88);
        t[q + 4] = _mm512_mask_shuffle_f32x4(r[q], all, r[q], r[q + 4], 0xdd);
        t[q + 8] = _mm512_mask_shuffle_f32x4(r[q], all, r[q + 8], r[q + 12], 0x88);
        t[q + 12] = _mm512_mask_shuffle_f32x4(r[q], all, r[q + 8], r[q + 12], 0xdd);
    }
#pragma GCC unroll 16
    for (int q = 0; q < 8; ++q) {  // register u now holds unit u of all 16 rows
        r[q] = _mm512_mask_shuffle_f32x4(t[q], all, t[q], t[q + 8], 0x88);
        r[q + 8] = _mm512_mask_shuffle_f32x4(t[q], all, t[q], t[q + 8], 0xdd);
    }
}

/// Lanes [0, count) of 16 as a mask.
inline __mmask16 first_lanes(std::size_t count) noexcept
{
    return static_cast<__mmask16>(count >= 16 ? 0xffffu : (1u << count) - 1u);
}

/// Sixteen floats from `src` (`count` of them, zeros after), rounded to bf16 precision.
__attribute__((target("avx512f"))) inline __m512 load_rounded(const float* src, std::size_t count) noexcept
{
    return round_to_bfloat16(_mm512_maskz_loadu_ps(first_lanes(count), src));
}

/// The 16 words holding 32 consecutive values rounded already (x0: values 0-15, x1: 16-31) as bf16
/// pairs: word w holds value 2w in its low half and value 2w + 1 in its high half.
__attribute__((target("avx512f,avx512bw"))) inline __m512 pairs_of_consecutive(__m512 x0, __m512 x1) noexcept
{
    // The 16-bit halves of (x0, x1) numbered 0-63: value v's bf16 is half 2v + 1.
    alignas(64) static constexpr std::uint16_t upper_halves[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21,
                                                                   23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43,
                                                                   45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
    return _mm512_castsi512_ps(
        _mm512_permutex2var_epi16(_mm512_castps_si512(x0), _mm512_load_si512(upper_halves), _mm512_castps_si512(x1)));
}

/// Lane by lane, the bf16 pair of two values rounded already: `lo`'s in the low half, `hi`'s in the
/// high half.
__attribute__((target("avx512f"))) inline __m512 pairs_of_lanes(__m512 lo, __m512 hi) noexcept
{
    const __m512i low = _mm512_maskz_srli_epi32(0xffff, _mm512_castps_si512(lo), 16);  // GCC bug 105593
    const __m512i high = _mm512_and_si512(_mm512_castps_si512(hi), _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
    return _mm512_castsi512_ps(_mm512_or_si512(low, high));
}

/// Packs 16 rows × 16 k units of a k-contiguous fp32 operand (`src` points at its first value, rows
/// `ld` apart) into panels of `width` rows stored [unit][row] as words of format `F` (a unit is one
/// value, or for `bf16_pairs` two consecutive values, so that a row reads 32), transposing in
/// registers: the scalar loop would cost more than the products on weight panels. `row` and `unit`
/// place the block inside the packed slice of `units` units; its 16 rows may straddle two or more
/// panels, so each panel's share of a transposed column is written with a masked store.
template <operand_format F>
__attribute__((target("avx512f,avx512bw"))) void pack_16x16(const float* src, std::size_t ld, std::uint32_t* out,
                                                            std::size_t width, std::size_t units, std::size_t row,
                                                            std::size_t unit) noexcept
{
    __m512 r[16];
#pragma GCC unroll 16
    for (int q = 0; q < 16; ++q) {
        if constexpr (F == operand_format::bf16_pairs)
            r[q] = pairs_of_consecutive(round_to_bfloat16(_mm512_loadu_ps(src + q * ld)),
                                        round_to_bfloat16(_mm512_loadu_ps(src + q * ld + 16)));
        else r[q] = _mm512_loadu_ps(src + q * ld);
        if constexpr (F == operand_format::rounded_bf16) r[q] = round_to_bfloat16(r[q]);
    }
    transpose_16x16(r);
    for (std::size_t panel = row / width; panel * width < row + 16; ++panel) {
        const std::size_t first = std::max(row, panel * width) - row, last = std::min(row + 16, (panel + 1) * width) - row;
        const auto mask = static_cast<__mmask16>(((1u << last) - 1u) & ~((1u << first) - 1u));
        // Lane q of the register belongs at row (row + q) of this panel; the offset below is that of
        // lane 0, which lies inside the buffer because the panel's earlier units precede it.
        float* lane0 = reinterpret_cast<float*>(out + panel * width * units + unit * width + row - panel * width);
#pragma GCC unroll 16
        for (std::size_t u = 0; u < 16; ++u) _mm512_mask_storeu_ps(lane0 + u * width, mask, r[u]);
    }
}

/// One k unit of `count` rows of an operand whose rows are contiguous (k is not) as words of format
/// `F`: word q holds lo[q] (rounded for `rounded_bf16`), or for `bf16_pairs` lo[q] and, where `hi` is
/// not null, hi[q] (the next k; zero past k's end). `hi` is read for `bf16_pairs` only.
template <operand_format F>
__attribute__((target("avx512f,avx512bw"))) void pack_row(const float* lo, const float* hi, std::uint32_t* out,
                                                          std::size_t count) noexcept
{
    for (std::size_t q = 0; q < count; q += 16) {
        __m512 words;
        if constexpr (F == operand_format::bf16_pairs)
            words = pairs_of_lanes(load_rounded(lo + q, count - q),
                                   hi != nullptr ? load_rounded(hi + q, count - q) : _mm512_setzero_ps());
        else if constexpr (F == operand_format::rounded_bf16) words = load_rounded(lo + q, count - q);
        else words = _mm512_maskz_loadu_ps(first_lanes(count - q), lo + q);
        _mm512_mask_storeu_ps(reinterpret_cast<float*>(out + q), first_lanes(count - q), words);
    }
}

/// The 14 × 32 micro-kernel (`micro_kernel_set`). `b_stream::own` asks for B's words `b_ahead` units
/// ahead as it goes: for a B read from memory rather than from a freshly packed slice in L2, where the
/// hardware prefetcher alone keeps up with a fraction of the kernel's pace (benchmarks/README.md, step
/// 15). `b_stream::given` asks for the two lines of a unit at `ahead` each `ahead_every` units.
template <operand_format F, b_stream Stream = b_stream::none>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma"))) void micro_kernel(
    const std::uint32_t* a, const std::uint32_t* b, std::size_t units, float alpha, float* c, std::size_t ldc, std::size_t rows,
    std::size_t cols, bool add_to_c, const std::uint32_t* ahead, std::size_t ahead_every) noexcept
{
    constexpr std::size_t b_ahead = 32;  // 4 KiB: 16 and 64 were slower
    __m512 acc[mr][2];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < mr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    std::size_t countdown = ahead_every;
    // The tile of C is read (or written) only after the loop, from rows ldc apart that are often no
    // longer in any cache (a C of 485 × 3072 floats is 6 MiB): asked for now, its lines arrive while
    // the tile multiplies (benchmarks/README.md, step 34).
    for (std::size_t r = 0; r < rows; ++r) {
        __builtin_prefetch(c + r * ldc, 1, 3);
        __builtin_prefetch(c + r * ldc + 16, 1, 3);
    }
    for (std::size_t u = 0; u < units; ++u, a += mr, b += nr) {
        if constexpr (Stream == b_stream::own) {
            __builtin_prefetch(b + b_ahead * nr, 0, 3);
            __builtin_prefetch(b + b_ahead * nr + 16, 0, 3);
        } else if constexpr (Stream == b_stream::given) {
            blocked::request_given_b(ahead, countdown, ahead_every);
        }
        const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 16);
#pragma GCC unroll 16
        for (std::size_t r = 0; r < mr; ++r) {
            const __m512i ar = _mm512_set1_epi32(static_cast<int>(a[r]));
            if constexpr (F != operand_format::bf16_pairs) {
                acc[r][0] = _mm512_fmadd_ps(_mm512_castsi512_ps(ar), _mm512_castsi512_ps(b0), acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(_mm512_castsi512_ps(ar), _mm512_castsi512_ps(b1), acc[r][1]);
            } else {
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)ar, (__m512bh)b0);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], (__m512bh)ar, (__m512bh)b1);
            }
        }
    }
    const __m512 scale = _mm512_set1_ps(alpha);
    const __mmask16 m0 = static_cast<__mmask16>(cols >= 16 ? 0xffffu : (1u << cols) - 1u);
    const __mmask16 m1 = static_cast<__mmask16>(cols >= 32 ? 0xffffu : cols <= 16 ? 0u : (1u << (cols - 16)) - 1u);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < mr; ++r) {
        if (r >= rows) break;
        float* row = c + r * ldc;
        const __m512 old0 = add_to_c ? _mm512_maskz_loadu_ps(m0, row) : _mm512_setzero_ps();
        const __m512 old1 = add_to_c ? _mm512_maskz_loadu_ps(m1, row + 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(row, m0, _mm512_fmadd_ps(acc[r][0], scale, old0));
        _mm512_mask_storeu_ps(row + 16, m1, _mm512_fmadd_ps(acc[r][1], scale, old1));
    }
}

#else

inline bool has_fp32_kernels() noexcept
{
    return false;
}
inline bool has_bf16_dot_products() noexcept
{
    return false;
}

#endif

/// The AVX-512 kernel set for `blocked_gemm.hpp`: 14 × 32 tiles. On Sapphire Rapids class cores (48 KiB
/// L1, 2 MiB L2) a 14-row A panel (14 KiB) stays in L1 while a pass of the packed B slice (kc × 1024
/// columns, 1 MiB) streams from L2, and the packed A block shares L2 with it (`derive_gemm_blocking`);
/// that blocking was chosen by measurement against OpenBLAS on the encoder's products.
struct avx512_kernels {
    static constexpr std::size_t mr = avx512::mr;
    static constexpr std::size_t tile_cols = nr;
    static constexpr std::size_t block = 16;
    static constexpr bool bf16_dot_products = true;

#if DM2S2_HAS_X86_KERNELS
    template <operand_format F, b_stream Stream>
    static constexpr auto micro_kernel = &avx512::micro_kernel<F, Stream>;
    template <operand_format F>
    static constexpr auto pack_block = &pack_16x16<F>;
    template <operand_format F>
    static constexpr auto pack_row = &avx512::pack_row<F>;
#endif
};
#if DM2S2_HAS_X86_KERNELS
static_assert(blocked::micro_kernel_set<avx512_kernels>);
#endif

}  // namespace dm2s2::detail::avx512
