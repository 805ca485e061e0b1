#pragma once
/// \file
/// `packed_matrix`: a weight matrix stored once in the layout the CPU product kernels read, so that
/// inference does not repack it on every product.
///
/// A product's kernels read B (a linear layer's weight W [n, k], multiplied as x·Wᵀ) in slices: the
/// columns of C in blocks of `packed_layout::nc`, k in slices of `packed_layout::kc`, and each slice as
/// panels of `packed_layout::nr` columns stored [k][column]. Packing is a share of every product, the
/// larger the fewer the rows (docs/performance.md), and it is the same on every call for a weight.
/// The layout is a permutation of W's values (plus zero columns that round n up to whole
/// panels), so `unpack` gives back W exactly, unless the values were rounded to bfloat16 as they were
/// packed (`weight_rounding::bf16`, for bf16 products, which round them on every call otherwise).
///
/// Two forms hold W's values as bfloat16, two to a 32-bit word, in half the memory of the float forms:
/// `packed_form::bf16_pairs`, the same layout over pairs of consecutive depths, for `vdpbf16ps`
/// products, and `packed_form::bf16_tiles` (`tile_layout`), the 1 KiB blocks one AMX tile instruction
/// multiplies.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "dm2s2/core/bfloat16.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2 {

/// The blocking the CPU product kernels share, and so the packed layout (`blocked_gemm.hpp`; chosen on
/// Sapphire Rapids class cores, 48 KiB L1 and 2 MiB L2; the AVX2 kernels read the same slices in
/// passes of 256 columns).
namespace packed_layout {
constexpr std::size_t nr = 32;    ///< columns of a panel (of a C tile)
constexpr std::size_t kc = 256;   ///< k units per packed slice
constexpr std::size_t nc = 1024;  ///< columns of B per block

/// n rounded up to whole panels.
constexpr std::size_t padded_columns(std::size_t n) noexcept
{
    return (n + nr - 1) / nr * nr;
}

/// Where the slice of the block of columns starting at j0 and of depths starting at p0 (multiples of
/// nc and kc) begins: the earlier blocks are whole, and each slice before it in the block is as wide
/// as the block rounded up to whole panels.
constexpr std::size_t slice_offset(std::size_t n, std::size_t k, std::size_t j0, std::size_t p0) noexcept
{
    return j0 * k + p0 * padded_columns(std::min(nc, n - j0));
}

/// Where value (column j, depth p) of B [n columns, k deep] lies: in its slice, the panels follow one
/// another, each [unit][nr]. (For `packed_form::bf16_pairs`, k and p count pairs of depths.)
constexpr std::size_t index(std::size_t n, std::size_t k, std::size_t j, std::size_t p) noexcept
{
    const std::size_t j0 = j / nc * nc, p0 = p / kc * kc, units = std::min(kc, k - p0);
    return slice_offset(n, k, j0, p0) + (j - j0) / nr * nr * units + (p - p0) * nr + (j - j0) % nr;
}
}  // namespace packed_layout

/// The blocks AMX tile products read B in (`packed_form::bf16_tiles`): op(B) [k deep, n columns] cut
/// into tiles of 32 depths × 16 columns, each 16 rows of 16 32-bit words, the word of row r and column c
/// holding the bfloat16 values of depths 2r (low half) and 2r + 1 (high half) of column c. The tiles of
/// a block of 16 columns follow one another in depth order, and the blocks of columns follow one
/// another; depths past k and columns past n are zero.
namespace tile_layout {
constexpr std::size_t columns = 16;                 ///< columns of a tile
constexpr std::size_t depth = 32;                   ///< bfloat16 values of k per tile
constexpr std::size_t words = columns * depth / 2;  ///< 32-bit words of a tile (1 KiB)

/// Tiles along k.
constexpr std::size_t depth_tiles(std::size_t k) noexcept
{
    return (k + depth - 1) / depth;
}

/// Blocks of 16 columns.
constexpr std::size_t column_tiles(std::size_t n) noexcept
{
    return (n + columns - 1) / columns;
}

/// Words of the whole of op(B).
constexpr std::size_t size(std::size_t n, std::size_t k) noexcept
{
    return column_tiles(n) * depth_tiles(k) * words;
}

/// The word holding (column j, depth p), which holds it in its low half when p is even.
constexpr std::size_t index(std::size_t k, std::size_t j, std::size_t p) noexcept
{
    return (j / columns * depth_tiles(k) + p / depth) * words + p % depth / 2 * columns + j % columns;
}
}  // namespace tile_layout

/// How a `packed_matrix` lays out its values.
enum class packed_form {
    fp32_panels,  ///< one float per word in `packed_layout` (exact, or rounded to bfloat16)
    /// in `packed_layout` over (k + 1) / 2 pairs of depths, one word per pair: the bfloat16 values of
    /// depths 2u (low half) and 2u + 1 (high half; zero past k), for `vdpbf16ps` products (always rounded)
    bf16_pairs,
    bf16_tiles  ///< bfloat16 pairs in `tile_layout`, for AMX tile products (always rounded)
};

/// Pairs of depths of a weight k deep: the depth of its `packed_form::bf16_pairs` layout.
constexpr std::size_t depth_pairs(std::size_t k) noexcept
{
    return (k + 1) / 2;
}

/// Whether a packed weight holds W's values exactly or rounded to bfloat16; as an argument of
/// `pack_weights`, the rounding it may apply.
enum class weight_rounding {
    none,  ///< W's values: unpacking, saving and training see the weight as it was
    /// W's values rounded to bfloat16 (ties to even), for products that multiply bf16-rounded operands
    /// anyway: they then give the same numbers without rounding W on every call, but the weight stays
    /// rounded, for unpacking, saving and training too.
    bf16
};

/// A float matrix W [rows = n, cols = k] (row-major, as PyTorch stores a linear layer's weight) held
/// in `packed_layout` (over pairs of depths for `packed_form::bf16_pairs`; `tile_layout` for
/// `packed_form::bf16_tiles`), in a 64-byte aligned tensor so
/// that no vector load straddles cache lines. Made by `cpu_backend::pack_weight`; read by
/// `cpu_backend::gemm_packed`.
class packed_matrix {
public:
    packed_matrix() = default;

    /// Storage for W [rows, cols], every value zero, to hold W's values rounded as `rounding` says, in
    /// `form` (whose bfloat16 forms are rounded whatever `rounding` says).
    packed_matrix(std::size_t rows, std::size_t cols, weight_rounding rounding = weight_rounding::none,
                  packed_form form = packed_form::fp32_panels)
        : rows_(rows),
          cols_(cols),
          rounding_(form == packed_form::fp32_panels ? rounding : weight_rounding::bf16),
          form_(form),
          values_({words_of(rows, cols, form)})
    {
    }

    std::size_t rows() const noexcept { return rows_; }              ///< n: W's rows, the product's columns
    std::size_t cols() const noexcept { return cols_; }              ///< k: W's columns, the product's depth
    weight_rounding rounding() const noexcept { return rounding_; }  ///< how the values were rounded
    packed_form form() const noexcept { return form_; }              ///< how the values are laid out
    std::size_t size() const noexcept { return values_.size(); }     ///< 32-bit words held, padding included
    float* data() noexcept { return values_.data(); }
    const float* data() const noexcept { return values_.data(); }

    /// The same packed matrix held in `storage` when that has exactly `size()` values (what it held is
    /// overwritten), otherwise as it is. A weight whose rows fill whole panels is then packed into its
    /// own memory: packing a model allocates nothing that outlives it.
    packed_matrix stored_in(tensor<float>&& storage) &&
    {
        if (storage.size() == values_.size()) {
            std::copy_n(values_.data(), values_.size(), storage.data());
            storage.reshape({values_.size()});
            values_ = std::move(storage);
        }
        return std::move(*this);
    }

    /// Writes W [rows, cols] (row-major, contiguous) back out: exactly the values that were packed
    /// (rounded, where `rounding()` says so).
    void unpack(float* w) const noexcept
    {
        for (std::size_t j = 0; j < rows_; ++j)
            for (std::size_t p = 0; p < cols_; ++p) {
                if (form_ == packed_form::fp32_panels) {
                    w[j * cols_ + p] = values_[packed_layout::index(rows_, cols_, j, p)];
                } else {
                    const std::uint32_t word = std::bit_cast<std::uint32_t>(values_[word_index(j, p)]);
                    w[j * cols_ + p] = from_bfloat16_bits(static_cast<std::uint16_t>(p % 2 == 0 ? word : word >> 16));
                }
            }
    }

    /// Packs W [rows, cols] (row-major, leading dimension `ld`) value by value, rounded as `rounding`
    /// says, in `form`: the plain reference for the kernels' register-transpose packing.
    static packed_matrix pack(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                              weight_rounding rounding = weight_rounding::none, packed_form form = packed_form::fp32_panels)
    {
        packed_matrix packed(rows, cols, rounding, form);
        for (std::size_t j = 0; j < rows; ++j)
            for (std::size_t p = 0; p < cols; ++p) {
                const float v = w[j * ld + p];
                if (form == packed_form::fp32_panels) {
                    packed.values_[packed_layout::index(rows, cols, j, p)] =
                        rounding == weight_rounding::bf16 ? round_to_bfloat16(v) : v;
                } else {
                    float& slot = packed.values_[packed.word_index(j, p)];
                    const std::uint32_t half = std::uint32_t(to_bfloat16_bits(v)) << (p % 2 == 0 ? 0 : 16);
                    slot = std::bit_cast<float>(std::bit_cast<std::uint32_t>(slot) | half);
                }
            }
        return packed;
    }

private:
    /// 32-bit words a packed W [rows, cols] takes in `form`, padding included.
    static std::size_t words_of(std::size_t rows, std::size_t cols, packed_form form) noexcept
    {
        switch (form) {
        case packed_form::bf16_pairs: return packed_layout::padded_columns(rows) * depth_pairs(cols);
        case packed_form::bf16_tiles: return tile_layout::size(rows, cols);
        default: return packed_layout::padded_columns(rows) * cols;
        }
    }

    /// In a bfloat16 form, the word holding (row j, column p) of W, which holds it in its low half
    /// when p is even.
    std::size_t word_index(std::size_t j, std::size_t p) const noexcept
    {
        return form_ == packed_form::bf16_pairs ? packed_layout::index(rows_, depth_pairs(cols_), j, p / 2)
                                                : tile_layout::index(cols_, j, p);
    }

    std::size_t rows_ = 0, cols_ = 0;
    weight_rounding rounding_ = weight_rounding::none;
    packed_form form_ = packed_form::fp32_panels;
    tensor<float> values_;  ///< flat: `words_of(rows, cols, form)` words
};

}  // namespace dm2s2
