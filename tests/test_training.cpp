// Losses, AdamW, the learning-rate schedule and gradient clipping against PyTorch (reference values
// in data/training_reference.json, written by data/scripts/make_training_reference.py).

#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "dm2s2/train/losses.hpp"
#include "dm2s2/train/metrics.hpp"
#include "dm2s2/train/optimizer.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::max_abs_diff;

namespace {

const nlohmann::json& reference()
{
    static const nlohmann::json j = nlohmann::json::parse(std::ifstream(dm2s2::testing::data_dir() / "training_reference.json"));
    return j;
}

template <class T>
tensor<T> tensor_from_json(const nlohmann::json& values, shape_t shape)
{
    tensor<T> t(std::move(shape));
    REQUIRE(values.size() == t.size());
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<T>(values[i].get<double>());
    return t;
}

/// A named set of tensors with `for_each_parameter`, standing in for a model.
template <class T>
struct named_tensors {
    std::map<std::string, tensor<T>> tensors;
    template <class F>
    void for_each_parameter(F&& visit)
    {
        for (auto& [name, t] : tensors) visit(name, t);
    }
};

}  // namespace

TEST_CASE_TEMPLATE("losses and their gradients match PyTorch", T, float, double)
{
    const double tolerance = std::is_same_v<T, float> ? 1e-6 : 1e-14;
    for (const auto task : {task_type::multiclass, task_type::multilabel, task_type::binary, task_type::regression}) {
        const std::string t(to_string(task));
        CAPTURE(t);
        const nlohmann::json& c = reference()["losses"][t];
        const shape_t shape = c["shape"].get<shape_t>();
        const auto logits = tensor_from_json<T>(c["logits"], shape);
        const auto targets = task == task_type::multiclass ? tensor_from_json<T>(c["targets"], {shape[0]})
                                                           : tensor_from_json<T>(c["targets"], shape);
        const auto result = compute_loss(task, logits, targets);
        CHECK(std::abs(result.value - c["loss"].get<double>()) <= tolerance * std::max(1.0, std::abs(c["loss"].get<double>())));
        CHECK(max_abs_diff(result.grad_logits.values(), tensor_from_json<double>(c["grad"], shape).values()) <= tolerance);
    }
}

TEST_CASE("losses reject targets that do not fit the task, naming the sample")
{
    tensor<double> logits({2, 3});
    tensor<double> classes({2});
    classes[1] = 3;
    CHECK_THROWS_WITH_AS(compute_loss(task_type::multiclass, logits, classes), doctest::Contains("sample 1: class 3"),
                         input_error);
    classes[1] = 0.5;
    CHECK_THROWS_AS(compute_loss(task_type::multiclass, logits, classes), input_error);
    tensor<double> labels({2, 3});
    labels[4] = 2;
    CHECK_THROWS_WITH_AS(compute_loss(task_type::multilabel, logits, labels), doctest::Contains("sample 1: target 2"),
                         input_error);
    CHECK_THROWS_AS(compute_loss(task_type::multilabel, logits, tensor<double>({2, 2})), shape_error);
    CHECK_THROWS_AS(compute_loss(task_type::binary, logits, tensor<double>({2, 3})), shape_error);
    tensor<double> values({2, 3});
    values[0] = NAN;
    CHECK_THROWS_WITH_AS(compute_loss(task_type::regression, logits, values), doctest::Contains("sample 0"), input_error);
}

TEST_CASE_TEMPLATE("AdamW with warm-up, decay, clipping and no decay on biases and LayerNorm follows PyTorch", T, float, double)
{
    const double tolerance = std::is_same_v<T, float> ? 1e-6 : 1e-13;
    const nlohmann::json& r = reference()["adamw"];
    named_tensors<T> params, grads;
    for (const auto& item : r["shapes"].items()) {
        const shape_t shape = item.value().get<shape_t>();
        params.tensors[item.key()] = tensor_from_json<T>(r["initial"][item.key()], shape);
        grads.tensors[item.key()] = tensor<T>(shape);
    }
    adamw<T> optimizer({.weight_decay = r["weight_decay"].get<double>()});
    const auto warmup = r["warmup"].get<std::size_t>(), total = r["total"].get<std::size_t>();
    for (std::size_t step = 0; step < total; ++step) {
        CAPTURE(step);
        const nlohmann::json& expected = r["steps"][step];
        for (auto& [name, g] : grads.tensors) g = tensor_from_json<T>(expected["grads"][name], g.shape());
        const double norm = clip_gradient_norm<T>(grads, r["max_norm"].get<double>());
        CHECK(norm == doctest::Approx(expected["norm"].get<double>()).epsilon(tolerance));
        const double lr = r["lr"].get<double>() * linear_schedule(step, warmup, total);
        CHECK(lr == doctest::Approx(expected["lr"].get<double>()).epsilon(1e-15));
        optimizer.step(params, grads, lr);
        for (auto& entry : params.tensors) {
            CAPTURE(entry.first);
            const auto& p = entry.second;
            CHECK(max_abs_diff(p.values(), tensor_from_json<double>(expected["params"][entry.first], p.shape()).values()) <=
                  tolerance);
        }
    }
    CHECK(optimizer.steps() == total);
    CHECK(exempt_from_weight_decay("encoder.layer.0.output.LayerNorm.weight"));
    CHECK(exempt_from_weight_decay("head.bias"));
    CHECK_FALSE(exempt_from_weight_decay("head.weight"));
}

TEST_CASE_TEMPLATE("clipping's sums of squares match a plain loop, on any thread count", T, float, double)
{
    random_generator rng(11);
    // Lengths around the vector body's step (4 batches of up to 8 doubles) and past one chunk of work.
    for (const std::size_t n : {0ul, 1ul, 7ul, 8ul, 31ul, 32ul, 33ul, 1000ul, parameter_chunk + 77}) {
        CAPTURE(n);
        tensor<T> x({std::max<std::size_t>(n, 1)});
        for (auto& v : x.values()) v = static_cast<T>(rng.normal() * 3.0);
        long double plain = 0;
        for (std::size_t i = 0; i < n; ++i) plain += static_cast<long double>(x[i]) * x[i];
        const double fast = dm2s2::detail::sum_of_squares(x.data(), n);
        // Summing n squares in any order errs by at most about n units in the last place of the sum;
        // a value left out or counted twice would be off by about sum / n.
        CHECK(std::abs(fast - static_cast<double>(plain)) <= double(n + 1) * 0x1p-53 * static_cast<double>(plain));
    }
    named_tensors<T> serial, threaded;
    for (const char* name : {"a", "b"}) {
        tensor<T> g({3 * parameter_chunk + 5});
        for (auto& v : g.values()) v = static_cast<T>(rng.normal());
        serial.tensors[name] = g;
        threaded.tensors[name] = g;
    }
    const double one = clip_gradient_norm<T>(serial, 1.0);
    const double two = clip_gradient_norm<T>(threaded, 1.0, cpu_backend({.threads = 2}));
    CHECK(one == two);
    CHECK(max_abs_diff(serial.tensors["a"].values(), threaded.tensors["a"].values()) == 0.0);
}

TEST_CASE("clipping rejects non-finite gradients, naming the parameter")
{
    named_tensors<double> grads;
    grads.tensors["w"] = tensor<double>({2});
    grads.tensors["w"][1] = INFINITY;
    CHECK_THROWS_WITH_AS(clip_gradient_norm<double>(grads, 1.0), doctest::Contains("'w'"), input_error);
}

TEST_CASE_TEMPLATE("metrics match scikit-learn for every task", T, float, double)
{
    for (const auto task : {task_type::multiclass, task_type::binary, task_type::multilabel, task_type::regression}) {
        const std::string t(to_string(task));
        CAPTURE(t);
        const nlohmann::json& c = reference()["metrics"][t];
        const shape_t shape = c["shape"].get<shape_t>();
        const auto logits = tensor_from_json<T>(c["logits"], shape);
        const auto targets = task == task_type::multiclass ? tensor_from_json<T>(c["targets"], {shape[0]})
                                                           : tensor_from_json<T>(c["targets"], shape);
        const auto metrics = evaluate_metrics(task, logits, targets);
        CHECK(metrics.size() == c["metrics"].size());
        for (const auto& item : c["metrics"].items()) {
            CAPTURE(item.key());
            REQUIRE(metrics.count(item.key()) == 1);
            CHECK(metrics.at(item.key()) ==
                  doctest::Approx(item.value().get<double>()).epsilon(std::is_same_v<T, float> ? 1e-6 : 1e-12));
        }
    }
}

TEST_CASE("ROC-AUC is absent when the targets hold one class only")
{
    tensor<double> logits({3, 1}), targets({3, 1}, 1.0);
    logits[0] = 0.5;
    const auto metrics = evaluate_metrics(task_type::binary, logits, targets);
    CHECK(metrics.count("roc_auc") == 0);
    CHECK(metrics.at("accuracy") == doctest::Approx(1.0));
}
