#pragma once
/// \file
/// Single-precision matrix products on AVX-512, with fp32 or bf16 multiplications.
///
/// The functions are compiled for AVX-512 through target attributes, whatever flags the program is
/// built with, and `cpu_backend` calls them only after asking the processor at run time, so one binary
/// runs everywhere and uses the wide kernels where they exist.
///
/// The product follows the usual blocked scheme: a KC-deep slice of op(B) is packed into 32-column
/// panels, an MC-row slice of op(A) into 14-row panels, and a 14×32 micro-kernel keeps its tile of C
/// in 28 registers. Both packings store 32-bit words (`operand_format`): one float per word in fp32,
/// one float rounded to bf16 precision per word for bf16 products by FMA, or the two bf16 values of
/// consecutive k side by side, which is what `vdpbf16ps` multiplies and adds into fp32.

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "dm2s2/backend/backend.hpp"
#include "dm2s2/backend/packed_matrix.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(DM2S2_NO_AVX512_KERNELS)
#define DM2S2_HAS_AVX512_KERNELS 1
#include <immintrin.h>
#else
#define DM2S2_HAS_AVX512_KERNELS 0
#endif

namespace dm2s2 {

/// How `cpu_backend` multiplies float matrices.
enum class matmul_precision {
    fp32,  ///< fp32 products and sums
    bf16   ///< operands rounded to bfloat16, products summed in fp32 (how: `bf16_kernel`)
};

/// How bf16 products are carried out on AVX-512 processors. Both multiply the operands rounded to
/// bf16 (each product is exact in fp32) and sum in fp32; they differ in the order of the sums, and
/// `vdpbf16ps` also treats subnormal values as zero.
enum class bf16_kernel {
    fastest,      ///< whichever a short measurement at first use finds faster on this processor
    dot_product,  ///< `vdpbf16ps` (AVX512_BF16): two products per lane and instruction
    rounded_fma   ///< operands rounded while they are packed, then fp32 FMA (any AVX-512 processor)
};

/// Rounds a float to the nearest bfloat16 (ties to even), returned as its 16 bits; NaN stays NaN.
inline std::uint16_t to_bfloat16_bits(float x) noexcept
{
    const auto bits = std::bit_cast<std::uint32_t>(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/// The float a bfloat16 stands for.
inline float from_bfloat16_bits(std::uint16_t x) noexcept { return std::bit_cast<float>(std::uint32_t(x) << 16); }

/// x rounded to bfloat16 precision, as a float.
inline float round_to_bfloat16(float x) noexcept { return from_bfloat16_bits(to_bfloat16_bits(x)); }

namespace detail::avx512 {

/// The blocking, chosen by measurement against OpenBLAS on the encoder's products (Sapphire Rapids
/// class cores: 48 KiB L1, 2 MiB L2): a 14 × 32 tile of C fills 28 of the 32 vector registers; a
/// 14-row A panel (14 KiB) stays in L1 while the packed B slice (kc × nc, 1 MiB) streams from L2, and
/// the packed A block (kc × mc, 490 KiB) shares L2 with it. B's blocking is `packed_layout`'s, so that
/// a `packed_matrix` is what packing B would give.
constexpr std::size_t mr = 14;                 // rows of a C tile
constexpr std::size_t nr = packed_layout::nr;  // columns of a C tile: two registers
constexpr std::size_t kc = packed_layout::kc;  // k units (values, or bf16 pairs) per packed slice
constexpr std::size_t mc = 35 * mr;            // rows of A packed at once
constexpr std::size_t nc = packed_layout::nc;  // columns of B packed at once
static_assert(nr == 32, "the micro-kernel holds a tile row in two registers");

/// What a packed 32-bit word holds.
enum class operand_format {
    fp32,          ///< one float
    rounded_bf16,  ///< one float rounded to bf16 precision, for bf16 products by fp32 FMA
    bf16_pairs     ///< the bf16 values of two consecutive k, the lower k in the low half, for `vdpbf16ps`
};

#if DM2S2_HAS_AVX512_KERNELS

/// What the processor running the program offers. `__builtin_cpu_init` makes the answer right even
/// when asked from another static initialiser, before the runtime's own initialisation has run.
inline bool has_fp32_kernels() noexcept
{
    static const bool yes = (__builtin_cpu_init(), __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"));
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
/// traffic. A round is 24 × 16 lanes × 1 (FMA) or 2 (`vdpbf16ps`) products.
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

/// Whether `vdpbf16ps` gives more products per second than fp32 FMA on this processor. It does twice
/// an FMA's products per instruction, but issue rates differ: measured at a quarter of the FMA's rate
/// on Sapphire Rapids class cores (so half the products), it is the faster instruction elsewhere.
/// Timed once, in about a millisecond; the best of several alternating trials of each, and only a
/// clear (25 %) advantage picks `vdpbf16ps`, so that noise does not flip the choice.
inline bool bf16_dot_products_pay() noexcept
{
    static const bool yes = [] {
        if (!has_bf16_dot_products()) return false;
        constexpr std::size_t rounds = 4000;
        double dot = 1e9, fma = 1e9;
        for (int trial = 0; trial < 5; ++trial) {
            fma = std::min(fma, chain_seconds<false>(rounds));
            dot = std::min(dot, chain_seconds<true>(rounds));
        }
        return 2.0 / dot > 1.25 / fma;  // products per second, up to a common factor
    }();
    return yes;
}

/// A float's word in a one-value format. The scalar rounding is named in full: the vector overload
/// below would hide it from calls placed after it.
template <operand_format F>
std::uint32_t word_of(float x) noexcept
{
    return std::bit_cast<std::uint32_t>(F == operand_format::rounded_bf16 ? dm2s2::round_to_bfloat16(x) : x);
}

/// Two values' word in `bf16_pairs`: `lo` in the low half.
inline std::uint32_t word_of(float lo, float hi) noexcept
{
    return std::uint32_t(to_bfloat16_bits(lo)) | (std::uint32_t(to_bfloat16_bits(hi)) << 16);
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

/// Packs 16 rows × 16 k units of a k-contiguous fp32 operand (`src` points at its first value, rows
/// `ld` apart) into panels of `width` rows stored [unit][row] as words of format `F` (fp32 or
/// rounded_bf16), transposing in registers: the scalar loop would cost more than the products on
/// weight panels. `row` and `unit` place the block inside the packed slice of `units` units; its 16
/// rows may straddle two or more panels, so each panel's share of a transposed column is written with
/// a masked store. Each stage is unrolled explicitly: GCC at -O2 would otherwise keep the 32 vectors
/// on the stack (packing at 10-12 instead of 15-18 GB/s). The masked forms of the shuffles
/// with a full mask are used because GCC 12 warns about the undefined pass-through operand of the
/// unmasked ones (GCC bug 105593).
template <operand_format F>
__attribute__((target("avx512f"))) void pack_16x16(const float* src, std::size_t ld, std::uint32_t* out, std::size_t width,
                                                   std::size_t units, std::size_t row, std::size_t unit) noexcept
{
    constexpr __mmask16 all = 0xffff;
    __m512 r[16], t[16];
#pragma GCC unroll 16
    for (int q = 0; q < 16; ++q) {
        r[q] = _mm512_loadu_ps(src + q * ld);
        if constexpr (F == operand_format::rounded_bf16) r[q] = round_to_bfloat16(r[q]);
    }
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

/// Packs `count` rows of an operand, starting at row q0, over k units [p0, p0 + units), into panels of
/// `width` rows stored [unit][row] (rows past `count` are zero). Row q, depth kk of the operand is
/// x[q·ld + kk] when `k_contiguous`, else x[kk·ld + q]; the loops follow whichever is contiguous.
template <operand_format F>
void pack_panels(const float* x, std::size_t ld, bool k_contiguous, std::size_t q0, std::size_t count, std::size_t p0,
                 std::size_t units, std::size_t k, std::size_t width, std::uint32_t* out) noexcept
{
    constexpr bool pairs = F == operand_format::bf16_pairs;
    // One value per word with k contiguous: whole groups of 16 rows × 16 units go through register
    // transposes, and the loops below fill in the rest.
    std::size_t fast_rows = 0, fast_units = 0;
    if constexpr (!pairs) {
        if (k_contiguous) {
            fast_rows = count / 16 * 16;
            fast_units = units / 16 * 16;
            for (std::size_t r = 0; r < fast_rows; r += 16)
                for (std::size_t u = 0; u < fast_units; u += 16) {
                    // Weight rows come from memory on every call, in runs of kc values, too short for
                    // the hardware prefetcher: ask L2 for the rows two groups ahead (packing went from
                    // 17-18 % to 14-15 % of W1's time).
                    if (r + 48 <= count)
                        for (std::size_t q = r + 32; q < r + 48; ++q) __builtin_prefetch(x + (q0 + q) * ld + p0 + u, 0, 1);
                    pack_16x16<F>(x + (q0 + r) * ld + p0 + u, ld, out, width, units, r, u);
                }
        }
    }
    for (std::size_t first = 0; first < count; first += width, out += width * units) {
        const std::size_t rows = std::min(width, count - first);
        if (k_contiguous) {
            for (std::size_t q = 0; q < rows; ++q) {
                const float* src = x + (q0 + first + q) * ld;
                for (std::size_t u = first + q < fast_rows ? fast_units : 0; u < units; ++u) {
                    const std::size_t kk = pairs ? 2 * (p0 + u) : p0 + u;
                    if constexpr (pairs) out[u * width + q] = word_of(src[kk], kk + 1 < k ? src[kk + 1] : 0.0f);
                    else out[u * width + q] = word_of<F>(src[kk]);
                }
            }
        } else {
            for (std::size_t u = 0; u < units; ++u) {
                const std::size_t kk = pairs ? 2 * (p0 + u) : p0 + u;
                const float* src = x + kk * ld + q0 + first;
                const float* next = pairs && kk + 1 < k ? src + ld : nullptr;
                for (std::size_t q = 0; q < rows; ++q) {
                    if constexpr (pairs) out[u * width + q] = word_of(src[q], next ? next[q] : 0.0f);
                    else out[u * width + q] = word_of<F>(src[q]);
                }
            }
        }
        if (rows < width)
            for (std::size_t u = 0; u < units; ++u) std::fill(out + u * width + rows, out + (u + 1) * width, 0u);
    }
}

/// C tile (rows × cols ≤ mr × nr, leading dimension ldc) = alpha · Apanel · Bpanel over `units` k units,
/// plus what the tile held when `add_to_c` (when it is false, C is not read: it may hold anything).
/// `StreamB` asks for B's words `b_ahead` units ahead as it goes: for a B read from memory rather than
/// from a freshly packed slice in L2, where the hardware prefetcher alone keeps up with a fraction of
/// the kernel's pace (a 49 × 768 × 768 product with W from memory: 459 → 328 µs on two threads).
template <operand_format F, bool StreamB = false>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
void micro_kernel(const std::uint32_t* a, const std::uint32_t* b, std::size_t units, float alpha, float* c, std::size_t ldc,
                  std::size_t rows, std::size_t cols, bool add_to_c) noexcept
{
    constexpr std::size_t b_ahead = 32;  // 4 KiB: 16 and 64 were slower
    __m512 acc[mr][2];
#pragma GCC unroll 16
    for (std::size_t r = 0; r < mr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (std::size_t u = 0; u < units; ++u, a += mr, b += nr) {
        if constexpr (StreamB) {
            __builtin_prefetch(b + b_ahead * nr, 0, 3);
            __builtin_prefetch(b + b_ahead * nr + 16, 0, 3);
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

/// This thread's packing buffer number `Slot`, holding at least `words` words, 64-byte aligned so that
/// the micro-kernel's vector loads never straddle cache lines (which measurably slows them). It is
/// reused by later products on the thread: no allocation per product.
template <int Slot>
std::uint32_t* packing_buffer(std::size_t words)
{
    constexpr std::size_t line = 64 / sizeof(std::uint32_t);
    thread_local std::vector<std::uint32_t> buffer;
    if (buffer.size() < words + line) buffer.resize(words + line);
    const auto address = reinterpret_cast<std::uintptr_t>(buffer.data());
    return buffer.data() + (line - address / sizeof(std::uint32_t) % line) % line;
}

/// C[m, n] = alpha op(A) op(B), plus C's old values when `add_to_c` (otherwise C is only written, so
/// it need not be cleared first), on one thread; k > 0. Needs `has_fp32_kernels()`, and for
/// `bf16_pairs` `has_bf16_dot_products()`.
template <operand_format F>
void gemm_accumulate(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc, bool add_to_c)
{
    const std::size_t k_units = F == operand_format::bf16_pairs ? (k + 1) / 2 : k;
    const std::size_t b_cols = std::min(nc, (n + nr - 1) / nr * nr), a_rows = std::min(mc, (m + mr - 1) / mr * mr);
    std::uint32_t* const packed_b = packing_buffer<0>(kc * b_cols);
    std::uint32_t* const packed_a = packing_buffer<1>(kc * a_rows);
    for (std::size_t j0 = 0; j0 < n; j0 += nc) {
        const std::size_t cols = std::min(nc, n - j0);
        for (std::size_t p0 = 0; p0 < k_units; p0 += kc) {
            const std::size_t units = std::min(kc, k_units - p0);
            pack_panels<F>(b, ldb, tb == transpose::yes, j0, cols, p0, units, k, nr, packed_b);
            for (std::size_t i0 = 0; i0 < m; i0 += mc) {
                const std::size_t rows = std::min(mc, m - i0);
                pack_panels<F>(a, lda, ta == transpose::no, i0, rows, p0, units, k, mr, packed_a);
                // One A panel stays in L1 while the B slice streams past it from L2.
                for (std::size_t ir = 0; ir < rows; ir += mr)
                    for (std::size_t jr = 0; jr < cols; jr += nr)
                        micro_kernel<F>(packed_a + ir * units, packed_b + jr * units, units, alpha,
                                        c + (i0 + ir) * ldc + j0 + jr, ldc, std::min(mr, rows - ir), std::min(nr, cols - jr),
                                        add_to_c || p0 > 0);
            }
        }
    }
}

/// Packs W [n, k] (row-major, leading dimension `ld`) into `out` (`packed_layout`) with the products'
/// own packing: what `gemm_accumulate<fp32>` would pack from op(B) = Wᵀ. Each slice goes through this
/// thread's packing buffer, whose words the packing writes, and is then copied into `out`'s floats.
inline void pack_weight(const float* w, std::size_t n, std::size_t k, std::size_t ld, packed_matrix& out)
{
    for (std::size_t j0 = 0; j0 < n; j0 += nc) {
        const std::size_t cols = std::min(nc, n - j0), padded = packed_layout::padded_columns(cols);
        for (std::size_t p0 = 0; p0 < k; p0 += kc) {
            const std::size_t units = std::min(kc, k - p0);
            std::uint32_t* const slice = packing_buffer<0>(units * padded);
            pack_panels<operand_format::fp32>(w, ld, true, j0, cols, p0, units, k, nr, slice);
            std::memcpy(out.data() + packed_layout::slice_offset(n, k, j0, p0), slice, units * padded * sizeof(float));
        }
    }
}

/// Columns [col_begin, col_end) of C[m, n] = alpha A Wᵀ (plus C's old values when `add_to_c`), A [m, k]
/// with row stride lda, W packed; col_begin is a multiple of nr. Only A is packed, once per k slice for
/// all of the columns, which then stream past it from the packed W. Each tile of C, once its last k
/// slice is added, is handed to tile_done(tile, rows, cols, first_column) while it is still in L1.
template <class TileDone>
void gemm_accumulate_packed(std::size_t m, std::size_t col_begin, std::size_t col_end, float alpha, const float* a,
                            std::size_t lda, const packed_matrix& w, float* c, std::size_t ldc, bool add_to_c,
                            TileDone&& tile_done)
{
    const std::size_t n = w.rows(), k = w.cols();
    std::uint32_t* const packed_a = packing_buffer<1>(kc * std::min(mc, (m + mr - 1) / mr * mr));
    for (std::size_t i0 = 0; i0 < m; i0 += mc) {
        const std::size_t rows = std::min(mc, m - i0);
        for (std::size_t p0 = 0; p0 < k; p0 += kc) {
            const std::size_t units = std::min(kc, k - p0);
            const bool last_slice = p0 + units == k;
            pack_panels<operand_format::fp32>(a, lda, true, i0, rows, p0, units, k, mr, packed_a);
            for (std::size_t j0 = col_begin / nc * nc; j0 < col_end; j0 += nc) {
                const std::size_t block_end = std::min({n, j0 + nc, col_end});
                // The kernel reads B only through vector loads, which may alias the floats.
                const auto* slice = reinterpret_cast<const std::uint32_t*>(w.data()) + packed_layout::slice_offset(n, k, j0, p0);
                // The first A panel brings W's slice in from memory; the others find it in L2.
                for (std::size_t ir = 0; ir < rows; ir += mr)
                    for (std::size_t j = std::max(j0, col_begin); j < block_end; j += nr) {
                        const auto kernel = ir == 0 ? micro_kernel<operand_format::fp32, true> : micro_kernel<operand_format::fp32>;
                        float* const tile = c + (i0 + ir) * ldc + j;
                        const std::size_t tile_rows = std::min(mr, rows - ir), tile_cols = std::min(nr, block_end - j);
                        kernel(packed_a + ir * units, slice + (j - j0) * units, units, alpha, tile, ldc, tile_rows, tile_cols,
                               add_to_c || p0 > 0);
                        if (last_slice) tile_done(tile, tile_rows, tile_cols, j);
                    }
            }
        }
    }
}

#else

inline bool has_fp32_kernels() noexcept { return false; }
inline bool has_bf16_dot_products() noexcept { return false; }
inline bool bf16_dot_products_pay() noexcept { return false; }

template <operand_format F>
void gemm_accumulate(transpose, transpose, std::size_t, std::size_t, std::size_t, float, const float*, std::size_t,
                     const float*, std::size_t, float*, std::size_t, bool)
{
}
inline void pack_weight(const float*, std::size_t, std::size_t, std::size_t, packed_matrix&) {}
template <class TileDone>
void gemm_accumulate_packed(std::size_t, std::size_t, std::size_t, float, const float*, std::size_t, const packed_matrix&, float*,
                            std::size_t, bool, TileDone&&)
{
}

#endif

/// `gemm_accumulate<F>` with the format chosen at run time.
inline void gemm_accumulate(operand_format format, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k,
                            float alpha, const float* a, std::size_t lda, const float* b, std::size_t ldb, float* c,
                            std::size_t ldc, bool add_to_c)
{
    const auto run = [&](auto f) { gemm_accumulate<decltype(f)::value>(ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc, add_to_c); };
    using format_t = operand_format;
    switch (format) {
    case format_t::fp32: return run(std::integral_constant<format_t, format_t::fp32>{});
    case format_t::rounded_bf16: return run(std::integral_constant<format_t, format_t::rounded_bf16>{});
    case format_t::bf16_pairs: return run(std::integral_constant<format_t, format_t::bf16_pairs>{});
    }
}

}  // namespace detail::avx512
}  // namespace dm2s2
