#pragma once
/// \file
/// Packing a batch of records into the encoder layout of docs/design.md §3:
/// `[CLS] x(m1)… [SEP] x(m2)… [SEP] …` over the present modalities in schema order, padded to the
/// longest sample, with token-type ids, position ids, a key-padding mask and per-modality spans.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include "dm2s2/core/batch_layout.hpp"
#include "dm2s2/data/schema.hpp"
#include "dm2s2/data/sequence_set_concept.hpp"

namespace dm2s2 {

/// How position ids are assigned.
enum class position_mode {
    global,       ///< 0..L-1 over the whole packed sequence (BERT's convention)
    per_modality  ///< [CLS] 0; element j (1-based) of a modality j; its [SEP] n_m + 1
};

/// Where a packed slot's element vector comes from.
enum class element_source : std::uint8_t { padding, special, token, dense, categorical, numeric };

/// Slots [begin, begin + length) of one modality inside its sample's packed row; length 0 = missing.
struct modality_span {
    std::size_t begin = 0;
    std::size_t length = 0;
};

/// Settings of the packer that come from the encoder.
struct packing_options {
    position_mode positions = position_mode::global;
    std::size_t vocab_size = 30522;
    std::size_t max_positions = 512;
    std::int64_t cls_id = 101;
    std::int64_t sep_id = 102;
    std::int64_t pad_id = 0;
};

/// A packed batch. Per-slot arrays are [batch · length] row-major.
struct packed_batch {
    batch_layout layout;
    std::size_t modality_count = 0;
    std::int64_t pad_id = 0;             ///< the word id of padding slots
    std::vector<std::size_t> lengths;    ///< [batch] packed length of each sample
    std::vector<std::uint8_t> mask;      ///< 1 for real slots, 0 for padding
    std::vector<std::int64_t> type_ids;  ///< token type: [CLS] 0, modality m and its [SEP] m
    std::vector<std::int64_t> position_ids;
    std::vector<element_source> sources;
    std::vector<std::int32_t> modality;                 ///< modality of an element slot, -1 otherwise
    std::vector<std::int64_t> ids;                      ///< word id (special, token, padding) or category id
    std::vector<double> numbers;                        ///< standardised value of numeric slots
    std::vector<std::vector<float>> dense_rows;         ///< per modality: its dense rows in slot order
    std::vector<std::vector<std::size_t>> dense_slots;  ///< per modality: the slot of each dense row
    std::vector<modality_span> spans;                   ///< [batch · modality_count]

    const modality_span& span(std::size_t b, std::size_t m) const { return spans[b * modality_count + m]; }
    std::size_t slot(std::size_t b, std::size_t position) const { return b * layout.length + position; }

    /// Sizes every per-slot array for `layout` with padding values, and the per-modality lists empty.
    void clear_slots()
    {
        const std::size_t slots = layout.rows();
        mask.assign(slots, 0);
        type_ids.assign(slots, 0);
        position_ids.assign(slots, 0);
        sources.assign(slots, element_source::padding);
        modality.assign(slots, -1);
        ids.assign(slots, pad_id);
        numbers.assign(slots, 0.0);
        dense_rows.assign(modality_count, {});
        dense_slots.assign(modality_count, {});
        spans.assign(layout.batch * modality_count, {});
    }
};

/// The packed length of `sample` for `s`: [CLS], then each present modality (truncated to its
/// max_length) and its [SEP]. Used to bucket records of similar length into one batch.
template <sequence_set_like Sample>
std::size_t packed_length(const schema& s, const Sample& sample)
{
    std::size_t total = 1;
    for (std::size_t m = 0; m < s.size() && m < sample.modality_count(); ++m)
        if (const std::size_t n = std::min(sample.length(m), s[m].max_length); n > 0) total += n + 1;
    return total;
}

/// Packs `samples` for `s`. Throws input_error naming the sample and modality for a sample with no
/// present modality, an id outside the vocabulary or category table, a non-finite value, or a
/// packed sequence whose positions exceed `options.max_positions`; shape_error for a sample whose
/// modality count or dense size disagrees with the schema.
template <std::ranges::forward_range Range>
    requires sequence_set_like<std::ranges::range_value_t<Range>>
packed_batch pack(const schema& s, Range&& samples, const packing_options& options)
{
    const std::size_t modalities = s.size();
    std::vector<std::vector<std::size_t>> lengths;  // truncated length per sample and modality
    for (const auto& sample : samples) {
        const std::size_t b = lengths.size();
        const std::string where = "sample " + std::to_string(b) + ": ";
        if (sample.modality_count() != modalities)
            throw shape_error(where + "has " + std::to_string(sample.modality_count()) + " modalities, the schema " +
                              std::to_string(modalities));
        auto& len = lengths.emplace_back(modalities);
        std::size_t total = 1, longest = 0;
        for (std::size_t m = 0; m < modalities; ++m) {
            const auto& spec = s[m];
            const std::string at = where + "modality '" + spec.name + "': ";
            const std::size_t n = sample.length(m);
            if (spec.kind == modality_kind::dense && sample.dense(m).size() != n * spec.dim)
                throw shape_error(at + std::to_string(sample.dense(m).size()) + " values for " + std::to_string(n) +
                                  " rows of dim " + std::to_string(spec.dim));
            len[m] = std::min(n, spec.max_length);
            const std::size_t limit = uses_vocabulary(spec.kind) ? options.vocab_size : spec.categories;
            if (uses_vocabulary(spec.kind) || spec.kind == modality_kind::categorical) {
                const auto ids = sample.ids(m);
                if (ids.size() < len[m]) throw shape_error(at + "fewer ids than its length");
                for (std::size_t i = 0; i < len[m]; ++i)
                    if (ids[i] < 0 || static_cast<std::uint64_t>(ids[i]) >= limit)
                        throw input_error(at + "id " + std::to_string(ids[i]) + " at element " + std::to_string(i) +
                                          " is outside [0, " + std::to_string(limit) + ")");
            } else if (spec.kind == modality_kind::numeric) {
                const auto values = sample.numbers(m);
                if (values.size() < len[m]) throw shape_error(at + "fewer numbers than its length");
                for (std::size_t i = 0; i < len[m]; ++i)
                    if (!std::isfinite(values[i])) throw input_error(at + "value " + std::to_string(i) + " is not finite");
            } else {
                const auto values = sample.dense(m);
                for (std::size_t i = 0; i < len[m] * spec.dim; ++i)
                    if (!std::isfinite(values[i]))
                        throw input_error(at + "row " + std::to_string(i / spec.dim) + " is not finite");
            }
            if (len[m] > 0) total += len[m] + 1;
            longest = std::max(longest, len[m]);
        }
        if (total == 1) throw input_error(where + "has no present modality");
        const std::size_t max_position = options.positions == position_mode::global ? total - 1 : longest + 1;
        if (max_position >= options.max_positions)
            throw input_error(where + "packs to " + std::to_string(total) + " slots; position id " +
                              std::to_string(max_position) + " exceeds max_position_embeddings " +
                              std::to_string(options.max_positions));
    }
    if (lengths.empty()) throw input_error("pack: the batch is empty");

    packed_batch out;
    out.modality_count = modalities;
    out.pad_id = options.pad_id;
    out.layout.batch = lengths.size();
    for (const auto& len : lengths) {
        std::size_t total = 1;
        for (auto n : len) total += n ? n + 1 : 0;
        out.lengths.push_back(total);
        out.layout.length = std::max(out.layout.length, total);
    }
    out.clear_slots();

    std::size_t b = 0;
    for (const auto& sample : samples) {
        const auto& len = lengths[b];
        std::size_t p = 0;  // position within the sample
        const auto place = [&](element_source source, std::int64_t id, std::int64_t type, std::int64_t position, std::int32_t m) {
            const std::size_t slot = out.slot(b, p++);
            out.mask[slot] = 1;
            out.sources[slot] = source;
            out.ids[slot] = id;
            out.type_ids[slot] = type;
            out.position_ids[slot] =
                options.positions == position_mode::global ? static_cast<std::int64_t>(slot - out.slot(b, 0)) : position;
            out.modality[slot] = m;
            return slot;
        };
        place(element_source::special, options.cls_id, 0, 0, -1);
        for (std::size_t m = 0; m < modalities; ++m) {
            if (len[m] == 0) continue;
            const auto& spec = s[m];
            const auto type = static_cast<std::int64_t>(m);
            out.spans[b * modalities + m] = {p, len[m]};
            for (std::size_t i = 0; i < len[m]; ++i) {
                const auto position = static_cast<std::int64_t>(i + 1);
                const auto mi = static_cast<std::int32_t>(m);
                switch (spec.kind) {
                case modality_kind::text:
                case modality_kind::tokens: place(element_source::token, sample.ids(m)[i], type, position, mi); break;
                case modality_kind::categorical: place(element_source::categorical, sample.ids(m)[i], type, position, mi); break;
                case modality_kind::numeric:
                    out.numbers[place(element_source::numeric, 0, type, position, mi)] =
                        (sample.numbers(m)[i] - spec.mean) / spec.stddev;
                    break;
                case modality_kind::dense: {
                    out.dense_slots[m].push_back(place(element_source::dense, 0, type, position, mi));
                    const auto row = sample.dense(m).subspan(i * spec.dim, spec.dim);
                    out.dense_rows[m].insert(out.dense_rows[m].end(), row.begin(), row.end());
                    break;
                }
                }
            }
            place(element_source::special, options.sep_id, type, static_cast<std::int64_t>(len[m] + 1), -1);
        }
        ++b;
    }
    return out;
}

/// One sequence per present (sample, modality) of `batch`, each laid out alone as `[CLS] x_m [SEP]`
/// (the mid-fusion baseline of docs/design.md §6). Type ids stay m; positions are 0..n_m+1, which both
/// position modes give for a lone modality. `origin[r]` is the (sample, modality) of row r.
struct modality_split {
    packed_batch batch;
    std::vector<std::pair<std::size_t, std::size_t>> origin;
};

/// Splits a packed batch by modality (see `modality_split`).
inline modality_split split_by_modality(const packed_batch& batch)
{
    const std::size_t modalities = batch.modality_count;
    modality_split out;
    auto& split = out.batch;
    split.modality_count = modalities;
    split.pad_id = batch.pad_id;
    for (std::size_t b = 0; b < batch.layout.batch; ++b)
        for (std::size_t m = 0; m < modalities; ++m)
            if (const std::size_t n = batch.span(b, m).length; n > 0) {
                out.origin.emplace_back(b, m);
                split.lengths.push_back(n + 2);
                split.layout.length = std::max(split.layout.length, n + 2);
            }
    split.layout.batch = out.origin.size();
    split.clear_slots();
    split.dense_rows = batch.dense_rows;  // same order: sample-major, as in the packed batch
    for (std::size_t r = 0; r < out.origin.size(); ++r) {
        const std::size_t b = out.origin[r].first, m = out.origin[r].second;  // plain names: the lambda below captures them
        const auto& span = batch.span(b, m);
        split.spans[r * modalities + m] = {1, span.length};
        // [CLS] and the elements with their [SEP] are copied from the packed row, then renumbered.
        const auto copy = [&](std::size_t from_slot, std::size_t position) {
            const std::size_t to = split.slot(r, position);
            split.mask[to] = 1;
            split.type_ids[to] = batch.type_ids[from_slot];
            split.position_ids[to] = static_cast<std::int64_t>(position);
            split.sources[to] = batch.sources[from_slot];
            split.modality[to] = batch.modality[from_slot];
            split.ids[to] = batch.ids[from_slot];
            split.numbers[to] = batch.numbers[from_slot];
            if (batch.sources[from_slot] == element_source::dense) split.dense_slots[m].push_back(to);
        };
        copy(batch.slot(b, 0), 0);
        for (std::size_t i = 0; i <= span.length; ++i) copy(batch.slot(b, span.begin + i), i + 1);
    }
    return out;
}

/// The real slots of a packed batch laid out without padding, so that the encoder computes nothing for
/// padding: compact row r is padded slot `slots[r]`, and `layout` is the ragged layout of the rows.
struct row_compaction {
    batch_layout layout;
    std::vector<std::size_t> slots;

    row_compaction() = default;

    /// Sample b keeps its first `batch.lengths[b]` slots, which are exactly its real ones.
    explicit row_compaction(const packed_batch& batch) : layout(batch_layout::from_lengths(batch.lengths))
    {
        slots.reserve(layout.rows());
        for (std::size_t b = 0; b < batch.layout.batch; ++b)
            for (std::size_t p = 0; p < batch.lengths[b]; ++p) slots.push_back(batch.slot(b, p));
    }

    bool empty() const noexcept { return slots.empty(); }

    /// Copies the real rows of padded per-slot rows of `width` values each into `compact`.
    template <class T>
    void gather(const T* padded, std::size_t width, T* compact) const
    {
        for (std::size_t r = 0; r < slots.size(); ++r) std::copy_n(padded + slots[r] * width, width, compact + r * width);
    }

    /// The real entries of a per-slot array.
    template <class T>
    std::vector<T> gather(const std::vector<T>& padded) const
    {
        std::vector<T> compact(slots.size());
        gather(padded.data(), 1, compact.data());
        return compact;
    }

    /// Writes compact rows back to their slots; padding rows become zero. `padded` holds
    /// `padded_rows` rows of `width` values.
    template <class T>
    void scatter(const T* compact, std::size_t width, T* padded, std::size_t padded_rows) const
    {
        std::fill_n(padded, padded_rows * width, T(0));
        for (std::size_t r = 0; r < slots.size(); ++r) std::copy_n(compact + r * width, width, padded + slots[r] * width);
    }
};

}  // namespace dm2s2
