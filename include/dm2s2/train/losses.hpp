#pragma once
/// \file
/// The training losses of docs/design.md §7 with their gradients, mean-reduced as in PyTorch:
/// cross-entropy (multiclass), BCE with logits (binary and multilabel), mean squared error (regression).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>

#include "dm2s2/backend/default_backend.hpp"
#include "dm2s2/backend/training_kernels.hpp"
#include "dm2s2/core/error.hpp"
#include "dm2s2/core/scalar.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2 {

/// The prediction task, which fixes the loss and the metrics.
enum class task_type { multiclass, binary, multilabel, regression };

constexpr std::string_view to_string(task_type t) noexcept
{
    switch (t) {
    case task_type::multiclass: return "multiclass";
    case task_type::binary: return "binary";
    case task_type::multilabel: return "multilabel";
    case task_type::regression: return "regression";
    }
    return "?";
}

/// A loss value and its gradient with respect to the logits.
template <scalar T>
struct loss_result {
    double value = 0;
    tensor<T> grad_logits;
};

/// Throws shape_error or input_error, naming the sample, unless `targets` fit logits [batch, outputs]
/// for the task: class indices [batch] for multiclass, 0/1 values [batch, outputs] for binary
/// (outputs = 1) and multilabel, finite numbers [batch, outputs] for regression.
template <scalar T>
void check_targets(task_type task, std::size_t batch, std::size_t outputs, const tensor<T>& targets)
{
    const auto where = [](std::size_t b) { return "loss: sample " + std::to_string(b) + ": "; };
    if (task == task_type::multiclass) {
        require_shape(targets, {batch}, "loss: multiclass targets");
        for (std::size_t b = 0; b < batch; ++b) {
            const double c = targets[b];
            if (!(c >= 0 && c < static_cast<double>(outputs) && c == std::floor(c)))
                throw input_error(where(b) + "class " + std::to_string(c) + " is not an integer in [0, " +
                                  std::to_string(outputs) + ")");
        }
        return;
    }
    require_shape(targets, {batch, outputs}, std::string("loss: ") + std::string(to_string(task)) + " targets");
    if (task == task_type::binary && outputs != 1)
        throw shape_error("loss: a binary task has one output, not " + std::to_string(outputs));
    for (std::size_t i = 0; i < targets.size(); ++i) {
        const double y = targets[i];
        if (task == task_type::regression && !std::isfinite(y)) throw input_error(where(i / outputs) + "target is not finite");
        if (task != task_type::regression && y != 0 && y != 1)
            throw input_error(where(i / outputs) + "target " + std::to_string(y) + " is not 0 or 1");
    }
}

/// `check_targets` for the shape of `logits` [batch, outputs].
template <scalar T>
void check_targets(task_type task, const tensor<T>& logits, const tensor<T>& targets)
{
    if (logits.rank() != 2) throw shape_error("loss: logits must be [batch, outputs], got " + to_string(logits.shape()));
    check_targets(task, logits.dim(0), logits.dim(1), targets);
}

/// The task's loss of logits [batch, outputs] against targets checked by `check_targets`, everything in
/// `backend`'s memory: writes d(loss)/d(logits) to `grad` and adds `weight` × the loss to `*loss`.
/// Softmax cross-entropy (multiclass), binary cross-entropy with logits (binary, multilabel), squared
/// error (regression), each the mean over the batch as PyTorch's.
template <scalar T, class Backend>
void accumulate_loss(const Backend& backend, task_type task, backend_pointer<Backend, const T> logits,
                     backend_pointer<Backend, const T> targets, std::size_t batch, std::size_t outputs,
                     backend_pointer<Backend, T> grad, double weight, backend_pointer<Backend, double> loss)
{
    switch (task) {
    case task_type::multiclass: backend.softmax_cross_entropy(logits, targets, batch, outputs, grad, weight, loss); break;
    case task_type::regression: backend.squared_error(logits, targets, batch * outputs, grad, weight, loss); break;
    default: backend.binary_cross_entropy(logits, targets, batch * outputs, grad, weight, loss);
    }
}

/// Loss of host `logits` [batch, outputs] against `targets` (shaped as `check_targets` requires),
/// computed by a host `backend` (see `accumulate_loss`).
template <scalar T, class Backend = default_backend>
loss_result<T> compute_loss(task_type task, const tensor<T>& logits, const tensor<T>& targets, const Backend& backend = {})
{
    check_targets(task, logits, targets);
    loss_result<T> out{0.0, tensor<T>(logits.shape(), uninitialized)};
    accumulate_loss<T>(backend, task, logits.data(), targets.data(), logits.dim(0), logits.dim(1), out.grad_logits.data(), 1.0,
                       &out.value);
    return out;
}

}  // namespace dm2s2
