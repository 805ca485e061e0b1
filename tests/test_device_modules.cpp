// Modules whose parameters live in the staging space: an encoder layer uploaded from a host one runs
// its forward and backward passes on the guarded staging backend (any host access to its memory would
// fault), gives the host layer's numbers, and makes no transfer between the host and the backend's
// memory on the way.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <doctest/doctest.h>

#include "dm2s2/backend/cpu/cpu_backend.hpp"
#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/backend/staging/staging_backend.hpp"
#include "dm2s2/nn/encoder.hpp"

using namespace dm2s2;

namespace {

/// The largest |a − b| / (1 + |b|) over two host tensors of the same size.
template <class T>
double largest_relative_difference(const tensor<T>& a, const tensor<T>& b)
{
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = std::abs(static_cast<double>(a[i]) - b[i]) / (1 + std::abs(static_cast<double>(b[i])));
        worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
    return worst;
}

bert_config tiny_layer_config(bool dropout)
{
    bert_config c;
    c.hidden_size = 8;
    c.num_attention_heads = 2;
    c.intermediate_size = 16;
    c.hidden_dropout_prob = dropout ? 0.2 : 0.0;
    c.attention_probs_dropout_prob = dropout ? 0.1 : 0.0;
    return c;
}

}  // namespace

TEST_CASE_TEMPLATE("an encoder layer in staging memory matches the host layer, forward and backward, with no transfer", T, float,
                   double)
{
    const double tolerance = std::is_same_v<T, float> ? 2e-5 : 1e-12;
    for (const bool dropout : {false, true})
        for (const bool padded : {false, true}) {
            CAPTURE(dropout);
            CAPTURE(padded);
            const bert_config config = tiny_layer_config(dropout);
            nn::encoder_layer<T> host(config);
            random_generator init(3);
            host.initialize(init, 0.3);
            // Padding-free sequences of 3, 1 and 4 rows, or two padded sequences of 4 with masked keys.
            const batch_layout layout = padded ? batch_layout{.batch = 2, .length = 4} : batch_layout::from_lengths({3, 1, 4});
            const std::size_t rows = layout.rows(), h = config.hidden_size;
            tensor<T> x({rows, h}), dy({rows, h});
            random_generator data(4);
            for (auto& v : x.values()) v = static_cast<T>(data.normal());
            for (auto& v : dy.values()) v = static_cast<T>(data.normal());
            tensor<std::uint8_t> keep({rows}, std::uint8_t{1});
            keep[3] = keep[6] = keep[7] = 0;
            const std::uint8_t* host_keep = padded ? keep.data() : nullptr;

            // The host layer on the plain-loop backend, and its gradients.
            const reference_backend reference;
            nn::encoder_layer_cache<T> host_cache;
            tensor<T> y({rows, h}, uninitialized), dx({rows, h}, uninitialized);
            random_generator host_rng(5);
            host.forward(reference, x.data(), layout, host_keep, y.data(), nullptr, &host_cache, dropout ? &host_rng : nullptr);
            auto host_grad = zeros_like(host);
            host.backward(reference, host_cache, layout, std::as_const(dy).data(), dx.data(), host_grad);

            // The same layer uploaded to guarded staging memory.
            const staging_backend staging(staging_options{.guard = true});
            const auto upload = [&](const tensor<T>& t) { return staging.upload(t); };
            const nn::encoder_layer<T, staging_space> device(host, upload);
            auto device_grad = nn::encoder_layer<T, staging_space>(zeros_like(host), upload);
            const auto dev_x = staging.upload(x), dev_dy = staging.upload(dy);
            const auto dev_keep = staging.upload(keep);
            tensor<T, staging_space> dev_y({rows, h}, uninitialized), dev_dx({rows, h}, uninitialized);
            nn::encoder_layer_cache<T, staging_space> device_cache;
            random_generator device_rng(5);
            const transfer_counts before = staging.transfers();
            device.forward(staging, dev_x.data(), layout,
                           padded ? dev_keep.data() : device_ptr<const std::uint8_t, staging_space>{}, dev_y.data(), nullptr,
                           &device_cache, dropout ? &device_rng : nullptr);
            device.backward(staging, device_cache, layout, dev_dy.data(), dev_dx.data(), device_grad);
            CHECK(staging.transfers() == before);  // the layer never crossed to the host

            CHECK(largest_relative_difference(staging.download(dev_y), y) <= tolerance);
            CHECK(largest_relative_difference(staging.download(dev_dx), dx) <= tolerance);
            std::vector<const tensor<T>*> expected;
            host_grad.for_each_parameter("", [&](const std::string&, tensor<T>& t) { expected.push_back(&t); });
            std::size_t i = 0;
            device_grad.for_each_parameter("", [&](const std::string& name, tensor<T, staging_space>& t) {
                CAPTURE(name);
                CHECK(largest_relative_difference(staging.download(t), *expected.at(i++)) <= tolerance);
            });
            CHECK(i == expected.size());
        }
}

TEST_CASE("the encoder stack in staging memory matches the host stack, its trace included, with no transfer")
{
    using T = double;
    bert_config config = tiny_layer_config(true);
    config.num_hidden_layers = 2;
    nn::encoder<T> host(config);
    random_generator init(6);
    host.initialize(init, 0.3);
    const batch_layout layout = batch_layout::from_lengths({2, 5, 3});
    const std::size_t rows = layout.rows(), h = config.hidden_size;
    tensor<T> hidden({rows, h}), dy({rows, h});
    random_generator data(7);
    for (auto& v : hidden.values()) v = data.normal();
    for (auto& v : dy.values()) v = data.normal();

    const reference_backend reference;
    const staging_backend staging(staging_options{.guard = true});
    const auto upload = [&](const tensor<T>& t) { return staging.upload(t); };
    const nn::encoder<T, staging_space> device(host, upload);
    auto device_grad = nn::encoder<T, staging_space>(zeros_like(host), upload);
    auto device_hidden = staging.upload(hidden), device_dy = staging.upload(dy);

    nn::encoder_trace<T> host_trace;
    std::vector<nn::encoder_layer_cache<T>> host_caches;
    random_generator host_rng(8), device_rng(8);
    host.forward(reference, hidden, layout, nullptr, &host_trace, &host_caches, &host_rng);
    auto host_grad = zeros_like(host);
    host.backward(reference, host_caches, layout, dy, host_grad);

    nn::encoder_trace<T, staging_space> device_trace;
    std::vector<nn::encoder_layer_cache<T, staging_space>> device_caches;
    const transfer_counts before = staging.transfers();
    device.forward(staging, device_hidden, layout, nullptr, &device_trace, &device_caches, &device_rng);
    device.backward(staging, device_caches, layout, device_dy, device_grad);
    CHECK(staging.transfers() == before);

    CHECK(largest_relative_difference(staging.download(device_hidden), hidden) <= 1e-12);
    CHECK(largest_relative_difference(staging.download(device_dy), dy) <= 1e-12);
    REQUIRE(device_trace.hidden_states.size() == 3);
    REQUIRE(device_trace.attentions.size() == 2);
    for (std::size_t i = 0; i < 3; ++i)
        CHECK(largest_relative_difference(staging.download(device_trace.hidden_states[i]), host_trace.hidden_states[i]) <= 1e-12);
    for (std::size_t i = 0; i < 2; ++i)
        CHECK(largest_relative_difference(staging.download(device_trace.attentions[i]), host_trace.attentions[i]) <= 1e-12);
    std::vector<const tensor<T>*> expected;
    host_grad.for_each_parameter("", [&](const std::string&, tensor<T>& t) { expected.push_back(&t); });
    std::size_t i = 0;
    device_grad.for_each_parameter("", [&](const std::string& name, tensor<T, staging_space>& t) {
        CAPTURE(name);
        CHECK(largest_relative_difference(staging.download(t), *expected.at(i++)) <= 1e-12);
    });
    CHECK(i == expected.size());
}
