#pragma once
/// \file
/// `dataset`: records with their targets, and the batch plan of a training epoch (seeded shuffling,
/// batches bucketed by packed length).

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "dm2s2/core/random.hpp"
#include "dm2s2/data/encoded_records.hpp"
#include "dm2s2/data/packing.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/train/losses.hpp"

namespace dm2s2 {

/// Records and their targets: `records` encoded column-wise (a `std::vector<sequence_set>` converts);
/// `targets` is [records] of class indices (multiclass) or [records, outputs] (binary, multilabel,
/// regression), as `compute_loss` reads them.
template <scalar T>
struct dataset {
    encoded_records records;
    tensor<T> targets;

    std::size_t size() const noexcept { return records.size(); }

    /// Throws unless the targets have one entry (row) per record and fit `task` with `outputs` logits;
    /// errors name `name` and the record.
    void check(task_type task, std::size_t outputs, const std::string& name) const
    {
        if (records.empty()) throw input_error(name + ": no records");
        const std::size_t rows = targets.rank() == 0 ? 0 : targets.dim(0);
        if (rows != records.size())
            throw shape_error(name + ": " + std::to_string(rows) + " targets for " + std::to_string(records.size()) + " records");
        try {
            check_targets(task, tensor<T>({records.size(), outputs}), targets);
        } catch (const error& e) {
            throw input_error(name + ": " + e.what());
        }
    }

    /// A 64-bit digest of the records (every modality's ids, dense values and numbers) and the targets,
    /// as 16 hexadecimal digits: a training checkpoint records it, so that a run is resumed on the data
    /// it started with.
    std::string fingerprint() const
    {
        std::uint64_t h = 0x6a09e667f3bcc908ULL;
        const auto mix = [&h](std::uint64_t word) {
            h ^= word + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
            h = (h ^ (h >> 31)) * 0xbf58476d1ce4e5b9ULL;
        };
        mix(records.size());
        for (const auto& r : records)
            for (std::size_t m = 0; m < r.modality_count(); ++m) {
                mix(r.length(m));
                for (const auto id : r.ids(m)) mix(static_cast<std::uint64_t>(id));
                for (const float v : r.dense(m)) mix(std::bit_cast<std::uint32_t>(v));
                for (const double v : r.numbers(m)) mix(std::bit_cast<std::uint64_t>(v));
            }
        for (const T v : targets.values()) mix(std::bit_cast<std::uint64_t>(static_cast<double>(v)));
        char text[17];
        std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
        return text;
    }

    /// Views of the records at `indices`, in that order (valid while `records` is unchanged).
    std::vector<record_view> select_records(std::span<const std::size_t> indices) const
    {
        std::vector<record_view> out;
        out.reserve(indices.size());
        for (const auto i : indices) out.push_back(records.at(i));
        return out;
    }

    /// The targets of the records at `indices`, in that order.
    tensor<T> select_targets(std::span<const std::size_t> indices) const
    {
        shape_t shape = targets.shape();
        shape[0] = indices.size();
        tensor<T> out(shape);
        const std::size_t width = targets.size() / targets.dim(0);
        for (std::size_t k = 0; k < indices.size(); ++k)
            std::copy_n(targets.data() + indices[k] * width, width, out.data() + k * width);
        return out;
    }
};

/// The batches of one epoch, as record indices. The records are shuffled with `rng`; with
/// `bucket_batches` > 1, each run of `bucket_batches · batch_size` shuffled records is sorted by packed
/// length and cut into batches (little padding), and the order of all batches is shuffled again.
inline std::vector<std::vector<std::size_t>> epoch_batches(std::span<const std::size_t> lengths, std::size_t batch_size,
                                                           std::size_t bucket_batches, random_generator& rng)
{
    if (batch_size == 0) throw config_error("epoch_batches: batch_size must be positive");
    const auto shuffle = [&](auto& v) {
        for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
    };
    std::vector<std::size_t> order(lengths.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    shuffle(order);
    std::vector<std::vector<std::size_t>> batches;
    const std::size_t bucket = batch_size * std::max<std::size_t>(1, bucket_batches);
    const auto at = [&](std::size_t i) { return order.begin() + static_cast<std::ptrdiff_t>(i); };
    for (std::size_t first = 0; first < order.size(); first += bucket) {
        const std::size_t last = std::min(order.size(), first + bucket);
        if (bucket_batches > 1)
            std::stable_sort(at(first), at(last), [&](std::size_t a, std::size_t b) { return lengths[a] < lengths[b]; });
        for (std::size_t b = first; b < last; b += batch_size) batches.emplace_back(at(b), at(std::min(last, b + batch_size)));
    }
    if (bucket_batches > 1) shuffle(batches);
    return batches;
}

}  // namespace dm2s2
