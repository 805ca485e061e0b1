// The CUDA backend on whole models, beyond the kernel and model tests it shares with every backend
// (test_backends.cpp, test_device_model.cpp): HuggingFace parity of the encoder on the device, tf32
// and bf16 products within their bounds of the CPU's fp32 model, the same bits from run to run for
// logits, explanations and gradients, and a training run resumed from a checkpoint ending where an
// uninterrupted one does.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include "dm2s2/backend/cuda/cuda_backend.hpp"
#include "dm2s2/io/hf_bert.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/train/trainer.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::max_relative_diff;
using namespace dm2s2::testing;

namespace {

template <class T>
void check_parity_on_gpu(double tolerance)
{
    check_hf_parity(bert_model<T, cuda_backend>(load_hf_bert<T, cpu_backend>(tiny_bert_dir()), cuda_backend{}), tolerance);
}

/// Whether two host tensors hold the same bits.
template <class T>
bool same_bits(const tensor<T>& a, const tensor<T>& b)
{
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

/// Every parameter (or gradient) of a model on the GPU, by name, on the host.
template <class Visitable>
std::map<std::string, tensor<float>> parameters_of(const cuda_backend& backend, Visitable& m)
{
    std::map<std::string, tensor<float>> out;
    m.for_each_parameter([&](const std::string& name, tensor<float, cuda_space>& t) { out.emplace(name, backend.download(t)); });
    return out;
}

std::map<std::string, tensor<float>> parameters_of(model<float, cuda_backend>& m)
{
    return parameters_of(m.backend(), m);
}

/// Every value of a name → tensor map, in name order.
std::vector<float> flattened(const std::map<std::string, tensor<float>>& tensors)
{
    std::vector<float> out;
    for (const auto& entry : tensors) out.insert(out.end(), entry.second.values().begin(), entry.second.values().end());
    return out;
}

}  // namespace

TEST_CASE("HF BertModel parity on the GPU: double within 1e-10, float within 2e-5 of the f64 golden")
{
    check_parity_on_gpu<double>(1e-10);
    check_parity_on_gpu<float>(2e-5);
}

TEST_CASE("tf32 and bf16 products on the GPU round their operands: 256³ products within 2e-3 and 2e-2 of fp32, and not fp32")
{
    random_generator rng(19);
    constexpr std::size_t n = 256;
    std::vector<float> a(n * n), b(n * n);
    for (auto& v : a) v = static_cast<float>(rng.normal());
    for (auto& v : b) v = static_cast<float>(rng.normal());
    std::vector<double> exact(n * n, 0.0);  // the fp32 operands' product, in double
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t p = 0; p < n; ++p)
            for (std::size_t j = 0; j < n; ++j) exact[i * n + j] += static_cast<double>(a[i * n + p]) * b[p * n + j];
    for (const auto precision : all_matmul_precisions) {
        CAPTURE(to_string(precision));
        const cuda_backend gpu(cuda_options{.precision = precision});
        tensor<float, cuda_space> da({n, n}, uninitialized), db({n, n}, uninitialized), dc({n, n}, uninitialized);
        gpu.upload(a.data(), a.size(), da.data());
        gpu.upload(b.data(), b.size(), db.data());
        gpu.gemm<float>(transpose::no, transpose::no, n, n, n, 1.0f, da.data(), n, db.data(), n, 0.0f, dc.data(), n);
        const double difference = max_relative_diff(gpu.download(dc).values(), exact);
        MESSAGE(to_string(precision) << " product differs from the exact one by " << difference << " of the largest value");
        switch (precision) {
        case matmul_precision::fp32: CHECK(difference <= 1e-6); break;
        case matmul_precision::tf32: CHECK((difference > 2e-5 && difference <= 2e-3)); break;
        case matmul_precision::bf16: CHECK((difference > 2e-4 && difference <= 2e-2)); break;
        }
    }
}

TEST_CASE(
    "tf32 and bf16 products on the GPU stay within 5e-3 and 5e-2 of the CPU's fp32 model: logits, explanations, "
    "gradients, three training steps")
{
    const auto records = random_records(four_modalities(), 7, 17);
    for (const auto precision : {matmul_precision::tf32, matmul_precision::bf16}) {
        // bf16's bound is 5e-2: on the CPU, whose bf16 mode rounds the attention's and the poolings'
        // products too, the logits of the no_intra and no_inter poolings move by more than 2e-2.
        const double bound = precision == matmul_precision::tf32 ? 5e-3 : 5e-2;
        CAPTURE(to_string(precision));
        const cuda_backend rounded_backend(cuda_options{.precision = precision});
        REQUIRE(rounded_backend.precision() == precision);
        for (const auto& variant : pooling_variants()) {
            CAPTURE(variant.first);
            const model<float, cpu_backend> host(four_modalities(), variant.second, 5);
            const model<float, cuda_backend> rounded(host, rounded_backend);
            const auto batch = host.pack(records);
            const bool explain = explains(variant.second.pooling);

            model_cache<float> host_cache;
            model_cache<float, cuda_space> cache;
            const auto expected = host.forward(batch, explain, &host_cache);
            const auto got = rounded.forward(batch, explain, &cache);
            const double logits = max_relative_diff(got.logits.values(), expected.logits.values());
            MESSAGE(to_string(precision) << " logits (" << variant.first << ") differ from the CPU's fp32 by " << logits
                                         << " of the largest");
            CHECK(logits <= bound);
            if (explain) {
                CHECK(max_relative_diff(got.explanation.alpha, expected.explanation.alpha) <= bound);
                CHECK(max_relative_diff(got.explanation.beta, expected.explanation.beta) <= bound);
                CHECK(max_relative_diff(got.explanation.gamma, expected.explanation.gamma) <= bound);
            }

            tensor<float> probe(expected.logits.shape());
            random_generator rng(18);
            for (auto& v : probe.values()) v = static_cast<float>(rng.normal());
            auto host_grads = host.zero_gradients();
            auto grads = rounded.zero_gradients();
            host.backward(host_cache, probe, host_grads);
            rounded.backward(cache, rounded.backend().upload(probe), grads);
            std::map<std::string, tensor<float>> expected_grads;
            host_grads.for_each_parameter([&](const std::string& name, tensor<float>& t) { expected_grads.emplace(name, t); });
            // One scale for the whole model, as the fp32 model tests use. DM²S's max-pool sends each
            // gradient to the largest element, which rounding may change: its gradients are not compared.
            if (variant.second.pooling != pooling_kind::dm2s)
                CHECK(max_relative_diff(flattened(parameters_of(rounded.backend(), grads)), flattened(expected_grads)) <= bound);
        }

        const model_config config = small_config();
        model<float, cpu_backend> host(four_modalities(), config, 9);
        model<float, cuda_backend> device(host, rounded_backend);
        adamw<float> host_optimizer;
        adamw<float, cuda_space> device_optimizer;
        const auto batch = host.pack(records);
        tensor<float> targets({records.size()});
        for (std::size_t i = 0; i < records.size(); ++i) targets[i] = static_cast<float>(i % config.num_outputs);
        for (int step = 0; step < 3; ++step) {
            CAPTURE(step);
            const auto a = train_step(host, host_optimizer, batch, task_type::multiclass, targets, {.learning_rate = 1e-3});
            const auto b = train_step(device, device_optimizer, batch, task_type::multiclass, targets, {.learning_rate = 1e-3});
            CHECK(std::abs(b.loss - a.loss) <= bound * std::abs(a.loss));
            CHECK(std::abs(b.gradient_norm - a.gradient_norm) <= bound * a.gradient_norm);
        }
    }
}

TEST_CASE_TEMPLATE(
    "a model on the GPU gives the same bits from run to run: logits, explanations, gradients (float in each "
    "precision)",
    T, float, double)
{
    const auto records = random_records(four_modalities(), 7, 31);
    std::vector<matmul_precision> precisions{matmul_precision::fp32};
    if constexpr (std::is_same_v<T, float>) precisions = {std::begin(all_matmul_precisions), std::end(all_matmul_precisions)};
    for (const auto precision : precisions)
        for (const auto& variant : pooling_variants()) {
            CAPTURE(to_string(precision));
            CAPTURE(variant.first);
            const model<T, cpu_backend> host(four_modalities(), variant.second, 5);
            const model<T, cuda_backend> device(host, cuda_backend(cuda_options{.precision = precision}));
            const auto batch = host.pack(records);
            const bool explain = explains(variant.second.pooling);

            std::vector<model_output<T>> outputs;
            std::vector<std::vector<tensor<T>>> gradients;
            for (int run = 0; run < 2; ++run) {
                model_cache<T, cuda_space> cache;
                outputs.push_back(device.forward(batch, explain, &cache));
                tensor<T> probe(outputs.back().logits.shape());
                random_generator rng(6);
                for (auto& v : probe.values()) v = static_cast<T>(rng.normal());
                auto grads = device.zero_gradients();
                device.backward(cache, device.backend().upload(probe), grads);
                std::vector<tensor<T>> on_host;
                grads.for_each_parameter(
                    [&](const std::string&, tensor<T, cuda_space>& g) { on_host.push_back(device.backend().download(g)); });
                gradients.push_back(std::move(on_host));
            }
            CHECK(same_bits(outputs[0].logits, outputs[1].logits));
            CHECK(same_bits(outputs[0].explanation.alpha, outputs[1].explanation.alpha));
            CHECK(same_bits(outputs[0].explanation.beta, outputs[1].explanation.beta));
            CHECK(same_bits(outputs[0].explanation.gamma, outputs[1].explanation.gamma));
            REQUIRE(gradients[0].size() == gradients[1].size());
            for (std::size_t i = 0; i < gradients[0].size(); ++i) {
                CAPTURE(i);
                CHECK(same_bits(gradients[0][i], gradients[1][i]));
            }
        }
}

TEST_CASE("a GPU training run resumed from a mid-epoch checkpoint ends bit-identical to an uninterrupted one")
{
    const auto schema = four_modalities();
    model_config config = small_config();
    config.bert.hidden_dropout_prob = config.bert.attention_probs_dropout_prob = 0.1;  // the generator is restored too
    dataset<float> train{random_records(schema, 40, 41), tensor<float>({40})};
    for (std::size_t i = 0; i < 40; ++i) train.targets[i] = static_cast<float>(i % config.num_outputs);
    const auto options = [](const std::filesystem::path& dir, std::size_t stop) {
        return trainer_options{.epochs = 2,
                               .batch_size = 8,
                               .accumulation = 2,
                               .learning_rate = 1e-3,
                               .seed = 7,
                               .output_dir = dir,
                               .stop_after_steps = stop,
                               .log = nullptr};
    };
    const auto whole_dir = scratch_dir("cuda_resume_whole"), split_dir = scratch_dir("cuda_resume_split");
    const model<float> host(schema, config, 1);

    model<float, cuda_backend> whole(host, cuda_backend{});
    trainer<float, cuda_backend> uninterrupted(whole, task_type::multiclass, options(whole_dir, 0));
    const auto expected = uninterrupted.fit(train);
    CHECK(expected.steps == 2 * 3);  // 5 batches of 8, two per step

    model<float, cuda_backend> first(host, cuda_backend{});
    trainer<float, cuda_backend> interrupted(first, task_type::multiclass, options(split_dir, 2));  // mid epoch 1
    CHECK(interrupted.fit(train).interrupted);

    model<float, cuda_backend> resumed(model<float>(schema, config, 99), cuda_backend{});  // other values: all restored
    trainer<float, cuda_backend> resuming(resumed, task_type::multiclass, options(split_dir, 0));
    const auto result = resuming.fit(train, nullptr, interrupted.checkpoint_path());
    CHECK(result.steps == expected.steps);
    const auto a = parameters_of(whole), b = parameters_of(resumed);
    REQUIRE(a.size() == b.size());
    for (const auto& entry : a) {
        CAPTURE(entry.first);
        CHECK(same_bits(entry.second, b.at(entry.first)));
    }
}
