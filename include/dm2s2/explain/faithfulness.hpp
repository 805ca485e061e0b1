#pragma once
/// \file
/// Whether an attribution points at the evidence the model used, measured as ERASER does (DeYoung et
/// al., 2020): rank a record's elements by their attribution, then
/// - comprehensiveness at k: p(x) − p(x without its top k elements), large when the top elements
///   were needed;
/// - sufficiency at k: p(x) − p(only the top k elements), small when they suffice;
/// each averaged over k = 1 %, 5 %, 10 %, 20 % and 50 % of the record's elements (at least one; the
/// "area over the perturbation curve"), and at k = 1. p is the probability of the explained output
/// (`score_probability`). A random ranking gives the floor that a useful attribution beats. Where the
/// evidence is known (a planted cue), `points_at` says whether an attribution's top modality and its
/// top element within that modality are the cue.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "dm2s2/core/random.hpp"
#include "dm2s2/explain/attribution.hpp"

namespace dm2s2 {

/// Options of `evaluate_faithfulness`.
struct faithfulness_options {
    task_type task = task_type::multiclass;
    std::vector<double> fractions = {0.01, 0.05, 0.10, 0.20, 0.50};  ///< of a record's elements, k ≥ 1
    std::size_t batch_size = 64;
};

/// Mean comprehensiveness and sufficiency over the records (see the file comment).
struct faithfulness {
    double comprehensiveness = 0;       ///< averaged over the fractions
    double sufficiency = 0;             ///< averaged over the fractions
    double comprehensiveness_top1 = 0;  ///< k = 1
    double sufficiency_top1 = 0;        ///< k = 1
    std::size_t records = 0;
};

/// The elements of record b of `a` as (modality, index) pairs, by decreasing attribution (ties in
/// record order).
template <scalar T>
std::vector<std::pair<std::size_t, std::size_t>> ranked_elements(const attribution<T>& a, std::size_t b)
{
    std::vector<std::pair<std::size_t, std::size_t>> order;
    for (std::size_t k = 0; k < a.modality_count; ++k)
        for (std::size_t i = 0; i < a.elements_of(b, k).size(); ++i) order.emplace_back(k, i);
    std::stable_sort(order.begin(), order.end(), [&](const auto& x, const auto& y) {
        return a.elements_of(b, x.first)[x.second] > a.elements_of(b, y.first)[y.second];
    });
    return order;
}

/// ERASER comprehensiveness and sufficiency of attribution `a` of `records` on model `m` (the records
/// and targets `a` was computed for).
template <scalar T, class Backend, std::ranges::forward_range Records>
    requires sequence_set_like<std::ranges::range_value_t<Records>>
faithfulness evaluate_faithfulness(const model<T, Backend>& m, const Records& records, const attribution<T>& a,
                                   const faithfulness_options& options = {})
{
    const auto all = std::vector(std::ranges::begin(records), std::ranges::end(records));
    if (all.size() != a.records())
        throw shape_error("faithfulness: the attribution has " + std::to_string(a.records()) + " records, not " +
                          std::to_string(all.size()));
    if (options.fractions.empty()) throw config_error("faithfulness: no fraction given");
    // k values per record: k = 1 first, then one per fraction.
    std::vector<record_subset> variants;
    std::vector<std::size_t> targets;
    for (std::size_t b = 0; b < all.size(); ++b) {
        const auto order = ranked_elements(a, b);
        std::vector<std::vector<bool>> top(a.modality_count);
        for (std::size_t k = 0; k < a.modality_count; ++k) top[k].assign(a.elements_of(b, k).size(), false);
        std::vector<std::size_t> ks = {1};
        for (const double f : options.fractions)
            ks.push_back(std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(f * static_cast<double>(order.size())))));
        for (const std::size_t k : ks) {
            for (auto& t : top) std::fill(t.begin(), t.end(), false);
            for (std::size_t r = 0; r < std::min(k, order.size()); ++r) top[order[r].first][order[r].second] = true;
            variants.emplace_back(m.schema(), all[b], [&](std::size_t mk, std::size_t i) { return !top[mk][i]; });
            variants.emplace_back(m.schema(), all[b], [&](std::size_t mk, std::size_t i) { return bool(top[mk][i]); });
            targets.insert(targets.end(), 2, a.targets[b]);
        }
    }
    const auto scores = explained_scores(m, options.task, std::span<const record_subset>(variants),
                                         std::span<const std::size_t>(targets), options.batch_size);
    faithfulness f;
    f.records = all.size();
    if (all.empty()) return f;
    const std::size_t per_record = 2 * (1 + options.fractions.size());
    for (std::size_t b = 0; b < all.size(); ++b) {
        const double p = score_probability(options.task, a.scores[b]);
        const double* s = scores.data() + b * per_record;
        f.comprehensiveness_top1 += p - score_probability(options.task, s[0]);
        f.sufficiency_top1 += p - score_probability(options.task, s[1]);
        for (std::size_t j = 1; j <= options.fractions.size(); ++j) {
            f.comprehensiveness +=
                (p - score_probability(options.task, s[2 * j])) / static_cast<double>(options.fractions.size());
            f.sufficiency += (p - score_probability(options.task, s[2 * j + 1])) / static_cast<double>(options.fractions.size());
        }
    }
    const double n = static_cast<double>(all.size());
    f.comprehensiveness /= n;
    f.sufficiency /= n;
    f.comprehensiveness_top1 /= n;
    f.sufficiency_top1 /= n;
    return f;
}

/// The same records and targets as `a` with element scores drawn uniformly at random (seeded) and
/// modality scores their sums: the floor of the faithfulness metrics.
template <scalar T>
attribution<T> random_attribution(const attribution<T>& a, std::uint64_t seed)
{
    random_generator rng(seed);
    attribution<T> r = a;
    for (std::size_t b = 0; b < r.records(); ++b)
        for (std::size_t k = 0; k < r.modality_count; ++k) {
            T total = 0;
            for (auto& x : r.elements_of(b, k)) total += (x = static_cast<T>(rng.uniform()));
            r.modalities[b * r.modality_count + k] = total;
        }
    return r;
}

/// Whether attribution `a` of record b puts its largest modality score on `modality` and, within
/// it, its largest element score on `element`.
template <scalar T>
bool points_at(const attribution<T>& a, std::size_t b, std::size_t modality, std::size_t element)
{
    std::size_t top_modality = 0;
    bool any = false;
    for (std::size_t k = 0; k < a.modality_count; ++k) {
        if (a.elements_of(b, k).empty()) continue;
        if (!any || a.modality_of(b, k) > a.modality_of(b, top_modality)) top_modality = k;
        any = true;
    }
    if (!any || top_modality != modality) return false;
    const auto e = a.elements_of(b, modality);
    return element < e.size() && static_cast<std::size_t>(std::max_element(e.begin(), e.end()) - e.begin()) == element;
}

}  // namespace dm2s2
