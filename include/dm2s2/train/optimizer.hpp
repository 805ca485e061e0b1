#pragma once
/// \file
/// AdamW (decoupled weight decay, PyTorch's update order), the linear warm-up/decay schedule of
/// HuggingFace's `get_linear_schedule_with_warmup`, and global-norm gradient clipping as
/// `torch.nn.utils.clip_grad_norm_`.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dm2s2/core/error.hpp"
#include "dm2s2/core/scalar.hpp"
#include "dm2s2/core/simd.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/core/thread_pool.hpp"

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

namespace detail {

/// The sum of x[i]² over n values, in double. Its order of additions depends only on n, so the sum is
/// the same on any thread count. Four vector sums run side by side: one running scalar sum waited on
/// each addition, and the sum took about 3 % of a BERT-base training step.
template <scalar T>
double sum_of_squares(const T* x, std::size_t n) noexcept
{
    double sum = 0;
    std::size_t i = 0;
#if DM2S2_HAS_XSIMD
    using batch = simd::batch<double>;
    constexpr std::size_t w = batch::size;
    batch s0(0.0), s1(0.0), s2(0.0), s3(0.0);
    for (; i + 4 * w <= n; i += 4 * w) {
        const auto a0 = batch::load_unaligned(x + i), a1 = batch::load_unaligned(x + i + w);
        const auto a2 = batch::load_unaligned(x + i + 2 * w), a3 = batch::load_unaligned(x + i + 3 * w);
        s0 += a0 * a0;
        s1 += a1 * a1;
        s2 += a2 * a2;
        s3 += a3 * a3;
    }
    sum = simd::reduce_sum((s0 + s1) + (s2 + s3));
#endif
    for (; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
    return sum;
}

}  // namespace detail

/// Scales every gradient of `grads` (anything with `for_each_parameter`) so that their global L2 norm
/// is at most `max_norm`; returns the norm before clipping. NaN or Inf gradients throw input_error.
/// The sums run on `executor`'s threads (a backend), in pieces whose order does not depend on them.
template <scalar T, class Gradients, class Executor = serial_executor>
double clip_gradient_norm(Gradients& grads, double max_norm, const Executor& executor = {})
{
    double sum = 0;
    grads.for_each_parameter([&](const std::string& name, tensor<T>& g) {
        std::vector<double> partial((g.size() + parameter_chunk - 1) / parameter_chunk, 0.0);
        const T* values = g.data();
        for_each_chunk(executor, g.size(), parameter_chunk, [&](std::size_t piece, std::size_t begin, std::size_t end) {
            partial[piece] = detail::sum_of_squares(values + begin, end - begin);
        });
        for (const double s : partial) sum += s;
        if (!std::isfinite(sum)) throw input_error("gradient of '" + name + "' is not finite");
    });
    const double norm = std::sqrt(sum);
    const double coefficient = std::min(1.0, max_norm / (norm + 1e-6));
    if (coefficient < 1.0)
        grads.for_each_parameter([&](const std::string&, tensor<T>& g) {
            T* values = g.data();
            for_each_chunk(executor, g.size(), parameter_chunk, [&](std::size_t, std::size_t begin, std::size_t end) {
                for (std::size_t i = begin; i < end; ++i) values[i] = static_cast<T>(values[i] * coefficient);
            });
        });
    return norm;
}

/// Settings of `adamw` (PyTorch's defaults, weight decay as HuggingFace's fine-tuning scripts).
struct adamw_options {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;  ///< not applied to biases and LayerNorm weights
};

namespace detail {

/// The coefficients of one AdamW update, shared by every element of a parameter.
struct adamw_coefficients {
    double keep;  ///< 1 − lr · weight decay
    double beta1, beta2, step_size, sqrt_correction2, eps;
};

/// AdamW's update of one element in double, or of a batch of them (`V`: double or simd::batch<double>):
/// the same operations in the same order either way. Which elements take which path depends only on
/// the parameter's size, so results never depend on the thread count.
template <class V>
void adamw_update(V& p, V& m, V& v, const V& g, const adamw_coefficients& c)
{
    using std::sqrt;
    const V one(1.0), beta1(c.beta1), beta2(c.beta2);
    p = p * V(c.keep);
    m = beta1 * m + (one - beta1) * g;
    v = beta2 * v + (one - beta2) * g * g;
    p = p - V(c.step_size) * m / (sqrt(v) / V(c.sqrt_correction2) + V(c.eps));
}

/// AdamW over n elements of a parameter p, its moments m and v and its gradient g, computed in double.
template <scalar T>
void adamw_range(T* p, T* m, T* v, const T* g, std::size_t n, const adamw_coefficients& c)
{
    std::size_t i = 0;
#if DM2S2_HAS_XSIMD
    // Vector square roots and divisions: the scalar loop spent most of its time waiting for them.
    using batch = simd::batch<double>;
    for (; i + batch::size <= n; i += batch::size) {
        auto pb = batch::load_unaligned(p + i), mb = batch::load_unaligned(m + i), vb = batch::load_unaligned(v + i);
        adamw_update(pb, mb, vb, batch::load_unaligned(g + i), c);
        mb.store_unaligned(m + i);
        vb.store_unaligned(v + i);
        pb.store_unaligned(p + i);
    }
#endif
    for (; i < n; ++i) {
        double pi = p[i], mi = m[i], vi = v[i];
        adamw_update(pi, mi, vi, static_cast<double>(g[i]), c);
        m[i] = static_cast<T>(mi);
        v[i] = static_cast<T>(vi);
        p[i] = static_cast<T>(pi);
    }
}

}  // namespace detail

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
    /// on `executor`'s threads (a backend); each element's update is the same on any number of them.
    template <class Params, class Gradients, class Executor = serial_executor>
    void step(Params& params, Gradients& grads, double lr, const Executor& executor = {})
    {
        std::map<std::string, const tensor<T>*> by_name;
        grads.for_each_parameter([&](const std::string& name, tensor<T>& g) { by_name[name] = &g; });
        ++steps_;
        const double bias_correction1 = 1 - std::pow(options_.beta1, static_cast<double>(steps_));
        const double bias_correction2 = 1 - std::pow(options_.beta2, static_cast<double>(steps_));
        const double step_size = lr / bias_correction1, sqrt_correction2 = std::sqrt(bias_correction2);
        params.for_each_parameter([&](const std::string& name, tensor<T>& p) {
            const auto it = by_name.find(name);
            if (it == by_name.end()) throw error("adamw: no gradient for parameter '" + name + "'");
            const tensor<T>& g = *it->second;
            require_shape(g, p.shape(), "adamw: gradient of '" + name + "'");
            auto& [m, v] = moments_.try_emplace(name, moments{tensor<T>(p.shape()), tensor<T>(p.shape())}).first->second;
            const double decay = exempt_from_weight_decay(name) ? 0.0 : options_.weight_decay;
            const detail::adamw_coefficients c{.keep = 1 - lr * decay, .beta1 = options_.beta1, .beta2 = options_.beta2,
                                               .step_size = step_size, .sqrt_correction2 = sqrt_correction2, .eps = options_.eps};
            T *pv = p.data(), *mv = m.data(), *vv = v.data();
            const T* gv = g.data();
            for_each_chunk(executor, p.size(), parameter_chunk, [&](std::size_t, std::size_t begin, std::size_t end) {
                detail::adamw_range(pv + begin, mv + begin, vv + begin, gv + begin, end - begin, c);
            });
        });
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
