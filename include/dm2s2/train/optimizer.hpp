#pragma once
/// \file
/// AdamW (decoupled weight decay, PyTorch's update order), the linear warm-up/decay schedule of
/// HuggingFace's `get_linear_schedule_with_warmup`, and global-norm gradient clipping as
/// `torch.nn.utils.clip_grad_norm_`.

#include <algorithm>
#include <concepts>
#include <cmath>
#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dm2s2/backend/arena.hpp"
#include "dm2s2/backend/default_backend.hpp"
#include "dm2s2/backend/training_kernels.hpp"
#include "dm2s2/core/error.hpp"
#include "dm2s2/core/scalar.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2 {

/// Learning-rate factor at optimizer step `step` (0-based): step / warmup during warm-up, then a linear
/// decay to 0 at `total_steps`.
inline double linear_schedule(std::size_t step, std::size_t warmup_steps, std::size_t total_steps)
{
    if (step < warmup_steps) return static_cast<double>(step) / static_cast<double>(std::max<std::size_t>(1, warmup_steps));
    const double remaining = static_cast<double>(total_steps) - static_cast<double>(step);
    return std::max(0.0, remaining / static_cast<double>(std::max<std::size_t>(1, total_steps - warmup_steps)));
}

/// True for parameters without weight decay: biases and LayerNorm weights (HuggingFace's convention).
inline bool exempt_from_weight_decay(const std::string& name)
{
    const auto ends_with = [&](const std::string& suffix) {
        return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    return ends_with("bias") || name.find("LayerNorm.weight") != std::string::npos;
}

/// The buffers of every gradient of `grads` (anything with `for_each_parameter` over tensors of
/// `Space`), in visiting order, with their names.
template <scalar T, memory_space Space, class Gradients>
struct gradient_buffers {
    std::vector<std::string> names;
    std::vector<buffer_view<space_pointer<T, Space>>> buffers;
    std::vector<buffer_view<space_pointer<const T, Space>>> inputs;

    explicit gradient_buffers(Gradients& grads)
    {
        grads.for_each_parameter([&](const std::string& name, tensor<T, Space>& g) {
            names.push_back(name);
            buffers.push_back({g.data(), g.size()});
            inputs.push_back({std::as_const(g).data(), g.size()});
        });
    }

    std::span<const buffer_view<space_pointer<T, Space>>> outputs() const { return buffers; }
    std::span<const buffer_view<space_pointer<const T, Space>>> values() const { return inputs; }
};

/// Global-norm clipping on the backend: leaves ‖g‖² and its finiteness in `norm` (`gradient_norm`,
/// two doubles of the backend's memory) and scales every gradient so that their global L2 norm is at
/// most `max_norm`; nothing is scaled when the norm is not finite. The sums run over every gradient at
/// once, in pieces whose order does not depend on the backend's threads.
template <scalar T, class Gradients, class Backend>
void clip_gradients(Gradients& grads, double max_norm, const Backend& backend, backend_pointer<Backend, double> norm)
{
    const gradient_buffers<T, backend_space<Backend>, Gradients> g(grads);
    backend.sum_of_squares(g.values(), norm);
    backend.clip_buffers(g.outputs(), backend_pointer<Backend, const double>(norm), max_norm);
}

/// Scales every gradient of `grads` (anything with `for_each_parameter`) so that their global L2 norm
/// is at most `max_norm`; returns the norm before clipping. NaN or Inf gradients throw input_error
/// naming the first parameter after which the sum is not finite (and are left unscaled). Runs on
/// `backend` (see `clip_gradients`); the norm comes back in one download.
template <scalar T, class Gradients, class Backend = default_backend>
double clip_gradient_norm(Gradients& grads, double max_norm, const Backend& backend = {})
{
    tensor<double, backend_space<Backend>> norm({gradient_norm::values}, uninitialized);
    clip_gradients<T>(grads, max_norm, backend, norm.data());
    const tensor<double> host = backend.download(norm);
    if (!gradient_norm::finite(host.data())) {
        const gradient_buffers<T, backend_space<Backend>, Gradients> g(grads);
        throw input_error("gradient of '" + g.names[static_cast<std::size_t>(host[1])] + "' is not finite");
    }
    return gradient_norm::value(host.data());
}

/// Settings of `adamw` (PyTorch's defaults, weight decay as HuggingFace's fine-tuning scripts).
struct adamw_options {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;  ///< not applied to biases and LayerNorm weights
};

/// AdamW with PyTorch's defaults and update order. Its state (moments and step count) is keyed by
/// parameter name, so it can be saved and restored with the parameters; the moments live in memory
/// space `Space`, with the parameters they belong to.
template <scalar T, memory_space Space = host_space>
class adamw {
public:
    using options = adamw_options;
    /// First and second moments of one parameter.
    using moments = std::pair<tensor<T, Space>, tensor<T, Space>>;

    adamw() = default;
    explicit adamw(options o) : options_(o) {}

    /// `other`'s state with its moments moved by `transfer` (see `nn::linear`).
    template <memory_space From, class Transfer>
    adamw(const adamw<T, From>& other, Transfer&& transfer) : options_(other.settings()), steps_(other.steps())
    {
        other.for_each_moment([&](const std::string& name, const auto& m, const auto& v) {
            moments_.emplace(name, moments{transfer(m), transfer(v)});
        });
    }

    /// One update of `params` from `grads` (both visited by name, in the same order) at learning rate lr,
    /// as one `adamw_update` of `backend` over every parameter; each element's update is the same on any
    /// number of its threads. With `norm` (what clipping left in the backend's memory), the backend
    /// skips the update when the gradients are not finite; the caller then takes the step back
    /// (`take_back_step`).
    template <class Params, class Gradients, class Backend = default_backend>
    void step(Params& params, Gradients& grads, double lr, const Backend& backend = {},
              backend_pointer<Backend, const double> norm = nullptr)
    {
        static_assert(std::same_as<backend_space<Backend>, Space>, "adamw: the backend works in another memory space");
        using pointer = space_pointer<T, Space>;
        using const_pointer = space_pointer<const T, Space>;
        std::map<std::string, const tensor<T, Space>*> by_name;
        grads.for_each_parameter([&](const std::string& name, tensor<T, Space>& g) { by_name[name] = &g; });
        ++steps_;
        const double bias_correction1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
        const double bias_correction2 = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
        const double step_size = lr / bias_correction1, sqrt_correction2 = std::sqrt(bias_correction2);
        std::vector<adamw_buffers<pointer, const_pointer>> updates;
        params.for_each_parameter([&](const std::string& name, tensor<T, Space>& p) {
            const auto it = by_name.find(name);
            if (it == by_name.end()) throw error("adamw: no gradient for parameter '" + name + "'");
            const tensor<T, Space>& g = *it->second;
            require_shape(g, p.shape(), "adamw: gradient of '" + name + "'");
            auto found = moments_.find(name);
            if (found == moments_.end())
                found = moments_.emplace(name, moments{zeros<T>(backend, p.shape()), zeros<T>(backend, p.shape())}).first;
            auto& [m, v] = found->second;
            const double decay = exempt_from_weight_decay(name) ? 0.0 : options_.weight_decay;
            const adamw_coefficients c{.keep = 1 - lr * decay,
                                       .beta1 = options_.beta1,
                                       .beta2 = options_.beta2,
                                       .step_size = step_size,
                                       .sqrt_correction2 = sqrt_correction2,
                                       .eps = options_.eps};
            updates.push_back({p.data(), m.data(), v.data(), g.data(), p.size(), c});
        });
        backend.adamw_update(std::span<const adamw_buffers<pointer, const_pointer>>(updates), norm);
    }

    /// Takes back the count of the last `step`, which the backend skipped (non-finite gradients): the
    /// parameters and moments are as they were before it.
    void take_back_step() noexcept
    {
        if (steps_ > 0) --steps_;
    }

    std::size_t steps() const noexcept { return steps_; }
    const options& settings() const noexcept { return options_; }

    /// Visits the moment tensors as `<name>.exp_avg` and `<name>.exp_avg_sq` (for checkpoints).
    template <class F>
    void for_each_state(F&& visit) const
    {
        for (const auto& [name, state] : moments_) {
            visit(name + ".exp_avg", state.first);
            visit(name + ".exp_avg_sq", state.second);
        }
    }

    /// Visits each parameter's moments as (name, first, second).
    template <class F>
    void for_each_moment(F&& visit) const
    {
        for (const auto& [name, state] : moments_) visit(name, state.first, state.second);
    }

    /// Replaces the state with one saved from `for_each_state` and `steps` (resuming a run).
    void restore(std::size_t steps, std::map<std::string, moments> state)
    {
        steps_ = steps;
        moments_ = std::move(state);
    }

private:
    options options_;
    std::size_t steps_ = 0;
    std::map<std::string, moments> moments_;
};

}  // namespace dm2s2
