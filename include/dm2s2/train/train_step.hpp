#pragma once
/// \file
/// One optimisation step of a DM²S² model: forward with a backward cache, loss, backward (accumulated
/// over micro-batches), global-norm clipping and an AdamW update.

#include <concepts>
#include <optional>
#include <span>

#include "dm2s2/distributed/communicator.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/train/losses.hpp"
#include "dm2s2/train/optimizer.hpp"

namespace dm2s2 {

/// Settings of a `train_step`.
struct step_options {
    double learning_rate = 1e-3;
    double max_gradient_norm = 1.0;  ///< 0 disables clipping
    /// The generator driving dropout (null: no dropout); each micro-batch draws one seed from it for a
    /// generator of its own, so that a micro-batch's masks do not depend on which rank runs it.
    random_generator* dropout_rng = nullptr;
    /// Data-parallel training: the records of the whole step over every rank (0: those of `batches`,
    /// one process), and where each micro-batch's share lies in its global micro-batch (empty: at the
    /// start; see `batch_offset`).
    std::size_t global_records = 0;
    std::span<const batch_offset> offsets = {};
};

/// What a `train_step` measured.
struct step_report {
    double loss = 0;
    double gradient_norm = 0;  ///< the gradients' global L2 norm, before clipping
};

/// Updates `m` once from micro-batches whose gradients are accumulated: the result equals one step on
/// their union, as the losses are means (each micro-batch's gradient is weighted by its share of the
/// records). `targets[k]` belongs to `batches[k]` (see `check_targets` for the shapes); a micro-batch
/// with no records (a rank's empty share) only draws its dropout seed. `grads` is the gradient buffer:
/// it is zeroed and reused, so that steps after the first allocate no parameter-sized memory (pass the
/// same one every step).
///
/// Everything runs on the model's backend: each micro-batch and its targets move there in one upload,
/// and the loss, the gradient norm and its finiteness stay there until one download at the end of the
/// step. Non-finite gradients throw input_error naming the first such parameter, with the parameters
/// and the optimizer as they were (without clipping too: their norm is summed for that alone).
///
/// With a communicator of several ranks, each rank passes its share of every micro-batch and
/// `options.global_records`; the gradients and the loss are summed over the ranks (in buckets, in a
/// fixed order) before clipping, and every rank makes the same update.
template <scalar T, class Backend, class Communicator = single_process>
    requires optimizing_backend_for<Backend, T> && communicator_for<Communicator, T, backend_space<Backend>> &&
             communicator_for<Communicator, double, backend_space<Backend>>
step_report train_step(model<T, Backend>& m, adamw<T, backend_space<Backend>>& optimizer, std::span<const packed_batch> batches,
                       task_type task, std::span<const tensor<T>> targets, const step_options& options,
                       model_gradients<T, backend_space<Backend>>& grads, const Communicator& comm = {})
{
    using space = backend_space<Backend>;
    if (batches.empty() || batches.size() != targets.size())
        throw shape_error("train_step: " + std::to_string(batches.size()) + " micro-batches but " +
                          std::to_string(targets.size()) + " target tensors");
    if (!options.offsets.empty() && options.offsets.size() != batches.size())
        throw shape_error("train_step: " + std::to_string(options.offsets.size()) + " share offsets for " +
                          std::to_string(batches.size()) + " micro-batches");
    std::size_t records = options.global_records;
    if (records == 0)
        for (const auto& b : batches) records += b.layout.batch;
    const auto& backend = m.backend();
    const std::size_t outputs = m.config().num_outputs;
    m.clear_gradients(grads);
    // [0] the loss, [1, 2] the gradient norm (`gradient_norm`), in the backend's memory.
    tensor<double, space> scalars = zeros<double>(backend, {1 + gradient_norm::values});
    for (std::size_t k = 0; k < batches.size(); ++k) {
        std::optional<random_generator> dropout;
        if (options.dropout_rng != nullptr) dropout.emplace(options.dropout_rng->next());
        const std::size_t samples = batches[k].layout.batch;
        if (samples == 0) continue;
        check_targets(task, samples, outputs, targets[k]);
        const auto batch =
            m.prepare(batches[k], targets[k].values(), options.offsets.empty() ? batch_offset{} : options.offsets[k]);
        model_cache<T, space> cache;
        const tensor<T, space> logits = m.forward_logits(batch, &cache, dropout ? &*dropout : nullptr);
        tensor<T, space> grad_logits(logits.shape(), uninitialized);
        const double share = static_cast<double>(samples) / static_cast<double>(records);
        accumulate_loss<T>(backend, task, logits.data(), batch[batch.targets], samples, outputs, grad_logits.data(), share,
                           scalars.data());
        const buffer_view<space_pointer<T, space>> grad_view{grad_logits.data(), grad_logits.size()};
        backend.scale_buffers(std::span<const buffer_view<space_pointer<T, space>>>(&grad_view, 1), share);
        m.backward(cache, grad_logits, grads);
    }
    if constexpr (!std::same_as<Communicator, single_process>) {
        if (comm.size() > 1) {
            const gradient_buffers<T, space, model_gradients<T, space>> g(grads);
            all_reduce_buffers<T>(comm, g.outputs());
            comm.all_reduce_sum(scalars.data(), 1);
        }
    }
    const bool clip = options.max_gradient_norm > 0;
    const auto norm = scalars.data() + std::size_t{1};
    if (clip) {
        clip_gradients<T>(grads, options.max_gradient_norm, backend, norm);
    } else {
        const gradient_buffers<T, space, model_gradients<T, space>> g(grads);
        backend.sum_of_squares(g.values(), norm);  // the norm and its finiteness, without clipping
    }
    optimizer.step(m, grads, options.learning_rate, backend, space_pointer<const double, space>(norm));
    const tensor<double> host = backend.download(scalars);
    step_report report;
    report.loss = host[0];
    if (!gradient_norm::finite(host.data() + 1)) {
        optimizer.take_back_step();
        const gradient_buffers<T, space, model_gradients<T, space>> g(grads);
        throw input_error("gradient of '" + g.names[static_cast<std::size_t>(host[2])] + "' is not finite");
    }
    report.gradient_norm = gradient_norm::value(host.data() + 1);
    return report;
}

/// `train_step` with a gradient buffer of its own.
template <scalar T, class Backend>
    requires optimizing_backend_for<Backend, T>
step_report train_step(model<T, Backend>& m, adamw<T, backend_space<Backend>>& optimizer, std::span<const packed_batch> batches,
                       task_type task, std::span<const tensor<T>> targets, const step_options& options)
{
    auto grads = m.zero_gradients();
    return train_step(m, optimizer, batches, task, targets, options, grads);
}

/// Updates `m` once on a packed batch with its targets (see `check_targets` for their shape).
template <scalar T, class Backend>
    requires optimizing_backend_for<Backend, T>
step_report train_step(model<T, Backend>& m, adamw<T, backend_space<Backend>>& optimizer, const packed_batch& batch,
                       task_type task, const tensor<T>& targets, const step_options& options)
{
    return train_step(m, optimizer, std::span<const packed_batch>(&batch, 1), task, std::span<const tensor<T>>(&targets, 1),
                      options);
}

}  // namespace dm2s2
