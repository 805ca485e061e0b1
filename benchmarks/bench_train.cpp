// Time of one training step (forward with caches, cross-entropy, backward, clipping, AdamW) on
// planted-task batches: the small configuration (2 layers, H=64) and a wider one (4 layers, H=256).
// benchmarks/torch_train_step.py times the same steps in PyTorch. DM2S2_BENCH_SCALE=tiny shrinks the
// sizes so that CI can run each benchmark once.

#include <cstdlib>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <dm2s2/train/planted_task.hpp>
#include <dm2s2/dm2s2.hpp>

#include "bench_support.hpp"

namespace {

using dm2s2_bench::tiny;

/// Arguments: batch size, hidden size, layers.
void train_step(benchmark::State& state)
{
    const auto batch_size = static_cast<std::size_t>(tiny() ? 4 : state.range(0));
    auto config = dm2s2::planted_task::config();
    config.bert.hidden_size = tiny() ? 16 : static_cast<std::size_t>(state.range(1));
    config.bert.intermediate_size = 2 * config.bert.hidden_size;
    config.bert.num_hidden_layers = tiny() ? 1 : static_cast<std::size_t>(state.range(2));
    const dm2s2::planted_task data(batch_size, 1);
    dm2s2::model<float> model(data.modalities, config, 1);
    dm2s2::adamw<float> optimizer;
    dm2s2::random_generator dropout(2);
    const auto batch = model.pack(data.records);
    const auto targets = data.targets<float>();
    for (auto _ : state)
        benchmark::DoNotOptimize(dm2s2::train_step(model, optimizer, batch, dm2s2::task_type::multiclass, targets,
                                                   {.learning_rate = 1e-4, .dropout_rng = &dropout})
                                     .loss);
    state.counters["samples/s"] = benchmark::Counter(double(batch_size), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["length"] = double(batch.layout.length);
}

}  // namespace

BENCHMARK(train_step)->Args({32, 64, 2})->Args({32, 256, 4})->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
