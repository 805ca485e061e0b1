#pragma once
/// \file
/// Batched inference over a whole record set and evaluation of a model on a `dataset`.

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/train/dataset.hpp"
#include "dm2s2/train/metrics.hpp"

namespace dm2s2 {

/// Logits [records, outputs] of `m` (inference mode) for `records`, `batch_size` records at a time.
template <scalar T, class Backend>
tensor<T> predict_logits(const model<T, Backend>& m, std::span<const sequence_set> records, std::size_t batch_size = 64)
{
    if (batch_size == 0) throw config_error("predict_logits: batch_size must be positive");
    const std::size_t outputs = m.config().num_outputs;
    tensor<T> logits({records.size(), outputs});
    for (std::size_t first = 0; first < records.size(); first += batch_size) {
        const auto part = records.subspan(first, std::min(batch_size, records.size() - first));
        const auto out = m.forward(part);
        std::copy_n(out.logits.data(), out.logits.size(), logits.row(first));
    }
    return logits;
}

/// What `evaluate` measured: the mean loss and the task's metrics (see `evaluate_metrics`).
struct evaluation {
    double loss = 0;
    std::map<std::string, double> metrics;
};

/// Loss and metrics of `m` on `data`.
template <scalar T, class Backend>
evaluation evaluate(const model<T, Backend>& m, const dataset<T>& data, task_type task, std::size_t batch_size = 64)
{
    const auto logits = predict_logits(m, std::span<const sequence_set>(data.records), batch_size);
    return {compute_loss(task, logits, data.targets).value, evaluate_metrics(task, logits, data.targets)};
}

}  // namespace dm2s2
