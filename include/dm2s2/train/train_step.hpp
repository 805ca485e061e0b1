#pragma once
/// \file
/// One optimisation step of a DM²S² model: forward with a backward cache, loss, backward (accumulated
/// over micro-batches), global-norm clipping and an AdamW update.

#include <span>

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

/// Updates `m` once from micro-batches whose gradients are accumulated: the result equals one step on
/// their union, as the losses are means (each micro-batch's gradient is weighted by its share of the
/// records). `targets[k]` belongs to `batches[k]` (see `compute_loss` for the shapes).
/// `grads` is the gradient buffer: it is zeroed and reused, so that steps after the first allocate no
/// parameter-sized memory (pass the same one every step). The loss, the weighting of its gradient,
/// clipping and the update are operations of the model's backend.
template <scalar T, host_training_backend_for<T> Backend>
step_report train_step(model<T, Backend>& m, adamw<T>& optimizer, std::span<const packed_batch> batches, task_type task,
                       std::span<const tensor<T>> targets, const step_options& options, model_gradients<T>& grads)
{
    if (batches.empty() || batches.size() != targets.size())
        throw shape_error("train_step: " + std::to_string(batches.size()) + " micro-batches but " +
                          std::to_string(targets.size()) + " target tensors");
    std::size_t records = 0;
    for (const auto& b : batches) records += b.layout.batch;
    const auto& backend = m.encoder().backend();
    m.clear_gradients(grads);
    step_report report;
    for (std::size_t k = 0; k < batches.size(); ++k) {
        model_cache<T> cache;
        const auto out = m.forward(batches[k], false, &cache, options.dropout_rng);
        auto loss = compute_loss(task, out.logits, targets[k], backend);
        const double share = static_cast<double>(batches[k].layout.batch) / static_cast<double>(records);
        const buffer_view<T*> grad_logits{loss.grad_logits.data(), loss.grad_logits.size()};
        backend.scale_buffers(std::span<const buffer_view<T*>>(&grad_logits, 1), share);
        m.backward(cache, loss.grad_logits, grads);
        report.loss += share * loss.value;
    }
    if (options.max_gradient_norm > 0) report.gradient_norm = clip_gradient_norm<T>(grads, options.max_gradient_norm, backend);
    optimizer.step(m, grads, options.learning_rate, backend);
    return report;
}

/// `train_step` with a gradient buffer of its own.
template <scalar T, host_training_backend_for<T> Backend>
step_report train_step(model<T, Backend>& m, adamw<T>& optimizer, std::span<const packed_batch> batches, task_type task,
                       std::span<const tensor<T>> targets, const step_options& options)
{
    auto grads = m.zero_gradients();
    return train_step(m, optimizer, batches, task, targets, options, grads);
}

/// Updates `m` once on a packed batch with its targets (see `compute_loss` for their shape).
template <scalar T, host_training_backend_for<T> Backend>
step_report train_step(model<T, Backend>& m, adamw<T>& optimizer, const packed_batch& batch, task_type task,
                       const tensor<T>& targets, const step_options& options)
{
    return train_step(m, optimizer, std::span<const packed_batch>(&batch, 1), task, std::span<const tensor<T>>(&targets, 1),
                      options);
}

}  // namespace dm2s2
