#pragma once
/// \file
/// bf16 products on AMX tiles (AMX-BF16; `bf16_kernel::tiles`). One `tdpbf16ps` multiplies a 16 × 32
/// tile of A by a 32 × 16 tile of B into a 16 × 16 fp32 tile of C: 8192 multiply-adds, where an
/// AVX-512 FMA does 16. Both operands are rounded to bf16 and packed into 1 KiB tiles (op(B) in
/// `tile_layout`, once for a weight: `packed_form::bf16_tiles`; A a block of rows at a time). Four tile
/// registers sum a 32 × 32 block of C over the whole depth, which is then scaled into C and handed to
/// the caller's finishing step while it is in L1. Every sum runs over k in one order whatever the
/// blocking, the thread count or whether the weight was packed ahead, so all of these give the same
/// bits. The tile instructions treat subnormal inputs as zero and flush subnormal sums to zero.
///
/// Linux only: the kernel lends the tile registers to a process that asks for them
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), which `has_bf16_tiles` does once for the whole process.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "dm2s2/backend/cpu/avx512_gemm.hpp"
#include "dm2s2/backend/cpu/packed_matrix.hpp"

#if DM2S2_HAS_X86_KERNELS && defined(__linux__)
#define DM2S2_HAS_AMX_KERNELS 1
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define DM2S2_HAS_AMX_KERNELS 0
#endif

namespace dm2s2 {

/// Multiply-adds per second that each bf16 kernel's instruction reaches on register-only chains (no
/// memory traffic), 0 where the processor lacks it: what `bf16_kernel::fastest` chooses by.
struct bf16_rates {
    double fma = 0;          ///< fp32 FMA on operands rounded to bf16 (`bf16_kernel::rounded_fma`)
    double dot_product = 0;  ///< `vdpbf16ps` (`bf16_kernel::dot_product`)
    double tiles = 0;        ///< `tdpbf16ps` (`bf16_kernel::tiles`)
};

/// The kernel `bf16_kernel::fastest` runs at these rates: each step up from FMA, to `vdpbf16ps` and
/// then to tiles, needs a clear (25 %) advantage over the best before it, so that timing noise does not
/// flip the choice between two instructions of about the same rate.
constexpr bf16_kernel fastest_bf16_kernel(const bf16_rates& rates) noexcept
{
    bf16_kernel best = bf16_kernel::rounded_fma;
    double best_rate = rates.fma;
    if (rates.dot_product > 1.25 * best_rate) {
        best = bf16_kernel::dot_product;
        best_rate = rates.dot_product;
    }
    if (rates.tiles > 1.25 * best_rate) best = bf16_kernel::tiles;
    return best;
}

namespace detail::amx {

constexpr std::size_t tile_rows = 16;                   // rows of an A or a C tile, pair rows of a B tile
constexpr std::size_t tile_words = tile_layout::words;  // 32-bit words of an A or a B tile: 16 rows of 64 bytes
constexpr std::size_t block = 32;                       // rows and columns of the C blocks summed in tile registers

/// Words `pack_a` writes for `rows` rows of op(A) over depth k: whole tiles.
constexpr std::size_t packed_a_words(std::size_t rows, std::size_t k) noexcept
{
    return (rows + tile_rows - 1) / tile_rows * tile_layout::depth_tiles(k) * tile_words;
}

#if DM2S2_HAS_AMX_KERNELS

/// Whether the processor has AMX-BF16 and the operating system lets this process use the tile
/// registers (asked once, for the whole process).
inline bool has_bf16_tiles() noexcept
{
    static const bool yes = [] {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        if (!avx512::has_fp32_kernels() || __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
        const bool tiles = ((edx >> 24) & 1u) != 0, bf16 = ((edx >> 22) & 1u) != 0;  // AMX-TILE, AMX-BF16
        constexpr long request_permission = 0x1023, tile_data = 18;                  // ARCH_REQ_XCOMP_PERM, XTILEDATA
        return tiles && bf16 && syscall(SYS_arch_prctl, request_permission, tile_data) == 0;
    }();
    return yes;
}

/// The tile registers' shapes as `ldtilecfg` reads them: each of tmm0-7 16 rows of 64 bytes. tmm0-3
/// hold a 2 × 2 block of C tiles (16 floats a row), tmm4-5 two A tiles and tmm6-7 two B tiles.
struct alignas(64) tile_config {
    std::uint8_t palette = 1;
    std::uint8_t start_row = 0;
    std::uint8_t reserved[14] = {};
    std::uint16_t bytes_per_row[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};
static_assert(sizeof(tile_config) == 64);

/// Loads `tile_config`. The configuration lives in static storage: GCC's `_tile_loadconfig` tells the
/// compiler it reads 8 bytes only, so the rest of a local one's stores could be dropped.
__attribute__((target("amx-tile"))) inline void configure_tiles() noexcept
{
    static constexpr tile_config config{};
    _tile_loadconfig(&config);
}

/// Hands the tile registers back, so that the thread's context switches save no tile state.
__attribute__((target("amx-tile"))) inline void release_tiles() noexcept
{
    _tile_release();
}

/// Seconds for `rounds` rounds of four independent `tdpbf16ps` on tiles held in registers: the
/// instruction's throughput, with no memory traffic. A round is 4 × 16 × 16 × 32 multiply-adds.
__attribute__((target("amx-tile,amx-bf16"))) inline double tile_chain_seconds(std::size_t rounds) noexcept
{
    configure_tiles();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    _tile_zero(6);
    _tile_zero(7);
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t round = 0; round < rounds; ++round) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    release_tiles();
    return seconds;
}

using avx512::first_lanes;
using avx512::load_rounded;
using avx512::pairs_of_consecutive;
using avx512::pairs_of_lanes;

/// The 16 words of bf16 pairs of `depth` (at most 32) consecutive values from `src`, zeros after.
__attribute__((target("avx512f,avx512bw"))) inline __m512 pairs_of_run(const float* src, std::size_t depth) noexcept
{
    return pairs_of_consecutive(load_rounded(src, depth), load_rounded(src + 16, depth > 16 ? depth - 16 : 0));
}

/// Sixteen registers of bf16 pairs from rows `ld` apart: register w holds rows 2w (low halves) and
/// 2w + 1 (high halves) from `src`, `count` lanes of each; rows from `depth` on are zero.
__attribute__((target("avx512f"))) inline void pairs_of_rows(const float* src, std::size_t ld, std::size_t depth,
                                                             std::size_t count, __m512 (&words)[16]) noexcept
{
#pragma GCC unroll 16
    for (std::size_t w = 0; w < 16; ++w) {
        const __m512 lo = 2 * w < depth ? load_rounded(src + 2 * w * ld, count) : _mm512_setzero_ps();
        const __m512 hi = 2 * w + 1 < depth ? load_rounded(src + (2 * w + 1) * ld, count) : _mm512_setzero_ps();
        words[w] = pairs_of_lanes(lo, hi);
    }
}

/// Packs rows [first, first + rows) of op(A) [m, k] as A tiles: tile (i, t) holds rows 16i … 16i + 15
/// and depths 32t … 32t + 31, each row as 16 words of bf16 pairs (`pairs_of_consecutive`); a row
/// block's tiles follow one another in depth order. Rows past `rows` and depths past k are zero. Row
/// q, depth p of op(A) is a[q·lda + p], or a[p·lda + q] when `transposed`.
__attribute__((target("avx512f,avx512bw"))) inline void pack_a(const float* a, std::size_t lda, bool transposed,
                                                               std::size_t first, std::size_t rows, std::size_t k,
                                                               std::uint32_t* out) noexcept
{
    const std::size_t depth_tiles = tile_layout::depth_tiles(k);
    for (std::size_t i = 0; i * tile_rows < rows; ++i) {
        const std::size_t row0 = first + i * tile_rows, count = std::min(tile_rows, rows - i * tile_rows);
        for (std::size_t t = 0; t < depth_tiles; ++t) {
            auto* const tile = reinterpret_cast<float*>(out + (i * depth_tiles + t) * tile_words);
            const std::size_t p = t * tile_layout::depth, depth = std::min(tile_layout::depth, k - p);
            __m512 w[16];
            if (!transposed) {
#pragma GCC unroll 16
                for (std::size_t r = 0; r < tile_rows; ++r)
                    w[r] = r < count ? pairs_of_run(a + (row0 + r) * lda + p, depth) : _mm512_setzero_ps();
            } else {
                // Register w holds depths 2w and 2w + 1 of the 16 rows, row q in lane q; the transpose
                // turns them into the rows' words.
                pairs_of_rows(a + p * lda + row0, lda, depth, count, w);
                avx512::transpose_16x16(w);
            }
#pragma GCC unroll 16
            for (std::size_t r = 0; r < tile_rows; ++r) _mm512_storeu_ps(tile + r * 16, w[r]);
        }
    }
}

/// Packs column tiles [first_tile, last_tile) (16 columns each) of op(B) [k, n] into `out`, which holds
/// the whole of op(B) in `tile_layout`. Depth p, column j of op(B) is b[j·ldb + p] when `k_contiguous`
/// (B = W [n, k], a linear layer's weight), else b[p·ldb + j].
__attribute__((target("avx512f,avx512bw"))) inline void pack_b(const float* b, std::size_t ldb, bool k_contiguous, std::size_t n,
                                                               std::size_t k, std::size_t first_tile, std::size_t last_tile,
                                                               std::uint32_t* out) noexcept
{
    const std::size_t depth_tiles = tile_layout::depth_tiles(k);
    for (std::size_t jt = first_tile; jt < last_tile; ++jt) {
        const std::size_t j0 = jt * tile_layout::columns, count = std::min(tile_layout::columns, n - j0);
        for (std::size_t t = 0; t < depth_tiles; ++t) {
            auto* const tile = reinterpret_cast<float*>(out + (jt * depth_tiles + t) * tile_words);
            const std::size_t p = t * tile_layout::depth, depth = std::min(tile_layout::depth, k - p);
            __m512 w[16];
            if (k_contiguous) {
                // Register c holds column c's 16 words; the transpose turns them into the tile's rows.
#pragma GCC unroll 16
                for (std::size_t c = 0; c < 16; ++c)
                    w[c] = c < count ? pairs_of_run(b + (j0 + c) * ldb + p, depth) : _mm512_setzero_ps();
                avx512::transpose_16x16(w);
            } else {
                pairs_of_rows(b + p * ldb + j0, ldb, depth, count, w);  // register r: the tile's row r
            }
#pragma GCC unroll 16
            for (std::size_t r = 0; r < 16; ++r) _mm512_storeu_ps(tile + r * 16, w[r]);
        }
    }
}

/// Sums a block of C of `RowTiles` × `ColumnTiles` tiles (1 or 2 each) over `depth_tiles` tiles of
/// depth into `sums` (32 rows of 32 floats): A's tiles from `a` (the second row tile `a_step` words
/// on), B's from `b` (the second column tile `b_step` words on), each next depth tile one tile on.
template <int RowTiles, int ColumnTiles>
__attribute__((target("amx-tile,amx-bf16"))) void multiply_block(const std::uint32_t* a, std::size_t a_step,
                                                                 const std::uint32_t* b, std::size_t b_step,
                                                                 std::size_t depth_tiles, float* sums) noexcept
{
    constexpr std::size_t row_bytes = 64, sums_bytes = block * sizeof(float);
    _tile_zero(0);
    if constexpr (ColumnTiles == 2) _tile_zero(1);
    if constexpr (RowTiles == 2) _tile_zero(2);
    if constexpr (RowTiles == 2 && ColumnTiles == 2) _tile_zero(3);
    for (std::size_t t = 0; t < depth_tiles; ++t, a += tile_words, b += tile_words) {
        _tile_loadd(4, a, row_bytes);
        _tile_loadd(6, b, row_bytes);
        _tile_dpbf16ps(0, 4, 6);
        if constexpr (ColumnTiles == 2) {
            _tile_loadd(7, b + b_step, row_bytes);
            _tile_dpbf16ps(1, 4, 7);
        }
        if constexpr (RowTiles == 2) {
            _tile_loadd(5, a + a_step, row_bytes);
            _tile_dpbf16ps(2, 5, 6);
            if constexpr (ColumnTiles == 2) _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, sums, sums_bytes);
    if constexpr (ColumnTiles == 2) _tile_stored(1, sums + 16, sums_bytes);
    if constexpr (RowTiles == 2) _tile_stored(2, sums + 16 * block, sums_bytes);
    if constexpr (RowTiles == 2 && ColumnTiles == 2) _tile_stored(3, sums + 16 * block + 16, sums_bytes);
}

/// C's rows × cols (at most 32 × 32, row stride ldc) = alpha · sums, plus what C held when `add_to_c`
/// (the micro-kernels' formula: one FMA of the sum, alpha and the old value).
__attribute__((target("avx512f"))) inline void store_block(const float* sums, std::size_t rows, std::size_t cols, float alpha,
                                                           float* c, std::size_t ldc, bool add_to_c) noexcept
{
    const __m512 scale = _mm512_set1_ps(alpha);
    const __mmask16 m0 = first_lanes(cols), m1 = first_lanes(cols > 16 ? cols - 16 : 0);
    for (std::size_t r = 0; r < rows; ++r) {
        float* const row = c + r * ldc;
        const float* const sum = sums + r * block;
        const __m512 old0 = add_to_c ? _mm512_maskz_loadu_ps(m0, row) : _mm512_setzero_ps();
        const __m512 old1 = add_to_c ? _mm512_maskz_loadu_ps(m1, row + 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(row, m0, _mm512_fmadd_ps(_mm512_load_ps(sum), scale, old0));
        _mm512_mask_storeu_ps(row + 16, m1, _mm512_fmadd_ps(_mm512_load_ps(sum + 16), scale, old1));
    }
}

/// Columns [col_begin, col_end) of C[m, n] = alpha op(A) op(B), plus C's old values when `add_to_c`
/// (otherwise C is only written), on one thread; op(B) is packed already in `tile_layout` (`b`, depth
/// k > 0) and col_begin is a multiple of 32. Rows of op(A) (see `pack_a`) are packed a block at a time;
/// within a block, each 32 columns of op(B) meet every 32 rows, so that B's columns stay in L1 and L2
/// while A's block is read from L2. Each 32 × 32 block of C, once stored, is handed to
/// tile_done(block, rows, cols, first_column) while it is still in L1.
template <class TileDone>
void multiply(std::size_t m, std::size_t col_begin, std::size_t col_end, float alpha, const float* a, std::size_t lda,
              bool a_transposed, const std::uint32_t* b, std::size_t k, float* c, std::size_t ldc, bool add_to_c,
              TileDone&& tile_done)
{
    constexpr std::size_t rows_per_block = 128;
    const std::size_t depth_tiles = tile_layout::depth_tiles(k), tile_step = depth_tiles * tile_words;
    std::uint32_t* const packed_a = blocked::packing_buffer<1>(packed_a_words(std::min(m, rows_per_block), k));
    alignas(64) float sums[block * block];
    configure_tiles();
    for (std::size_t i0 = 0; i0 < m; i0 += rows_per_block) {
        const std::size_t rows = std::min(rows_per_block, m - i0);
        pack_a(a, lda, a_transposed, i0, rows, k, packed_a);
        for (std::size_t j = col_begin; j < col_end; j += block) {
            const std::size_t cols = std::min(block, col_end - j);
            const std::uint32_t* const columns = b + j / tile_layout::columns * tile_step;
            for (std::size_t r = 0; r < rows; r += block) {
                const std::size_t block_rows = std::min(block, rows - r);
                const std::uint32_t* const a_rows = packed_a + r / tile_rows * tile_step;
                if (block_rows > tile_rows) {
                    if (cols > tile_layout::columns)
                        multiply_block<2, 2>(a_rows, tile_step, columns, tile_step, depth_tiles, sums);
                    else multiply_block<2, 1>(a_rows, tile_step, columns, tile_step, depth_tiles, sums);
                } else {
                    if (cols > tile_layout::columns)
                        multiply_block<1, 2>(a_rows, tile_step, columns, tile_step, depth_tiles, sums);
                    else multiply_block<1, 1>(a_rows, tile_step, columns, tile_step, depth_tiles, sums);
                }
                float* const out = c + (i0 + r) * ldc + j;
                store_block(sums, block_rows, cols, alpha, out, ldc, add_to_c);
                tile_done(out, block_rows, cols, j);
            }
        }
    }
    release_tiles();
}

#else

inline bool has_bf16_tiles() noexcept
{
    return false;
}

#endif

}  // namespace detail::amx

namespace detail {

/// The rates of `bf16_rates` on this processor, each the best of several alternating trials of about
/// a tenth of a millisecond.
inline bf16_rates measure_bf16_rates() noexcept
{
    bf16_rates rates;
#if DM2S2_HAS_X86_KERNELS
    if (!avx512::has_fp32_kernels()) return rates;
    constexpr std::size_t rounds = 4000, tile_rounds = 200;
    double fma = 1e9, dot = 1e9, tiles = 1e9;
    for (int trial = 0; trial < 5; ++trial) {
        fma = std::min(fma, avx512::chain_seconds<false>(rounds));
        if (avx512::has_bf16_dot_products()) dot = std::min(dot, avx512::chain_seconds<true>(rounds));
#if DM2S2_HAS_AMX_KERNELS
        if (amx::has_bf16_tiles()) tiles = std::min(tiles, amx::tile_chain_seconds(tile_rounds));
#endif
    }
    constexpr double lanes_per_round = 16.0 * avx512::timing_chains;
    rates.fma = lanes_per_round * rounds / fma;
    if (avx512::has_bf16_dot_products()) rates.dot_product = 2 * lanes_per_round * rounds / dot;
    if (amx::has_bf16_tiles()) rates.tiles = 4.0 * 16 * 16 * 32 * tile_rounds / tiles;
#endif
    return rates;
}

/// The kernel `bf16_kernel::fastest` runs on this processor: measured once, at first use.
inline bf16_kernel fastest_bf16_kernel_here() noexcept
{
    static const bf16_kernel kernel = fastest_bf16_kernel(measure_bf16_rates());
    return kernel;
}

}  // namespace detail
}  // namespace dm2s2
