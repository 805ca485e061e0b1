// The CUDA backend on whole models, beyond the kernel and model tests it shares with every backend
// (test_backends.cpp, test_device_model.cpp): HuggingFace parity of the encoder on the device, the
// same bits from run to run for logits, explanations and gradients, and a training run resumed from a
// checkpoint ending where an uninterrupted one does.

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "dm2s2/backend/cuda/cuda_backend.hpp"
#include "dm2s2/io/hf_bert.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/train/trainer.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
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

/// Every parameter of a model on the GPU, by name, on the host.
std::map<std::string, tensor<float>> parameters_of(model<float, cuda_backend>& m)
{
    std::map<std::string, tensor<float>> out;
    m.for_each_parameter(
        [&](const std::string& name, tensor<float, cuda_space>& t) { out.emplace(name, m.backend().download(t)); });
    return out;
}

}  // namespace

TEST_CASE("HF BertModel parity on the GPU: double within 1e-10, float within 2e-5 of the f64 golden")
{
    check_parity_on_gpu<double>(1e-10);
    check_parity_on_gpu<float>(2e-5);
}

TEST_CASE_TEMPLATE("a model on the GPU gives the same bits from run to run: logits, explanations, gradients", T, float, double)
{
    const auto records = random_records(four_modalities(), 7, 31);
    for (const auto& variant : pooling_variants()) {
        CAPTURE(variant.first);
        const model<T, cpu_backend> host(four_modalities(), variant.second, 5);
        const model<T, cuda_backend> device(host, cuda_backend{});
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
