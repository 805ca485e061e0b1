#pragma once
/// \file
/// One optimisation step of a DM²S² model: forward with a backward cache, loss, backward,
/// global-norm clipping and an AdamW update.

#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/train/losses.hpp"
#include "dm2s2/train/optimizer.hpp"

namespace dm2s2 {

/// Settings of a `train_step`.
struct step_options {
    double learning_rate = 1e-3;
    double max_gradient_norm = 1.0;  ///< 0 disables clipping
    random_generator* dropout_rng = nullptr;  ///< the generator driving dropout; null: no dropout
};

/// What a `train_step` measured.
struct step_report {
    double loss = 0;
    double gradient_norm = 0;  ///< before clipping (0 when clipping is disabled)
};

/// Updates `m` once on a packed batch with its targets (see `compute_loss` for their shape).
template <scalar T, training_backend_for<T> Backend>
step_report train_step(model<T, Backend>& m, adamw<T>& optimizer, const packed_batch& batch, task_type task,
                       const tensor<T>& targets, const step_options& options)
{
    model_cache<T> cache;
    const auto out = m.forward(batch, false, &cache, options.dropout_rng);
    const auto loss = compute_loss(task, out.logits, targets);
    auto grads = m.zero_gradients();
    m.backward(cache, loss.grad_logits, grads);
    step_report report{loss.value, 0.0};
    if (options.max_gradient_norm > 0) report.gradient_norm = clip_gradient_norm<T>(grads, options.max_gradient_norm);
    optimizer.step(m, grads, options.learning_rate);
    return report;
}

}  // namespace dm2s2
