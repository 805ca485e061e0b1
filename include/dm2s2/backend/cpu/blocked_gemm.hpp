#pragma once
/// \file
/// Single-precision matrix products by blocks, for any instruction set's micro-kernels.
///
/// The product follows the usual blocked scheme: a KC-deep slice of op(B) is packed into 32-column
/// panels, an MC-row slice of op(A) into MR-row panels, and a micro-kernel keeps an MR × 32 (or
/// MR × 16, half a panel) tile of C in registers while one A panel stays in L1 and B's panels stream
/// past it. Both packings store
/// 32-bit words (`operand_format`): one float per word in fp32, one float rounded to bf16 precision per
/// word for bf16 products by FMA, or the two bf16 values of consecutive k side by side, which is what
/// `vdpbf16ps` multiplies and adds into fp32.
///
/// What depends on the instruction set (the micro-kernel, a register-transpose packing of square
/// blocks, the tile's shape) comes from a `micro_kernel_set`: `avx512_kernels` and `avx2_kernels`.
/// Their functions are compiled for their instruction set through target attributes, whatever flags
/// the program is built with, and `cpu_backend` calls them only after asking the processor at run
/// time, so one binary runs everywhere and uses the widest kernels it finds. The cache blocking
/// (`gemm_blocking`: rows of A per packed block, columns of B per pass) is derived from the tile's
/// rows and the running processor's level 2 cache (`derive_gemm_blocking`).

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "dm2s2/backend/backend.hpp"
#include "dm2s2/backend/cpu/cache_sizes.hpp"
#include "dm2s2/backend/cpu/packed_matrix.hpp"
#include "dm2s2/backend/precision.hpp"
#include "dm2s2/core/bfloat16.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(DM2S2_NO_X86_KERNELS) && \
    !defined(DM2S2_NO_AVX512_KERNELS)
#define DM2S2_HAS_X86_KERNELS 1
#include <immintrin.h>
#else
#define DM2S2_HAS_X86_KERNELS 0
#endif

namespace dm2s2 {

/// How bf16 products are carried out on AVX-512 processors. All multiply the operands rounded to bf16
/// (each product is exact in fp32) and sum in fp32; they differ in the order of the sums, and
/// `vdpbf16ps` and the tiles also treat subnormal values as zero.
enum class bf16_kernel {
    fastest,      ///< whichever a short measurement at first use finds fastest on this processor (`fastest_bf16_kernel`)
    dot_product,  ///< `vdpbf16ps` (AVX512_BF16): two products per lane and instruction
    rounded_fma,  ///< operands rounded while they are packed, then fp32 FMA (any AVX2 or AVX-512 processor)
    tiles         ///< AMX tiles (AMX-BF16): a 16 × 16 block of C per instruction; `fastest` where the processor lacks them
};

namespace detail::blocked {

constexpr std::size_t nr = packed_layout::nr;  // columns of a C tile
constexpr std::size_t kc = packed_layout::kc;  // k units (values, or bf16 pairs) per packed slice
static_assert(nr == 32, "the micro-kernels hold a tile row of 32 columns");

/// What a packed 32-bit word holds.
enum class operand_format {
    fp32,          ///< one float
    rounded_bf16,  ///< one float rounded to bf16 precision, for bf16 products by fp32 FMA
    bf16_pairs     ///< the bf16 values of two consecutive k, the lower k in the low half, for `vdpbf16ps`
};

/// What a micro-kernel asks the memory for while it multiplies. Asking changes no sum.
enum class b_stream {
    none,  ///< nothing: B is in cache (a slice packed by the product itself, or a panel asked for before)
    own,   ///< its own B words a fixed number of units ahead of use: B comes from memory as it goes
    /// nr words (two cache lines) each `ahead_every` units, starting at `ahead` and nr words on each
    /// time, into L2: a share of the B words that a later tile or pass reads, so that they arrive while
    /// this tile multiplies
    given
};

/// A micro-kernel's `b_stream::given` request at one k unit: every `every` units, asks for the nr words
/// at `ahead` (two cache lines, into L2) and moves `ahead` on by nr. `countdown` starts at `every`.
inline void request_given_b(const std::uint32_t*& ahead, std::size_t& countdown, std::size_t every) noexcept
{
    if (--countdown == 0) {
        countdown = every;
        __builtin_prefetch(ahead, 0, 2);
        __builtin_prefetch(ahead + 16, 0, 2);
        ahead += nr;
    }
}

/// What a kernel set with `vdpbf16ps` adds (`micro_kernel_set`): its micro-kernel, `pack_block` and
/// `pack_row` on `bf16_pairs` (for `pack_row`, hi is the next k's row, or null past k's end).
template <class K>
concept bf16_pair_kernels = requires(const float* x, std::uint32_t* out, const std::uint32_t* packed, float* c, std::size_t n) {
    K::template micro_kernel<operand_format::bf16_pairs, b_stream::none>(packed, packed, n, 1.0f, c, n, n, n, true, packed, n);
    K::template pack_block<operand_format::bf16_pairs>(x, n, out, n, n, n, n);
    K::template pack_row<operand_format::bf16_pairs>(x, x, out, n);
};

/// An instruction set's kernels for the blocked product.
///  - `mr`, `tile_cols`: rows and columns of a C tile (tile_cols is nr, or half of it); `block`: the
///    side of the square blocks `pack_block` transposes; `bf16_dot_products`: whether the
///    micro-kernel takes `bf16_pairs`.
///  - `micro_kernel<F, Stream>(a, b, units, alpha, c, ldc, rows, cols, add_to_c, ahead, ahead_every)`:
///    the C tile (rows × cols ≤ mr × tile_cols, leading dimension ldc) = alpha · Apanel · Bpanel over
///    `units` k units, plus what the tile held when `add_to_c` (otherwise C is not read: it may hold
///    anything). B's words for a k unit start at b and the next unit's are nr words on. `Stream`
///    (`b_stream`) says what the kernel asks the memory for as it goes; `ahead` and `ahead_every`
///    are read by `b_stream::given` only.
///  - `pack_block<F>(src, ld, out, width, units, row, unit)`: block rows × block k units of a
///    k-contiguous operand (rows `ld` apart) into panels of `width` rows stored [unit][row], at row
///    `row` and unit `unit` of a packed slice of `units` units (F is fp32 or rounded_bf16, and
///    bf16_pairs where `bf16_dot_products`).
///  - `pack_row<F>(lo, hi, out, count)`: one k unit of `count` rows of an operand whose rows are
///    contiguous (k is not), lo pointing at its first value, as F's words at `out` (hi: the next k's
///    row, read for bf16_pairs only).
///  - where `bf16_dot_products`, what `bf16_pair_kernels` asks for.
template <class K>
concept micro_kernel_set = requires(const float* x, std::uint32_t* out, const std::uint32_t* packed, float* c, std::size_t n) {
    { K::mr } -> std::convertible_to<std::size_t>;
    { K::tile_cols } -> std::convertible_to<std::size_t>;
    { K::block } -> std::convertible_to<std::size_t>;
    { K::bf16_dot_products } -> std::convertible_to<bool>;
    K::template micro_kernel<operand_format::fp32, b_stream::none>(packed, packed, n, 1.0f, c, n, n, n, true, packed, n);
    K::template micro_kernel<operand_format::fp32, b_stream::own>(packed, packed, n, 1.0f, c, n, n, n, true, packed, n);
    K::template micro_kernel<operand_format::fp32, b_stream::given>(packed, packed, n, 1.0f, c, n, n, n, true, packed, n);
    K::template pack_block<operand_format::fp32>(x, n, out, n, n, n, n);
    K::template pack_block<operand_format::rounded_bf16>(x, n, out, n, n, n, n);
    K::template pack_row<operand_format::fp32>(x, x, out, n);
    K::template pack_row<operand_format::rounded_bf16>(x, x, out, n);
} && nr % K::tile_cols == 0 && (!K::bf16_dot_products || bf16_pair_kernels<K>);

/// The cache blocking of a product's loops: `mc` rows of A packed at once (a multiple of the tile's
/// rows) and `nc` columns of C per pass over one packed A block (a multiple of nr dividing
/// `packed_layout::nc`; within a pass, each A panel meets every B panel before the next A panel
/// starts). The depth of a slice, kc, is fixed: it is part of the packed weights' layout, and an A
/// panel of kc units (mr · kc words, 14 KiB for AVX-512's 14 rows) stays within half of any level 1
/// data cache of 32 KiB or more. The blocking decides where the loops cut, not the order of any
/// sum: every blocking gives the same products bit for bit.
struct gemm_blocking {
    std::size_t mc = 0;
    std::size_t nc = 0;

    friend bool operator==(const gemm_blocking&, const gemm_blocking&) = default;
};

/// The blocking for tiles of `mr` rows on a core whose level 2 cache holds `caches.l2` bytes: a pass of
/// B's slice (kc × nc words) takes at most half of L2 (the widest such nc, down to one panel), and the
/// packed A block (kc × mc words) at most a quarter (at least one panel), the rest left to C's tiles
/// and what streams through. On 2 MiB (Sapphire Rapids class cores) this gives AVX-512's 14-row
/// tiles passes of 1024 columns and blocks of 504 rows; on 512 KiB (AMD Zen 3) AVX2's 6-row tiles
/// passes of 256 columns and blocks of 126 rows; on 1 MiB (AMD Zen 4 and 5) AVX-512's 512 and 252.
constexpr gemm_blocking derive_gemm_blocking(std::size_t mr, const cpu_cache_sizes& caches) noexcept
{
    constexpr std::size_t slice_bytes_per_column = kc * sizeof(std::uint32_t);
    std::size_t nc = packed_layout::nc;
    while (nc > nr && nc * slice_bytes_per_column > caches.l2 / 2) nc /= 2;
    const std::size_t panels = caches.l2 / 4 / slice_bytes_per_column / mr;
    return {(panels > 0 ? panels : 1) * mr, nc};
}

/// k units of a product k deep in format F: pairs of depths for `bf16_pairs`, values otherwise.
template <operand_format F>
constexpr std::size_t units_of(std::size_t k) noexcept
{
    return F == operand_format::bf16_pairs ? depth_pairs(k) : k;
}

/// A float's word in a one-value format.
template <operand_format F>
std::uint32_t word_of(float x) noexcept
{
    return std::bit_cast<std::uint32_t>(F == operand_format::rounded_bf16 ? round_to_bfloat16(x) : x);
}

/// Two values' word in `bf16_pairs`: `lo` in the low half.
inline std::uint32_t word_of(float lo, float hi) noexcept
{
    return std::uint32_t(to_bfloat16_bits(lo)) | (std::uint32_t(to_bfloat16_bits(hi)) << 16);
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

/// Packs `count` rows of an operand, starting at row q0, over k units [p0, p0 + units), into panels of
/// `width` rows stored [unit][row] (rows past `count` are zero). Row q, depth kk of the operand is
/// x[q·ld + kk] when `k_contiguous`, else x[kk·ld + q]; the loops follow whichever is contiguous.
template <micro_kernel_set K, operand_format F>
void pack_panels(const float* x, std::size_t ld, bool k_contiguous, std::size_t q0, std::size_t count, std::size_t p0,
                 std::size_t units, std::size_t k, std::size_t width, std::uint32_t* out) noexcept
{
    constexpr bool pairs = F == operand_format::bf16_pairs;
    constexpr std::size_t block = K::block, values_per_unit = pairs ? 2 : 1;
    // With k contiguous, whole square blocks of rows × units go through register transposes, and the
    // loops below fill in the rest (the units whose values run past k's end among them).
    std::size_t fast_rows = 0, fast_units = 0;
    if (k_contiguous) {
        fast_rows = count / block * block;
        fast_units = std::min(units, (k - values_per_unit * p0) / values_per_unit) / block * block;
        for (std::size_t r = 0; r < fast_rows; r += block)
            for (std::size_t u = 0; u < fast_units; u += block) {
                const float* const src = x + (q0 + r) * ld + values_per_unit * (p0 + u);
                // Weight rows come from memory on every call, in runs of kc values, too short for the
                // hardware prefetcher: ask L2 for the rows two blocks ahead (benchmarks/README.md, step 7).
                if (r + 3 * block <= count)
                    for (std::size_t q = 2 * block; q < 3 * block; ++q) {
                        __builtin_prefetch(src + q * ld, 0, 1);
                        if constexpr (pairs) __builtin_prefetch(src + q * ld + block, 0, 1);
                    }
                K::template pack_block<F>(src, ld, out, width, units, r, u);
            }
    }
    if (!k_contiguous) {
        // One k unit at a time across a group of panels, so that each row of the operand is read in runs
        // of about 1 KiB, and the rows two units on are asked for meanwhile: panel by panel, every run of
        // `width` values came from another page, and rows of a few KiB are too short for the hardware
        // prefetcher (benchmarks/README.md, step 33). Across all of B's panels at once, each unit's
        // stores went to dozens of panels 32 KiB apart, which share one set of the level 1 cache, and
        // packing ran at less than half the speed (step 34).
        constexpr std::size_t line = 64 / sizeof(float), rows_ahead = 2 * values_per_unit;
        const std::size_t group = std::max<std::size_t>(1, 256 / width) * width;
        for (std::size_t group_first = 0; group_first < count; group_first += group)
            for (std::size_t u = 0; u < units; ++u) {
                const std::size_t kk = values_per_unit * (p0 + u);
                const float* const row = x + kk * ld + q0;
                const float* const next = pairs && kk + 1 < k ? row + ld : nullptr;
                const bool ask = u + 2 < units;
                for (std::size_t first = group_first; first < std::min(count, group_first + group); first += width) {
                    const std::size_t rows = std::min(width, count - first);
                    if (ask)  // the lines starting in this panel's run, in the rows two units on
                        for (std::size_t q = (first + line - 1) / line * line; q < first + rows; q += line)
                            for (std::size_t r = rows_ahead; r < rows_ahead + values_per_unit && kk + r < k; ++r)
                                __builtin_prefetch(row + r * ld + q, 0, 1);
                    K::template pack_row<F>(row + first, next != nullptr ? next + first : nullptr,
                                            out + first * units + u * width, rows);
                }
            }
    }
    for (std::size_t first = 0; first < count; first += width, out += width * units) {
        const std::size_t rows = std::min(width, count - first);
        if (k_contiguous) {
            for (std::size_t q = 0; q < rows; ++q) {
                const float* src = x + (q0 + first + q) * ld;
                for (std::size_t u = first + q < fast_rows ? fast_units : 0; u < units; ++u) {
                    const std::size_t kk = values_per_unit * (p0 + u);
                    if constexpr (pairs) out[u * width + q] = word_of(src[kk], kk + 1 < k ? src[kk + 1] : 0.0f);
                    else out[u * width + q] = word_of<F>(src[kk]);
                }
            }
        }
        if (rows < width)
            for (std::size_t u = 0; u < units; ++u) std::fill(out + u * width + rows, out + (u + 1) * width, 0u);
    }
}

/// Calls tile(ir, j) for the tiles of C's rows [0, rows) and columns [first_col, end_col) (ir and j:
/// the tile's first row and column), row of tiles by row of tiles, so that one A panel stays in L1
/// while B's panels stream past it; first_col is a multiple of nr.
template <micro_kernel_set K, class Tile>
void for_each_tile(std::size_t rows, std::size_t first_col, std::size_t end_col, Tile&& tile)
{
    for (std::size_t ir = 0; ir < rows; ir += K::mr)
        for (std::size_t j = first_col; j < end_col; j += K::tile_cols) tile(ir, j);
}

/// Where the B words of the tile whose first column is j start, in a packed slice of `units` k units.
constexpr std::size_t panel_offset(std::size_t j, std::size_t units) noexcept
{
    return j / nr * nr * units + j % nr;
}

/// C[m, n] = alpha op(A) op(B), plus C's old values when `add_to_c` (otherwise C is only written, so
/// it need not be cleared first), on one thread, blocked as `blocking` says (made for K::mr); k > 0.
/// The caller checks that the processor has K's instructions (and, for `bf16_pairs`, AVX512_BF16).
template <micro_kernel_set K, operand_format F>
void gemm_accumulate(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                     std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc, bool add_to_c,
                     const gemm_blocking& blocking)
{
    const std::size_t k_units = units_of<F>(k);
    constexpr std::size_t nc = packed_layout::nc;
    const std::size_t mc = blocking.mc;
    const std::size_t b_cols = std::min(nc, (n + nr - 1) / nr * nr), a_rows = std::min(mc, (m + K::mr - 1) / K::mr * K::mr);
    std::uint32_t* const packed_b = packing_buffer<0>(kc * b_cols);
    std::uint32_t* const packed_a = packing_buffer<1>(kc * a_rows);
    for (std::size_t j0 = 0; j0 < n; j0 += nc) {
        const std::size_t cols = std::min(nc, n - j0);
        for (std::size_t p0 = 0; p0 < k_units; p0 += kc) {
            const std::size_t units = std::min(kc, k_units - p0);
            pack_panels<K, F>(b, ldb, tb == transpose::yes, j0, cols, p0, units, k, nr, packed_b);
            for (std::size_t i0 = 0; i0 < m; i0 += mc) {
                const std::size_t rows = std::min(mc, m - i0);
                pack_panels<K, F>(a, lda, ta == transpose::no, i0, rows, p0, units, k, K::mr, packed_a);
                for (std::size_t pass = 0; pass < cols; pass += blocking.nc)
                    for_each_tile<K>(rows, pass, std::min(cols, pass + blocking.nc), [&](std::size_t ir, std::size_t j) {
                        K::template micro_kernel<F, b_stream::none>(
                            packed_a + ir * units, packed_b + panel_offset(j, units), units, alpha, c + (i0 + ir) * ldc + j0 + j,
                            ldc, std::min(K::mr, rows - ir), std::min(K::tile_cols, cols - j), add_to_c || p0 > 0, nullptr, 1);
                    });
            }
        }
    }
}

/// `gemm_accumulate<K, F>` with the format chosen at run time.
template <micro_kernel_set K>
void gemm_accumulate(operand_format format, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                     const float* a, std::size_t lda, const float* b, std::size_t ldb, float* c, std::size_t ldc, bool add_to_c,
                     const gemm_blocking& blocking)
{
    switch (format) {
    case operand_format::fp32:
        return gemm_accumulate<K, operand_format::fp32>(ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc, add_to_c, blocking);
    case operand_format::rounded_bf16:
        return gemm_accumulate<K, operand_format::rounded_bf16>(ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc, add_to_c,
                                                                blocking);
    case operand_format::bf16_pairs:
        if constexpr (K::bf16_dot_products)
            return gemm_accumulate<K, operand_format::bf16_pairs>(ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc, add_to_c,
                                                                  blocking);
        break;
    }
}

/// Packs columns [col_begin, col_end) of op(B) [k deep, n columns] into `out`, which holds the whole
/// of op(B) in `packed_layout` over F's k units: for each slice, the words `gemm_accumulate<K, F>`
/// packs for those columns. col_begin is a multiple of nr; col_end is too, or n. Column j, depth p
/// of op(B) is b[j·ldb + p] when `k_contiguous` (B = W [n, k], a linear layer's weight), else
/// b[p·ldb + j]. Threads packing disjoint ranges of whole panels write disjoint words, so they can
/// share a slice that has fewer blocks of columns than threads.
template <micro_kernel_set K, operand_format F>
void pack_columns(const float* b, std::size_t ldb, bool k_contiguous, std::size_t n, std::size_t k, std::size_t col_begin,
                  std::size_t col_end, std::uint32_t* out) noexcept
{
    const std::size_t k_units = units_of<F>(k);
    for (std::size_t j0 = col_begin / packed_layout::nc * packed_layout::nc; j0 < col_end; j0 += packed_layout::nc) {
        const std::size_t first = std::max(j0, col_begin), last = std::min({n, j0 + packed_layout::nc, col_end});
        for (std::size_t p0 = 0; p0 < k_units; p0 += kc) {
            const std::size_t units = std::min(kc, k_units - p0);
            pack_panels<K, F>(b, ldb, k_contiguous, first, last - first, p0, units, k, nr,
                              out + packed_layout::slice_offset(n, k_units, j0, p0) + panel_offset(first - j0, units));
        }
    }
}

/// Packs W [n, k] (row-major, leading dimension `ld`) into `out` (`packed_layout` over F's k units:
/// `packed_form::fp32_panels` for fp32 and rounded_bf16, `packed_form::bf16_pairs` for bf16_pairs)
/// with the products' own packing: what `gemm_accumulate<K, F>` would pack from op(B) = Wᵀ. Each
/// slice goes through this thread's packing buffer, whose words the packing writes, and is then
/// copied into `out`'s words.
template <micro_kernel_set K, operand_format F>
void pack_weight(const float* w, std::size_t n, std::size_t k, std::size_t ld, packed_matrix& out)
{
    const std::size_t k_units = units_of<F>(k);
    for (std::size_t j0 = 0; j0 < n; j0 += packed_layout::nc) {
        const std::size_t cols = std::min(packed_layout::nc, n - j0), padded = packed_layout::padded_columns(cols);
        for (std::size_t p0 = 0; p0 < k_units; p0 += kc) {
            const std::size_t units = std::min(kc, k_units - p0);
            std::uint32_t* const slice = packing_buffer<0>(units * padded);
            pack_panels<K, F>(w, ld, true, j0, cols, p0, units, k, nr, slice);
            std::memcpy(out.data() + packed_layout::slice_offset(n, k_units, j0, p0), slice, units * padded * sizeof(float));
        }
    }
}

/// Columns [col_begin, col_end) of C[m, n] = alpha A op(B) (plus C's old values when `add_to_c`), A
/// [m, k] with row stride lda, op(B) [k, n] packed already in `packed_layout` over F's k units (`b`);
/// col_begin is a multiple of nr; blocked as `blocking` says (made for K::mr). Only A is packed, once
/// per k slice for all of the columns, which then stream past it from the packed B, `blocking.nc`
/// columns per pass over the A block. The k slices are the outer loop, as in `gemm_accumulate`, so
/// each block of A's rows finds the slice of B that the block before it read still in the last-level
/// cache; with the row blocks outermost, every block streamed all of B from memory (benchmarks/README.md,
/// step 25). Each tile of C, once its last k slice is added, is handed to tile_done(tile, rows, cols,
/// first_column) while it is still in L1. The sums are those of `gemm_accumulate<K, F>`, bit for bit.
template <micro_kernel_set K, operand_format F, class TileDone>
void gemm_accumulate_packed(std::size_t m, std::size_t col_begin, std::size_t col_end, float alpha, const float* a,
                            std::size_t lda, const std::uint32_t* b, std::size_t n, std::size_t k, float* c, std::size_t ldc,
                            bool add_to_c, const gemm_blocking& blocking, TileDone&& tile_done)
{
    // A block of at most this many A panels meets each B panel with all of its panels in turn, rather
    // than each A panel meeting all of B: the first panel reads B's panel from memory and the others
    // find it in cache, so that the reads from memory spread over the whole pass instead of coming all
    // in the first A panel's; single sequences ran faster (benchmarks/README.md, step 27). Larger
    // blocks keep one A panel in L1 while B streams from L2.
    constexpr std::size_t few_panels = 10;
    const std::size_t mc = blocking.mc;
    std::uint32_t* const packed_a = packing_buffer<1>(kc * std::min(mc, (m + K::mr - 1) / K::mr * K::mr));
    const std::size_t k_units = units_of<F>(k);
    for (std::size_t p0 = 0; p0 < k_units; p0 += kc) {
        const std::size_t units = std::min(kc, k_units - p0);
        const bool last_slice = p0 + units == k_units;
        for (std::size_t i0 = 0; i0 < m; i0 += mc) {
            const std::size_t rows = std::min(mc, m - i0);
            pack_panels<K, F>(a, lda, true, i0, rows, p0, units, k, K::mr, packed_a);
            for (std::size_t j0 = col_begin / packed_layout::nc * packed_layout::nc; j0 < col_end; j0 += packed_layout::nc) {
                const std::size_t block_end = std::min({n, j0 + packed_layout::nc, col_end});
                const std::uint32_t* const slice = b + packed_layout::slice_offset(n, k_units, j0, p0);
                for (std::size_t pass = std::max(j0, col_begin); pass < block_end; pass += blocking.nc) {
                    const std::size_t pass_end = std::min(block_end, pass + blocking.nc);
                    // Where the pass after this one, in the loops' order, reads its B, and how many words:
                    // the next pass of this block, else the first of the next block of columns, else, after
                    // the last block of rows, the first pass of the next slice; nothing where the next pass
                    // reads this slice again (another block of rows) or there is none.
                    const auto next_pass = [&](std::size_t start) -> std::pair<const std::uint32_t*, std::size_t> {
                        std::size_t depth = p0, block = j0;
                        if (start >= block_end) {
                            block = j0 + packed_layout::nc;
                            if (block >= col_end) {
                                if (i0 + mc < m || last_slice) return {nullptr, 0};
                                depth = p0 + kc;
                                block = col_begin / packed_layout::nc * packed_layout::nc;
                            }
                            start = std::max(block, col_begin);
                        }
                        const std::size_t next_units = std::min(kc, k_units - depth),
                                          end = std::min({n, block + packed_layout::nc, col_end}),
                                          cols = std::min(end, start + blocking.nc) - start;
                        return {
                            b + packed_layout::slice_offset(n, k_units, block, depth) + panel_offset(start - block, next_units),
                            next_units * packed_layout::padded_columns(cols)};
                    };
                    // The tile of A panel ir and columns from j. Without `ahead`, the first A panel brings W's
                    // columns into L2 (from memory, or for later row blocks from the last-level cache) and the
                    // others find them there; with it, the kernel asks for a share of the next tile's instead.
                    const auto tile = [&](std::size_t ir, std::size_t j, const std::uint32_t* ahead, std::size_t every) {
                        float* const out = c + (i0 + ir) * ldc + j;
                        const std::uint32_t* const b_tile = slice + panel_offset(j - j0, units);
                        const std::size_t tile_rows = std::min(K::mr, rows - ir),
                                          tile_cols = std::min(K::tile_cols, pass_end - j);
                        const bool add = add_to_c || p0 > 0;
                        if (ahead != nullptr)
                            K::template micro_kernel<F, b_stream::given>(packed_a + ir * units, b_tile, units, alpha, out, ldc,
                                                                         tile_rows, tile_cols, add, ahead, every);
                        else if (ir == 0)
                            K::template micro_kernel<F, b_stream::own>(packed_a + ir * units, b_tile, units, alpha, out, ldc,
                                                                       tile_rows, tile_cols, add, nullptr, 1);
                        else
                            K::template micro_kernel<F, b_stream::none>(packed_a + ir * units, b_tile, units, alpha, out, ldc,
                                                                        tile_rows, tile_cols, add, nullptr, 1);
                        if (last_slice) tile_done(out, tile_rows, tile_cols, j);
                    };
                    if (rows <= few_panels * K::mr) {
                        // With two A panels or more, while a tile's panels multiply, each asks for its share
                        // of the next tile's B words, so that the reads from memory run all along rather
                        // than in one panel's kernel (benchmarks/README.md, step 30). The first panel of a
                        // pass's first tile, and a lone panel throughout, ask for their own B words ahead
                        // instead (the tiles of a slice lie one after another, so a lone panel's stream
                        // runs on into the next tile).
                        const std::size_t a_panels = (rows + K::mr - 1) / K::mr;
                        for (std::size_t j = pass; j < pass_end; j += K::tile_cols) {
                            const std::uint32_t* const next =
                                j + K::tile_cols < pass_end ? slice + panel_offset(j + K::tile_cols - j0, units) : nullptr;
                            const std::size_t own = j == pass ? 1 : 0, shares = a_panels - own;
                            for (std::size_t panel = 0; panel < a_panels; ++panel) {
                                const bool shared = next != nullptr && a_panels > 1 && panel >= own;
                                tile(panel * K::mr, j, shared ? next + (panel - own) * units / shares * nr : nullptr, shares);
                            }
                        }
                    } else {
                        // The first A panel brings this pass's B into L2 as it goes; the others, which find it
                        // there, ask for shares of the B words the next pass reads from memory, spread over
                        // all of their tiles (benchmarks/README.md, step 31).
                        const auto next_region = next_pass(pass_end);
                        const std::uint32_t* const next = next_region.first;
                        const std::size_t chunks = next_region.second / nr,
                                          calls = (rows - 1) / K::mr * ((pass_end - pass + K::tile_cols - 1) / K::tile_cols);
                        // Rounded up, so that no kernel asks for words past its share.
                        const std::size_t every =
                            chunks == 0 ? 1 : std::max<std::size_t>(1, (units * calls + chunks - 1) / chunks);
                        std::size_t call = 0;
                        for_each_tile<K>(rows, pass, pass_end, [&](std::size_t ir, std::size_t j) {
                            if (ir == 0 || next == nullptr) return tile(ir, j, nullptr, 1);
                            tile(ir, j, next + call++ * chunks / calls * nr, every);
                        });
                    }
                }
            }
        }
    }
}

}  // namespace detail::blocked
}  // namespace dm2s2
