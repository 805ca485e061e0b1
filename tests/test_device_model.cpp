// DM²S² on every backend of the list: a model moved from the host into a backend's memory gives the
// CPU model's logits, explanations, gradients, training steps and training runs; on the staging
// backend it gives the plain-loop host model's numbers exactly, and makes exactly the transfers the
// design allows (one upload per batch, one download of the logits, one of the attention weights when
// explaining, one of the step's scalars when training).

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include "backend_cases.hpp"
#include "dm2s2/train/trainer.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using namespace dm2s2::testing;

namespace {

/// How far a model on backend case C may be from the CPU model: the design's bounds, 1e-6 relative in
/// float and 1e-12 in double (the staging backend runs the plain loops, the CPU backend its own
/// products and vector kernels); 1e-5 in float on the GPU, whose products sum in another order.
#if defined(DM2S2_TEST_CUDA)
constexpr double float_model_tolerance = 1e-5;
#else
constexpr double float_model_tolerance = 1e-6;
#endif
template <class C>
constexpr double model_tolerance = std::is_same_v<typename C::scalar, float> ? float_model_tolerance : 1e-12;

/// Whether case C's backend runs the plain-loop kernels, so that it must match a host model on
/// `reference_backend` bit for bit.
template <class C>
constexpr bool runs_reference_loops = std::is_same_v<staging_backend, typename C::backend>;

/// Every parameter (or gradient) of `m`, by name, on the host.
template <class T, class Space, class Backend, class Visitable>
std::map<std::string, tensor<T>> on_host_by_name(const Backend& backend, Visitable& m)
{
    std::map<std::string, tensor<T>> out;
    m.for_each_parameter([&](const std::string& name, tensor<T, Space>& t) { out.emplace(name, backend.download(t)); });
    return out;
}

/// The largest finite |value| over every tensor of a name → tensor map.
template <class T>
double largest_value(const std::map<std::string, tensor<T>>& tensors)
{
    double scale = 0;
    for (const auto& [name, t] : tensors)
        for (const T v : t.values())
            if (std::isfinite(static_cast<double>(v))) scale = std::max(scale, std::abs(static_cast<double>(v)));
    return scale;
}

/// Checks that two name → tensor maps hold the same names, and tensors whose differences are within
/// `tolerance` of the largest value of all of `expected` (one scale for the whole model: the key
/// biases' gradients are zero but for rounding, since the softmax ignores a shift of every score).
/// Names in `skip` are not compared.
template <class T>
void check_same(const std::map<std::string, tensor<T>>& got, const std::map<std::string, tensor<T>>& expected, double tolerance,
                const char* what, bool (*skip)(const std::string&) = nullptr)
{
    REQUIRE(got.size() == expected.size());
    const double scale = largest_value(expected);
    for (const auto& entry : expected) {
        const std::string& name = entry.first;
        const tensor<T>& t = entry.second;
        CAPTURE(what);
        CAPTURE(name);
        REQUIRE(got.count(name) == 1);
        if (skip != nullptr && skip(name)) continue;
        const auto& g = got.at(name);
        REQUIRE(g.shape() == t.shape());
        double worst = 0;
        for (std::size_t i = 0; i < t.size(); ++i) {
            const double d = g[i] == t[i] ? 0.0 : std::abs(static_cast<double>(g[i]) - static_cast<double>(t[i]));
            worst = std::isnan(d) ? INFINITY : std::max(worst, d);
        }
        CHECK(worst <= tolerance * scale);
    }
}

/// The key biases: they get no gradient but rounding (the softmax ignores a shift of every score), and
/// AdamW scales that rounding up to steps of the learning rate, so two backends' trained key biases
/// differ by their rounding's signs. They are compared only where the kernels are the same.
bool key_bias(const std::string& name)
{
    return name.find("attention.self.key.bias") != std::string::npos;
}

/// Targets of `task` for `count` records and `outputs` logits.
template <class T>
tensor<T> some_targets(std::size_t count, std::size_t outputs, std::uint64_t seed)
{
    random_generator rng(seed);
    tensor<T> t({count});
    for (auto& v : t.values()) v = static_cast<T>(rng.below(outputs));
    return t;
}

}  // namespace

TEST_CASE_TEMPLATE("a model in a backend's memory gives the CPU model's logits, explanations and gradients", C,
                   DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    using B = typename C::backend;
    using space = backend_space<B>;
    const auto records = random_records(four_modalities(), 7, 11);
    for (const auto& variant : pooling_variants()) {
        const auto& [name, config] = variant;
        CAPTURE(variant.first);
        model<T, cpu_backend> cpu(four_modalities(), config, 7);
        model<T, B> device(cpu, C::make_backend());
        const auto batch = cpu.pack(records);
        const bool explain = explains(config.pooling);

        model_cache<T> cpu_cache;
        model_cache<T, space> device_cache;
        const auto expected = cpu.forward(batch, explain, &cpu_cache);
        const auto got = device.forward(batch, explain, &device_cache);
        CHECK(max_relative_diff(got.logits.values(), expected.logits.values()) <= model_tolerance<C>);
        if (explain) {
            CHECK(max_relative_diff(got.explanation.alpha, expected.explanation.alpha) <= model_tolerance<C>);
            CHECK(max_relative_diff(got.explanation.beta, expected.explanation.beta) <= model_tolerance<C>);
            CHECK(max_relative_diff(got.explanation.gamma, expected.explanation.gamma) <= model_tolerance<C>);
        }

        tensor<T> probe(expected.logits.shape());
        random_generator rng(12);
        for (auto& v : probe.values()) v = static_cast<T>(rng.normal());
        auto cpu_grads = cpu.zero_gradients();
        auto device_grads = device.zero_gradients();
        cpu.backward(cpu_cache, probe, cpu_grads);
        device.backward(device_cache, device.backend().upload(probe), device_grads);
        check_same(on_host_by_name<T, space>(device.backend(), device_grads),
                   on_host_by_name<T, host_space>(cpu.backend(), cpu_grads), model_tolerance<C>, "gradients");

        if constexpr (runs_reference_loops<C>) {  // the plain loops on the host: the same numbers exactly
            model<T, reference_backend> host(cpu, reference_backend{});
            model_cache<T> host_cache;
            const auto same = host.forward(batch, explain, &host_cache);
            CHECK(max_relative_diff(got.logits.values(), same.logits.values()) == 0.0);
            if (explain) CHECK(max_relative_diff(got.explanation.gamma, same.explanation.gamma) == 0.0);
            auto host_grads = host.zero_gradients();
            host.backward(host_cache, probe, host_grads);
            check_same(on_host_by_name<T, space>(device.backend(), device_grads),
                       on_host_by_name<T, host_space>(host.backend(), host_grads), 0.0, "gradients, plain loops");
        }
    }
}

TEST_CASE_TEMPLATE("a model in a backend's memory trains as the CPU model does: steps, a non-finite stop, a short fit", C,
                   DM2S2_BACKEND_CASES)
{
    using T = typename C::scalar;
    using B = typename C::backend;
    using space = backend_space<B>;
    const auto schema = four_modalities();
    model_config config = small_config();
    const auto records = random_records(schema, 8, 21);
    const auto targets = some_targets<T>(8, config.num_outputs, 22);

    SUBCASE("two steps of two micro-batches, with and without dropout")
    for (const bool dropout : {false, true}) {
        CAPTURE(dropout);
        config.bert.hidden_dropout_prob = config.bert.attention_probs_dropout_prob = config.head_dropout = dropout ? 0.1 : 0.0;
        model<T, cpu_backend> cpu(schema, config, 9);
        model<T, B> device(cpu, C::make_backend());
        adamw<T> cpu_optimizer;
        adamw<T, space> device_optimizer;
        // Two micro-batches of 5 and 3 records, two steps.
        const std::vector<packed_batch> batches{cpu.pack(std::span(records).subspan(0, 5)),
                                                cpu.pack(std::span(records).subspan(5))};
        tensor<T> first({5}), second({3});
        std::copy_n(targets.data(), 5, first.data());
        std::copy_n(targets.data() + 5, 3, second.data());
        const std::vector<tensor<T>> parts{first, second};
        random_generator cpu_rng(31), device_rng(31);
        for (int step = 0; step < 2; ++step) {
            const auto a = train_step(cpu, cpu_optimizer, std::span<const packed_batch>(batches), task_type::multiclass,
                                      std::span<const tensor<T>>(parts), {.learning_rate = 1e-3, .dropout_rng = &cpu_rng});
            const auto b = train_step(device, device_optimizer, std::span<const packed_batch>(batches), task_type::multiclass,
                                      std::span<const tensor<T>>(parts), {.learning_rate = 1e-3, .dropout_rng = &device_rng});
            CHECK(std::abs(b.loss - a.loss) <= model_tolerance<C> * std::abs(a.loss));
            CHECK(std::abs(b.gradient_norm - a.gradient_norm) <= model_tolerance<C> * a.gradient_norm);
        }
        check_same(on_host_by_name<T, space>(device.backend(), device), on_host_by_name<T, host_space>(cpu.backend(), cpu),
                   model_tolerance<C>, "parameters after two steps", key_bias);
        CHECK(device_optimizer.steps() == 2);
        if constexpr (runs_reference_loops<C>) {  // the plain loops on the host: the same numbers exactly
            model<T, reference_backend> host(model<T, cpu_backend>(schema, config, 9), reference_backend{});
            adamw<T> host_optimizer;
            random_generator host_rng(31);
            for (int step = 0; step < 2; ++step)
                (void)train_step(host, host_optimizer, std::span<const packed_batch>(batches), task_type::multiclass,
                                 std::span<const tensor<T>>(parts), {.learning_rate = 1e-3, .dropout_rng = &host_rng});
            check_same(on_host_by_name<T, space>(device.backend(), device), on_host_by_name<T, host_space>(host.backend(), host),
                       0.0, "parameters after two steps, plain loops");
        }
    }

    SUBCASE("a non-finite gradient stops the step with the parameter's name and changes nothing")
    {
        model<T, cpu_backend> cpu(schema, small_config(), 9);
        cpu.for_each_parameter([](const std::string& name, tensor<T>& t) {
            if (name == "head.bias") t[0] = std::numeric_limits<T>::infinity();
        });
        model<T, B> device(cpu, C::make_backend());
        adamw<T, space> optimizer;
        const auto before = on_host_by_name<T, space>(device.backend(), device);
        CHECK_THROWS_WITH_AS(train_step(device, optimizer, cpu.pack(records), task_type::multiclass, targets, {}),
                             doctest::Contains("is not finite"), input_error);
        CHECK(optimizer.steps() == 0);
        check_same(on_host_by_name<T, space>(device.backend(), device), before, 0.0, "parameters after the stopped step");
    }

    SUBCASE("trainer::fit: two epochs with accumulation and validation")
    {
        model<T, cpu_backend> cpu(schema, small_config(), 9);
        model<T, B> device(cpu, C::make_backend());
        const dataset<T> train{records, targets};
        const dataset<T> validation{random_records(schema, 5, 23), some_targets<T>(5, config.num_outputs, 24)};
        trainer_options options;
        options.epochs = 2;
        options.batch_size = 3;
        options.accumulation = 2;
        options.learning_rate = 1e-3;
        options.log = nullptr;
        const auto expected = trainer<T, cpu_backend>(cpu, task_type::multiclass, options).fit(train, &validation);
        const auto got = trainer<T, B>(device, task_type::multiclass, options).fit(train, &validation);
        REQUIRE(got.history.size() == 2);
        for (std::size_t e = 0; e < 2; ++e) {
            CHECK(std::abs(got.history[e].train_loss - expected.history[e].train_loss) <=
                  model_tolerance<C> * std::abs(expected.history[e].train_loss));
            CHECK(std::abs(got.history[e].validation->loss - expected.history[e].validation->loss) <=
                  model_tolerance<C> * std::abs(expected.history[e].validation->loss));
        }
        // AdamW divides each element's gradient by its running size, so where a gradient is near zero the
        // two backends' rounding moves an element by a visible part of the learning rate: after four
        // steps the float parameters are compared at 10 times the forward pass's bound.
        const double fit_tolerance = model_tolerance<C> * (std::is_same_v<T, float> ? 10 : 1);
        check_same(on_host_by_name<T, space>(device.backend(), device), on_host_by_name<T, host_space>(cpu.backend(), cpu),
                   fit_tolerance, "parameters after fit", key_bias);
        if constexpr (runs_reference_loops<C>) {
            model<T, reference_backend> host(model<T, cpu_backend>(schema, small_config(), 9), reference_backend{});
            (void)trainer<T, reference_backend>(host, task_type::multiclass, options).fit(train, &validation);
            check_same(on_host_by_name<T, space>(device.backend(), device), on_host_by_name<T, host_space>(host.backend(), host),
                       0.0, "parameters after fit, plain loops");
        }
    }
}

TEST_CASE_TEMPLATE("a model on the staging backend makes exactly one upload per batch and one download per result", T, float,
                   double)
{
    const auto records = random_records(four_modalities(), 7, 11);
    const std::size_t outputs = small_config().num_outputs, batch_size = records.size();
    for (const auto& variant : pooling_variants()) {
        const auto& [name, config] = variant;
        CAPTURE(variant.first);
        const model<T, reference_backend> host(four_modalities(), config, 7);
        const staging_backend staging(staging_options{.guard = true});
        model<T, staging_backend> device(host, staging);
        const auto batch = host.pack(records);
        const auto prepared = host.prepare(batch);

        staging.reset_transfers();
        (void)device.forward(batch);
        auto counts = staging.transfers();
        CHECK(counts.uploads == 1);
        CHECK(counts.downloads == 1);
        CHECK(counts.downloaded_bytes == batch_size * outputs * sizeof(T));  // the logits, nothing else

        if (explains(config.pooling)) {
            staging.reset_transfers();
            (void)device.forward(batch, true);
            counts = staging.transfers();
            CHECK(counts.uploads == 1);
            // The mean pooling's weights follow from the layout; learned ones come back in one download.
            const bool learned = config.pooling != pooling_kind::mean;
            const std::size_t weights = prepared.elements + prepared.element_groups.size();
            CHECK(counts.downloads == (learned ? 2 : 1));
            CHECK(counts.downloaded_bytes == (batch_size * outputs + (learned ? weights : 0)) * sizeof(T));
        }

        model<T, staging_backend> trained(host, staging);
        adamw<T, staging_space> optimizer;
        auto grads = trained.zero_gradients();
        const auto targets = some_targets<T>(batch_size, outputs, 5);
        for (int step = 0; step < 2; ++step) {  // the first step also creates the moments on the backend
            staging.reset_transfers();
            (void)train_step(trained, optimizer, std::span<const packed_batch>(&batch, 1), task_type::multiclass,
                             std::span<const tensor<T>>(&targets, 1), {}, grads);
            counts = staging.transfers();
            CHECK(counts.uploads == 1);    // the batch with its targets
            CHECK(counts.downloads == 1);  // loss, Σ g² and the first non-finite gradient
            CHECK(counts.downloaded_bytes == 3 * sizeof(double));
        }
    }
}
