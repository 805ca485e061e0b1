#pragma once
/// \file
/// Evaluation metrics of docs/design.md §7, with scikit-learn's definitions: predictions at probability 0.5
/// (logit 0) for binary and multilabel tasks, argmax for multiclass; an F1 whose precision and recall
/// are both undefined counts as 0; macro-F1 of a multiclass task averages over the classes that occur
/// in the targets or the predictions.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "dm2s2/train/losses.hpp"

namespace dm2s2 {

namespace detail {

inline double f1(double tp, double fp, double fn)
{
    return tp == 0 ? 0.0 : 2 * tp / (2 * tp + fp + fn);
}

/// Area under the ROC curve as the Mann–Whitney statistic, ties counted half (average ranks).
inline double roc_auc(const std::vector<double>& scores, const std::vector<bool>& positive)
{
    std::vector<std::size_t> order(scores.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
    double positive_rank_sum = 0, positives = 0;
    for (std::size_t i = 0; i < order.size();) {
        std::size_t j = i;
        while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
        const double average_rank = (static_cast<double>(i) + static_cast<double>(j) + 1) / 2;  // 1-based ranks i+1..j
        for (std::size_t k = i; k < j; ++k)
            if (positive[order[k]]) positive_rank_sum += average_rank, ++positives;
        i = j;
    }
    const double negatives = static_cast<double>(scores.size()) - positives;
    return (positive_rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

}  // namespace detail

/// The task's metrics by name: multiclass `accuracy`, `macro_f1`; binary `accuracy`, `f1`, `roc_auc`
/// (absent when the targets hold one class only); multilabel `micro_f1`, `macro_f1`, `weighted_f1`,
/// `samples_f1`; regression `rmse`, `mae`. Targets are shaped and checked as `check_targets` says.
template <scalar T>
std::map<std::string, double> evaluate_metrics(task_type task, const tensor<T>& logits, const tensor<T>& targets)
{
    check_targets(task, logits, targets);
    const std::size_t batch = logits.dim(0), outputs = logits.dim(1);
    std::map<std::string, double> out;
    if (task == task_type::regression) {
        double squared = 0, absolute = 0;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            const double d = static_cast<double>(logits[i]) - targets[i];
            squared += d * d;
            absolute += std::abs(d);
        }
        out["rmse"] = std::sqrt(squared / static_cast<double>(logits.size()));
        out["mae"] = absolute / static_cast<double>(logits.size());
        return out;
    }
    if (task == task_type::multiclass) {
        std::vector<double> tp(outputs), fp(outputs), fn(outputs);
        std::set<std::size_t> seen;
        double correct = 0;
        for (std::size_t b = 0; b < batch; ++b) {
            const T* row = logits.row(b);
            const auto predicted = static_cast<std::size_t>(std::max_element(row, row + outputs) - row);
            const auto actual = static_cast<std::size_t>(targets[b]);
            seen.insert(predicted);
            seen.insert(actual);
            if (predicted == actual) {
                ++correct;
                ++tp[actual];
            } else {
                ++fp[predicted];
                ++fn[actual];
            }
        }
        double macro = 0;
        for (const auto c : seen) macro += detail::f1(tp[c], fp[c], fn[c]);
        out["accuracy"] = correct / static_cast<double>(batch);
        out["macro_f1"] = macro / static_cast<double>(seen.size());
        return out;
    }
    // Binary and multilabel: one 0/1 decision per output.
    std::vector<double> tp(outputs), fp(outputs), fn(outputs);
    double samples_f1 = 0, correct = 0;
    for (std::size_t b = 0; b < batch; ++b) {
        double stp = 0, sfp = 0, sfn = 0;
        for (std::size_t j = 0; j < outputs; ++j) {
            const bool predicted = logits(b, j) >= T(0), actual = targets(b, j) != T(0);
            stp += predicted && actual;
            sfp += predicted && !actual;
            sfn += !predicted && actual;
            tp[j] += predicted && actual;
            fp[j] += predicted && !actual;
            fn[j] += !predicted && actual;
            correct += predicted == actual;
        }
        samples_f1 += detail::f1(stp, sfp, sfn);
    }
    if (task == task_type::binary) {
        out["accuracy"] = correct / static_cast<double>(batch);
        out["f1"] = detail::f1(tp[0], fp[0], fn[0]);
        std::vector<double> scores(batch);
        std::vector<bool> positive(batch);
        for (std::size_t b = 0; b < batch; ++b) scores[b] = logits[b], positive[b] = targets[b] != T(0);
        const auto positives = std::count(positive.begin(), positive.end(), true);
        if (positives > 0 && static_cast<std::size_t>(positives) < batch) out["roc_auc"] = detail::roc_auc(scores, positive);
        return out;
    }
    double macro = 0, weighted = 0, support = 0;
    for (std::size_t j = 0; j < outputs; ++j) {
        const double f = detail::f1(tp[j], fp[j], fn[j]);
        macro += f;
        weighted += f * (tp[j] + fn[j]);
        support += tp[j] + fn[j];
    }
    const double all_tp = std::accumulate(tp.begin(), tp.end(), 0.0), all_fp = std::accumulate(fp.begin(), fp.end(), 0.0),
                 all_fn = std::accumulate(fn.begin(), fn.end(), 0.0);
    out["micro_f1"] = detail::f1(all_tp, all_fp, all_fn);
    out["macro_f1"] = macro / static_cast<double>(outputs);
    out["weighted_f1"] = support > 0 ? weighted / support : 0.0;
    out["samples_f1"] = samples_f1 / static_cast<double>(batch);
    return out;
}

}  // namespace dm2s2
