#pragma once
/// \file
/// Attributions: how much each modality and each element of a record counts for one output of a
/// model, by four methods with one result shape.
///
/// - `attention`: the model's own weights, β per modality and γ = β·α per element (the poolings that
///   `explains`). They are what the model computed, not necessarily what it relied on.
/// - `occlusion`: the drop of the explained score when a modality is made missing, or one element
///   removed (the record re-packed without it). Every pooling.
/// - `gradient`: gradient × input on the element vectors (Σ_d e_d ∂score/∂e_d). Every pooling.
/// - `integrated_gradients`: the same product with the gradient averaged along the straight path from
///   zero element vectors to the record's (midpoint rule); its sum over a record approaches
///   score(x) − score(zero elements). Every pooling.
///
/// The explained score is the log-probability of the explained output: log softmax for multiclass,
/// log σ(±z) for binary (the predicted class) and multilabel (the label, as present), the output
/// itself for regression. Larger attributions mean more evidence for the explained output. A record
/// left with no element at all is scored as the uninformed prediction (every class equally likely;
/// 0 for regression).
///
/// Batching: occlusion packs the variants of many records into each forward pass; the gradient
/// methods take one forward and backward pass per batch of records (per path point for integrated
/// gradients), never one per element.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dm2s2/data/sequence_set_concept.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/train/losses.hpp"

namespace dm2s2 {

/// How an attribution is computed (see the file comment).
enum class attribution_method { attention, occlusion, gradient, integrated_gradients };

/// Every method, attention first.
inline constexpr attribution_method all_attribution_methods[] = {attribution_method::attention, attribution_method::occlusion,
                                                                 attribution_method::gradient,
                                                                 attribution_method::integrated_gradients};

/// The method's name on the command line and in files: "attention", "occlusion", "gradient",
/// "integrated-gradients".
constexpr std::string_view to_string(attribution_method m) noexcept
{
    switch (m) {
    case attribution_method::attention: return "attention";
    case attribution_method::occlusion: return "occlusion";
    case attribution_method::gradient: return "gradient";
    case attribution_method::integrated_gradients: return "integrated-gradients";
    }
    return "?";
}

/// Parses a method name written by `to_string`.
inline std::optional<attribution_method> parse_attribution_method(std::string_view s) noexcept
{
    for (auto m : all_attribution_methods)
        if (to_string(m) == s) return m;
    return std::nullopt;
}

/// True when `method` can explain a model with `pooling` (attention needs the weights of `explains`).
constexpr bool supports(attribution_method method, pooling_kind pooling) noexcept
{
    return method != attribution_method::attention || explains(pooling);
}

// --- The explained score ---------------------------------------------------------------------------

/// The output a record's explanation is about when none is given: the predicted class (multiclass),
/// 1 or 0 as the logit is ≥ 0 or not (binary), the label with the largest logit (multilabel), 0
/// (regression).
template <scalar T>
std::size_t predicted_output(task_type task, const T* logits, std::size_t outputs)
{
    switch (task) {
    case task_type::binary: return logits[0] >= 0 ? 1 : 0;
    case task_type::regression: return 0;
    default: return static_cast<std::size_t>(std::max_element(logits, logits + outputs) - logits);
    }
}

namespace detail {
/// log σ(z), stable for large |z|.
inline double log_sigmoid(double z)
{
    return z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z));
}
inline double sigmoid(double z)
{
    return z >= 0 ? 1 / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z));
}
}  // namespace detail

/// The explained score of one record (see the file comment) for output `target`.
template <scalar T>
double explained_score(task_type task, const T* logits, std::size_t outputs, std::size_t target)
{
    switch (task) {
    case task_type::multiclass: {
        const double max = *std::max_element(logits, logits + outputs);
        double sum = 0;
        for (std::size_t k = 0; k < outputs; ++k) sum += std::exp(double(logits[k]) - max);
        return double(logits[target]) - max - std::log(sum);
    }
    case task_type::binary: return detail::log_sigmoid(target == 1 ? double(logits[0]) : -double(logits[0]));
    case task_type::multilabel: return detail::log_sigmoid(double(logits[target]));
    case task_type::regression: return double(logits[0]);
    }
    return 0;
}

/// d(explained_score)/d(logits), written to `d` [outputs].
template <scalar T>
void explained_score_gradient(task_type task, const T* logits, std::size_t outputs, std::size_t target, T* d)
{
    std::fill_n(d, outputs, T(0));
    switch (task) {
    case task_type::multiclass: {
        const double max = *std::max_element(logits, logits + outputs);
        double sum = 0;
        for (std::size_t k = 0; k < outputs; ++k) sum += std::exp(double(logits[k]) - max);
        for (std::size_t k = 0; k < outputs; ++k) d[k] = static_cast<T>(-std::exp(double(logits[k]) - max) / sum);
        d[target] += T(1);
        break;
    }
    case task_type::binary: {
        const double p = detail::sigmoid(double(logits[0]));
        d[0] = static_cast<T>(target == 1 ? 1 - p : -p);
        break;
    }
    case task_type::multilabel: d[target] = static_cast<T>(1 - detail::sigmoid(double(logits[target]))); break;
    case task_type::regression: d[0] = T(1); break;
    }
}

/// The score of a record with nothing left in it: the log-probability of a uniform guess
/// (log 1/C for multiclass, log 1/2 otherwise) and 0 for regression.
inline double uninformed_score(task_type task, std::size_t outputs)
{
    switch (task) {
    case task_type::multiclass: return -std::log(static_cast<double>(outputs));
    case task_type::regression: return 0;
    default: return -std::log(2.0);
    }
}

/// The explained score as a probability (`exp(score)`), or the output itself for regression: the
/// scale on which faithfulness is measured.
inline double score_probability(task_type task, double score)
{
    return task == task_type::regression ? score : std::exp(score);
}

// --- Records with elements removed ---------------------------------------------------------------

/// A record with some of its elements removed. It holds copies of the kept elements (of those the
/// schema's `max_length` lets through, so removing one never brings in a truncated one) and models
/// `sequence_set_like`. A modality with no kept element is missing.
class record_subset {
public:
    /// The elements of `record` for which `keep(m, i)` is true.
    template <sequence_set_like Record, class Keep>
    record_subset(const schema& s, const Record& record, Keep&& keep) : modalities_(s.size())
    {
        for (std::size_t m = 0; m < s.size(); ++m) {
            auto& out = modalities_[m];
            const std::size_t n = std::min(record.length(m), s[m].max_length);
            for (std::size_t i = 0; i < n; ++i) {
                if (!keep(m, i)) continue;
                ++out.length;
                switch (s[m].kind) {
                case modality_kind::text:
                case modality_kind::tokens:
                case modality_kind::categorical: out.ids.push_back(record.ids(m)[i]); break;
                case modality_kind::numeric: out.numbers.push_back(record.numbers(m)[i]); break;
                case modality_kind::dense: {
                    const auto row = record.dense(m).subspan(i * s[m].dim, s[m].dim);
                    out.dense.insert(out.dense.end(), row.begin(), row.end());
                    break;
                }
                }
            }
            total_ += out.length;
        }
    }

    std::size_t modality_count() const noexcept { return modalities_.size(); }
    std::size_t length(std::size_t m) const { return modalities_[m].length; }
    std::span<const std::int64_t> ids(std::size_t m) const { return modalities_[m].ids; }
    std::span<const float> dense(std::size_t m) const { return modalities_[m].dense; }
    std::span<const double> numbers(std::size_t m) const { return modalities_[m].numbers; }
    /// Elements kept over all modalities; a record with none cannot be packed.
    std::size_t total_length() const noexcept { return total_; }

private:
    struct modality {
        std::size_t length = 0;
        std::vector<std::int64_t> ids;
        std::vector<float> dense;
        std::vector<double> numbers;
    };
    std::vector<modality> modalities_;
    std::size_t total_ = 0;
};

namespace detail {
/// A `record_subset` by reference, so that a batch of variants packs without copying them.
struct subset_ref {
    const record_subset* subset;
    std::size_t modality_count() const noexcept { return subset->modality_count(); }
    std::size_t length(std::size_t m) const { return subset->length(m); }
    std::span<const std::int64_t> ids(std::size_t m) const { return subset->ids(m); }
    std::span<const float> dense(std::size_t m) const { return subset->dense(m); }
    std::span<const double> numbers(std::size_t m) const { return subset->numbers(m); }
};
}  // namespace detail

/// The explained scores of `variants` for `targets[i]`, in forward passes of up to `batch_size`
/// records; a variant with no element gets the uninformed score.
template <scalar T, class Backend>
std::vector<double> explained_scores(const model<T, Backend>& m, task_type task, std::span<const record_subset> variants,
                                     std::span<const std::size_t> targets, std::size_t batch_size)
{
    std::vector<double> scores(variants.size(), uninformed_score(task, m.config().num_outputs));
    std::vector<std::size_t> packable;
    for (std::size_t v = 0; v < variants.size(); ++v)
        if (variants[v].total_length() > 0) packable.push_back(v);
    const std::size_t outputs = m.config().num_outputs;
    for (std::size_t first = 0; first < packable.size(); first += batch_size) {
        const auto chunk = std::span(packable).subspan(first, std::min(batch_size, packable.size() - first));
        std::vector<detail::subset_ref> records;
        for (const auto v : chunk) records.push_back({&variants[v]});
        const auto out = m.forward(records);
        for (std::size_t r = 0; r < chunk.size(); ++r)
            scores[chunk[r]] = explained_score(task, out.logits.row(r), outputs, targets[chunk[r]]);
    }
    return scores;
}

// --- Attributions --------------------------------------------------------------------------------

/// Attributions of a batch of records: one score per present modality and one per element
/// (elements after `max_length` truncation, in record order), for the explained output of each record.
template <scalar T>
struct attribution {
    attribution_method method = attribution_method::attention;
    std::size_t modality_count = 0;
    std::vector<std::size_t> targets;      ///< [records] the explained output
    std::vector<double> scores;            ///< [records] the explained score of the whole record
    std::vector<T> modalities;             ///< [records · modalities], 0 for a missing modality
    std::vector<std::vector<T>> elements;  ///< [records · modalities] one score per element

    std::size_t records() const noexcept { return targets.size(); }
    T modality_of(std::size_t b, std::size_t m) const { return modalities[b * modality_count + m]; }
    std::span<const T> elements_of(std::size_t b, std::size_t m) const { return elements[b * modality_count + m]; }
    std::span<T> elements_of(std::size_t b, std::size_t m) { return elements[b * modality_count + m]; }
};

/// Options of `attribute`.
struct attribution_options {
    task_type task = task_type::multiclass;  ///< fixes the explained score
    std::vector<std::size_t> targets = {};   ///< the output to explain per record; empty: the prediction
    std::size_t steps = 32;                  ///< integrated gradients: points on the path
    std::size_t batch_size = 64;             ///< records per forward (and backward) pass
};

namespace detail {

/// An attribution shaped for `records` (element vectors sized, scores zero).
template <scalar T, class Backend, class Records>
attribution<T> empty_attribution(const model<T, Backend>& m, const Records& records, attribution_method method)
{
    attribution<T> a;
    a.method = method;
    a.modality_count = m.schema().size();
    for (const auto& r : records)
        for (std::size_t k = 0; k < a.modality_count; ++k)
            a.elements.emplace_back(std::min(r.length(k), m.schema()[k].max_length), T(0));
    a.modalities.assign(a.elements.size(), T(0));
    return a;
}

/// The slot of every element of `batch` (record by record, modality by modality, in order) in the
/// batch the encoder ran on: `batch` itself, or its split by modality.
inline std::vector<std::size_t> element_slots(const packed_batch& batch, const modality_split* split)
{
    const std::size_t modalities = batch.modality_count;
    std::vector<std::size_t> split_row(batch.layout.batch * modalities, 0);
    if (split != nullptr)
        for (std::size_t r = 0; r < split->origin.size(); ++r)
            split_row[split->origin[r].first * modalities + split->origin[r].second] = r;
    std::vector<std::size_t> slots;
    for (std::size_t b = 0; b < batch.layout.batch; ++b)
        for (std::size_t k = 0; k < modalities; ++k)
            for (std::size_t i = 0; i < batch.span(b, k).length; ++i)
                slots.push_back(split ? split->batch.slot(split_row[b * modalities + k], 1 + i)
                                      : batch.slot(b, batch.span(b, k).begin + i));
    return slots;
}

}  // namespace detail

/// Attributions of `records` by `method` (see the file comment). Throws config_error when the
/// model's pooling has no attention weights and `method` is attention, input_error for a target out of
/// range, and what packing throws for bad records.
template <scalar T, class Backend, std::ranges::forward_range Records>
    requires sequence_set_like<std::ranges::range_value_t<Records>>
attribution<T> attribute(const model<T, Backend>& m, const Records& records, attribution_method method,
                         const attribution_options& options = {})
{
    const std::size_t outputs = m.config().num_outputs, modalities = m.schema().size();
    if (!supports(method, m.config().pooling))
        throw config_error("attribution: " + std::string(to_string(m.config().pooling)) +
                           " pooling has no attention weights; use occlusion, gradient or integrated-gradients");
    if (options.batch_size == 0) throw config_error("attribution: batch_size must be positive");
    if (method == attribution_method::integrated_gradients && options.steps == 0)
        throw config_error("attribution: integrated gradients needs at least one step");
    const auto all = std::vector(std::ranges::begin(records), std::ranges::end(records));
    auto a = detail::empty_attribution(m, all, method);
    const std::size_t count = all.size();
    if (!options.targets.empty() && options.targets.size() != count)
        throw shape_error("attribution: " + std::to_string(options.targets.size()) + " targets for " + std::to_string(count) +
                          " records");

    // The full records: logits, targets and scores (and, for attention, the weights).
    for (std::size_t first = 0; first < count; first += options.batch_size) {
        const std::size_t n = std::min(options.batch_size, count - first);
        const auto chunk = std::span(all).subspan(first, n);
        const bool weights = method == attribution_method::attention;
        const auto out = m.forward(chunk, weights);
        for (std::size_t b = 0; b < n; ++b) {
            const T* logits = out.logits.row(b);
            std::size_t target =
                options.targets.empty() ? predicted_output(options.task, logits, outputs) : options.targets[first + b];
            const std::size_t limit = options.task == task_type::binary ? 2 : outputs;
            if (target >= limit)
                throw input_error("attribution: record " + std::to_string(first + b) + ": target " + std::to_string(target) +
                                  " is outside [0, " + std::to_string(limit) + ")");
            a.targets.push_back(target);
            a.scores.push_back(explained_score(options.task, logits, outputs, target));
            if (!weights) continue;
            for (std::size_t k = 0; k < modalities; ++k) {
                if (chunk[b].length(k) == 0) continue;
                a.modalities[(first + b) * modalities + k] = out.explanation.beta_of(b, k);
                const auto gamma = out.explanation.gamma_of(b, k);
                std::copy(gamma.begin(), gamma.end(), a.elements_of(first + b, k).begin());
            }
        }
    }
    if (method == attribution_method::attention) return a;

    if (method == attribution_method::occlusion) {
        // Variants of every record: each present modality missing, then each element removed.
        std::vector<record_subset> variants;
        std::vector<std::size_t> targets;
        for (std::size_t b = 0; b < count; ++b)
            for (std::size_t k = 0; k < modalities; ++k) {
                const std::size_t n = a.elements_of(b, k).size();
                if (n == 0) continue;
                variants.emplace_back(m.schema(), all[b], [&](std::size_t mk, std::size_t) { return mk != k; });
                for (std::size_t i = 0; i < n; ++i)
                    variants.emplace_back(m.schema(), all[b], [&](std::size_t mk, std::size_t mi) { return mk != k || mi != i; });
                targets.insert(targets.end(), n + 1, a.targets[b]);
            }
        const auto scores = explained_scores(m, options.task, std::span<const record_subset>(variants),
                                             std::span<const std::size_t>(targets), options.batch_size);
        std::size_t v = 0;
        for (std::size_t b = 0; b < count; ++b)
            for (std::size_t k = 0; k < modalities; ++k) {
                auto e = a.elements_of(b, k);
                if (e.empty()) continue;
                a.modalities[b * modalities + k] = static_cast<T>(a.scores[b] - scores[v++]);
                for (auto& x : e) x = static_cast<T>(a.scores[b] - scores[v++]);
            }
        return a;
    }

    // Gradient × input, or integrated gradients: one forward and backward pass per batch and path point.
    if constexpr (host_training_backend_for<Backend, T>) {
        const std::size_t h = m.config().bert.hidden_size;
        const bool integrated = method == attribution_method::integrated_gradients;
        const std::size_t steps = integrated ? options.steps : 1;
        auto gradients = m.zero_gradients();
        for (std::size_t first = 0; first < count; first += options.batch_size) {
            const std::size_t n = std::min(options.batch_size, count - first);
            const packed_batch batch = m.pack(std::span(all).subspan(first, n));
            const auto split =
                m.config().pooling == pooling_kind::mid_fusion ? std::optional(split_by_modality(batch)) : std::nullopt;
            const packed_batch& encoded = split ? split->batch : batch;
            tensor<T> embeddings({encoded.layout.rows(), h});
            nn::embed_elements(m.encoder().backend(), encoded, m.encoder().embeddings(), m.pooling().modality_embeddings,
                               embeddings.data());
            const auto slots = detail::element_slots(batch, split ? &*split : nullptr);
            tensor<T> path_gradient({encoded.layout.rows(), h});
            path_gradient.fill(T(0));
            std::vector<T> scale(encoded.layout.rows(), T(1));
            tensor<T> d_logits({n, outputs}), d_elements;
            for (std::size_t s = 0; s < steps; ++s) {
                const T factor = integrated ? static_cast<T>((static_cast<double>(s) + 0.5) / static_cast<double>(steps)) : T(1);
                for (const auto slot : slots) scale[slot] = factor;
                model_cache<T> cache;
                const auto out = m.forward(batch, false, &cache, nullptr, std::span<const T>(scale));
                for (std::size_t b = 0; b < n; ++b)
                    explained_score_gradient(options.task, out.logits.row(b), outputs, a.targets[first + b], d_logits.row(b));
                m.backward(cache, d_logits, gradients, &d_elements);
                for (std::size_t i = 0; i < path_gradient.size(); ++i) path_gradient[i] += d_elements[i];
            }
            std::size_t e = 0;
            for (std::size_t b = 0; b < n; ++b)
                for (std::size_t k = 0; k < modalities; ++k) {
                    T total = 0;
                    for (auto& x : a.elements_of(first + b, k)) {
                        const T* g = path_gradient.row(slots[e]);
                        const T* v = embeddings.row(slots[e++]);
                        double dot = 0;
                        for (std::size_t j = 0; j < h; ++j) dot += double(g[j]) * double(v[j]);
                        x = static_cast<T>(dot / static_cast<double>(steps));
                        total += x;
                    }
                    a.modalities[(first + b) * modalities + k] = total;
                }
        }
        return a;
    } else {
        throw config_error("attribution: " + std::string(to_string(method)) + " needs a backend with backward kernels");
    }
}

}  // namespace dm2s2
