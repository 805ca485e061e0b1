// Inference throughput of the encoder's building blocks and of a whole DM²S² forward pass.
// DM2S2_BENCH_SCALE=tiny shrinks every size so that CI can run each benchmark once as a smoke test.

#include <cstdlib>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <dm2s2/dm2s2.hpp>

#include "bench_support.hpp"

namespace {

using dm2s2_bench::tiny;

template <class T>
void gemm(benchmark::State& state)
{
    const std::size_t n = tiny() ? 32 : static_cast<std::size_t>(state.range(0));
    const std::size_t m = tiny() ? 32 : 1024;
    dm2s2::random_generator rng(1);
    std::vector<T> a(m * n), b(n * n), c(m * n);
    for (auto& v : a) v = static_cast<T>(rng.normal());
    for (auto& v : b) v = static_cast<T>(rng.normal());
    const dm2s2::cpu_backend backend;
    for (auto _ : state) {
        backend.gemm(dm2s2::transpose::no, dm2s2::transpose::yes, m, n, n, T(1), a.data(), n, b.data(), n, T(0), c.data(), n);
        benchmark::DoNotOptimize(c.data());
    }
    state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(m) * double(n) * double(n),
                                                   benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

template <class T>
void dm2s2_forward(benchmark::State& state)
{
    using dm2s2::modality_kind;
    const dm2s2::schema schema({{.name = "text", .kind = modality_kind::tokens, .max_length = 64},
                                {.name = "image", .kind = modality_kind::dense, .max_length = 36, .dim = 128},
                                {.name = "tags", .kind = modality_kind::categorical, .max_length = 8, .categories = 100}});
    dm2s2::model_config config;
    config.bert.hidden_size = tiny() ? 32 : 256;
    config.bert.num_hidden_layers = tiny() ? 1 : 4;
    config.bert.num_attention_heads = 4;
    config.bert.intermediate_size = 4 * config.bert.hidden_size;
    config.bert.max_position_embeddings = 128;
    const dm2s2::model<T> model(schema, config, 1);
    dm2s2::random_generator rng(2);
    std::vector<dm2s2::sequence_set> batch;
    for (std::int64_t b = 0; b < state.range(0); ++b) {
        dm2s2::sequence_set r(schema);
        std::vector<std::int64_t> text(1 + rng.below(tiny() ? 8 : 64));
        for (auto& t : text) t = static_cast<std::int64_t>(1000 + rng.below(20000));
        std::vector<float> image((1 + rng.below(tiny() ? 4 : 36)) * 128);
        for (auto& v : image) v = static_cast<float>(rng.normal());
        std::vector<std::int64_t> tags(1 + rng.below(8));
        for (auto& t : tags) t = static_cast<std::int64_t>(rng.below(100));
        r.set_tokens("text", text).set_dense("image", image).set_categorical("tags", tags);
        batch.push_back(std::move(r));
    }
    for (auto _ : state) benchmark::DoNotOptimize(model.forward(batch).logits.data());
    state.counters["samples/s"] = benchmark::Counter(double(state.range(0)), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(gemm<float>)->Arg(768)->Unit(benchmark::kMillisecond);
BENCHMARK(gemm<double>)->Arg(768)->Unit(benchmark::kMillisecond);
BENCHMARK(dm2s2_forward<float>)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond);
BENCHMARK(dm2s2_forward<double>)->Arg(8)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
