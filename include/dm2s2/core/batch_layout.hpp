#pragma once
/// \file
/// `batch_layout`: where the sequences of a batch lie among the rows the encoder runs on; `row_group`:
/// a run of rows pooled together.

#include <algorithm>
#include <cstddef>
#include <vector>

namespace dm2s2 {

/// Where a batch lies in a larger batch it is a share of (a data-parallel rank's part of a global
/// batch): the sequences, the rows and the Σ length² of the shares before it. Dropout numbers its
/// elements from there, so that the shares together draw what one pass over the whole batch would.
struct batch_offset {
    std::size_t samples = 0;
    std::size_t rows = 0;
    std::size_t squares = 0;  ///< Σ len² of the sequences before: the attention map elements per head
};

/// Where the sequences of a batch lie among its rows. Padded: `batch` sequences of `length` rows each,
/// flattened to [batch·length], padding marked by a key mask. Ragged (padding-free): sequence b holds
/// rows [starts[b], starts[b+1]) and every row is real.
struct batch_layout {
    std::size_t batch = 0;
    std::size_t length = 0;             ///< padded: every sequence's length; ragged: the longest
    std::vector<std::size_t> starts{};  ///< ragged: batch + 1 row offsets; empty when padded
    batch_offset offset{};              ///< where it lies in the batch it is a share of

    bool ragged() const noexcept { return !starts.empty(); }
    std::size_t rows() const { return ragged() ? starts.back() : batch * length; }
    std::size_t first_row(std::size_t b) const { return ragged() ? starts[b] : b * length; }
    std::size_t length_of(std::size_t b) const { return ragged() ? starts[b + 1] - starts[b] : length; }

    /// Offset of sequence b's [heads, len, len] attention maps when every sequence's maps are stored
    /// one after another; `attention_offset(batch, heads)` is the size of the whole buffer.
    std::size_t attention_offset(std::size_t b, std::size_t heads) const
    {
        if (!ragged()) return b * heads * length * length;
        std::size_t offset = 0;
        for (std::size_t i = 0; i < b; ++i) offset += heads * length_of(i) * length_of(i);
        return offset;
    }

    /// A ragged layout from per-sequence lengths.
    static batch_layout from_lengths(const std::vector<std::size_t>& lengths)
    {
        batch_layout layout{.batch = lengths.size(), .length = 0, .starts = {0}};
        for (const auto len : lengths) {
            layout.starts.push_back(layout.starts.back() + len);
            layout.length = std::max(layout.length, len);
        }
        return layout;
    }
};

/// Consecutive rows [begin, begin + length) pooled together (the elements of a modality, the
/// modalities of a record).
struct row_group {
    std::size_t begin = 0;
    std::size_t length = 0;
};

namespace nn {
using dm2s2::batch_layout;  // the modules' names for them
using dm2s2::row_group;
}  // namespace nn

}  // namespace dm2s2
