#pragma once
/// \file
/// Batched inference over a whole record set and evaluation of a model on a `dataset`.

#include <algorithm>
#include <cstddef>
#include <map>
#include <ranges>
#include <string>
#include <vector>

#include "dm2s2/distributed/communicator.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/train/dataset.hpp"
#include "dm2s2/train/metrics.hpp"

namespace dm2s2 {

namespace detail {
/// Records [first, last) of a random-access range, as a range (clang 14 cannot instantiate
/// libstdc++'s `std::ranges::subrange`).
template <class Iterator>
struct record_slice {
    Iterator first, last;
    Iterator begin() const { return first; }
    Iterator end() const { return last; }
};

template <class Iterator>
record_slice<Iterator> slice(Iterator begin, std::size_t first, std::size_t last)
{
    return {begin + static_cast<std::ptrdiff_t>(first), begin + static_cast<std::ptrdiff_t>(last)};
}
}  // namespace detail

/// Logits [records, outputs] of `m` (inference mode) for `records` (`sequence_set`s, an
/// `encoded_records`, or any random-access range of `sequence_set_like` records), `batch_size` records
/// at a time.
template <scalar T, class Backend, std::ranges::random_access_range Records>
    requires sequence_set_like<std::ranges::range_value_t<Records>>
tensor<T> predict_logits(const model<T, Backend>& m, const Records& records, std::size_t batch_size = 64)
{
    if (batch_size == 0) throw config_error("predict_logits: batch_size must be positive");
    const std::size_t outputs = m.config().num_outputs, n = std::ranges::size(records);
    tensor<T> logits({n, outputs});
    const auto begin = std::ranges::begin(records);
    for (std::size_t first = 0; first < n; first += batch_size) {
        const auto last = std::min(n, first + batch_size);
        const auto out = m.forward(detail::slice(begin, first, last));
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
    const auto logits = predict_logits(m, data.records, batch_size);
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
        const auto part = predict_logits(m, detail::slice(data.records.begin(), first, last), batch_size);
        std::copy_n(part.data(), part.size(), logits.row(first));
    }
    comm.all_reduce_sum(logits.data(), logits.size());
    return {compute_loss(task, logits, data.targets).value, evaluate_metrics(task, logits, data.targets)};
}

}  // namespace dm2s2
