#pragma once
/// \file
/// AdamW (decoupled weight decay, PyTorch's update order), the linear warm-up/decay schedule of
/// HuggingFace's `get_linear_schedule_with_warmup`, and global-norm gradient clipping as
/// `torch.nn.utils.clip_grad_norm_`.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

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

/// Scales every gradient of `grads` (anything with `for_each_parameter`) so that their global L2 norm
/// is at most `max_norm`; returns the norm before clipping. NaN or Inf gradients throw input_error
/// naming the first parameter after which the sum is not finite. The sums and the scaling run on
/// `backend`, over every gradient at once, in pieces whose order does not depend on its threads.
template <scalar T, class Gradients, class Backend = default_backend>
double clip_gradient_norm(Gradients& grads, double max_norm, const Backend& backend = {})
{
    std::vector<std::string> names;
    std::vector<buffer_view<T*>> buffers;
    std::vector<buffer_view<const T*>> inputs;
    grads.for_each_parameter([&](const std::string& name, tensor<T>& g) {
        names.push_back(name);
        buffers.push_back({g.data(), g.size()});
        inputs.push_back({g.data(), g.size()});
    });
    const squared_norm sum = backend.sum_of_squares(std::span<const buffer_view<const T*>>(inputs));
    if (sum.first_non_finite < names.size()) throw input_error("gradient of '" + names[sum.first_non_finite] + "' is not finite");
    const double norm = std::sqrt(sum.sum);
    const double coefficient = std::min(1.0, max_norm / (norm + 1e-6));
    if (coefficient < 1.0) backend.scale_buffers(std::span<const buffer_view<T*>>(buffers), coefficient);
    return norm;
}

/// Settings of `adamw` (PyTorch's defaults, weight decay as HuggingFace's fine-tuning scripts).
struct adamw_options {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;  ///< not applied to biases and LayerNorm weights
};

/// AdamW with PyTorch's defaults and update order. Its state (moments and step count) is keyed by
/// parameter name, so it can be saved and restored with the parameters.
template <scalar T>
class adamw {
public:
    using options = adamw_options;
    /// First and second moments of one parameter.
    using moments = std::pair<tensor<T>, tensor<T>>;

    adamw() = default;
    explicit adamw(options o) : options_(o) {}

    /// One update of `params` from `grads` (both visited by name, in the same order) at learning rate lr,
    /// as one `adamw_update` of `backend` over every parameter; each element's update is the same on any
    /// number of its threads.
    template <class Params, class Gradients, class Backend = default_backend>
    void step(Params& params, Gradients& grads, double lr, const Backend& backend = {})
    {
        std::map<std::string, const tensor<T>*> by_name;
        grads.for_each_parameter([&](const std::string& name, tensor<T>& g) { by_name[name] = &g; });
        ++steps_;
        const double bias_correction1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
        const double bias_correction2 = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
        const double step_size = lr / bias_correction1, sqrt_correction2 = std::sqrt(bias_correction2);
        std::vector<adamw_buffers<T*, const T*>> updates;
        params.for_each_parameter([&](const std::string& name, tensor<T>& p) {
            const auto it = by_name.find(name);
            if (it == by_name.end()) throw error("adamw: no gradient for parameter '" + name + "'");
            const tensor<T>& g = *it->second;
            require_shape(g, p.shape(), "adamw: gradient of '" + name + "'");
            auto& [m, v] = moments_.try_emplace(name, moments{tensor<T>(p.shape()), tensor<T>(p.shape())}).first->second;
            const double decay = exempt_from_weight_decay(name) ? 0.0 : options_.weight_decay;
            const adamw_coefficients c{.keep = 1 - lr * decay, .beta1 = options_.beta1, .beta2 = options_.beta2,
                                       .step_size = step_size, .sqrt_correction2 = sqrt_correction2, .eps = options_.eps};
            updates.push_back({p.data(), m.data(), v.data(), g.data(), p.size(), c});
        });
        backend.adamw_update(std::span<const adamw_buffers<T*, const T*>>(updates));
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
