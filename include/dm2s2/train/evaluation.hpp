#pragma once
/// \file
/// Batched inference over a whole record set and evaluation of a model on a `dataset`.

#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "dm2s2/distributed/communicator.hpp"
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

/// `evaluate` with the records shared among the ranks of `comm`: each rank predicts a contiguous share,
/// the logits are summed into place over the ranks, and every rank computes the same loss and metrics.
template <scalar T, class Backend, class Communicator>
    requires communicator_for<Communicator, T>
evaluation evaluate(const model<T, Backend>& m, const dataset<T>& data, task_type task, std::size_t batch_size,
                    const Communicator& comm)
{
    if (comm.size() == 1) return evaluate(m, data, task, batch_size);
    const std::size_t n = data.size(), first = comm.rank() * n / comm.size(), last = (comm.rank() + 1) * n / comm.size();
    tensor<T> logits({n, m.config().num_outputs});
    if (last > first) {
        const auto part = predict_logits(m, std::span<const sequence_set>(data.records).subspan(first, last - first), batch_size);
        std::copy_n(part.data(), part.size(), logits.row(first));
    }
    comm.all_reduce_sum(logits.data(), logits.size());
    return {compute_loss(task, logits, data.targets).value, evaluate_metrics(task, logits, data.targets)};
}

}  // namespace dm2s2
