// The workloads of benchmarks/README.md, timed on the library side:
//   W1  inference of DM²S² with a BERT-base encoder on a batch of 8 three-modality records
//       (text ≤ 64 tokens, dense ≤ 36 rows of dim 2048, categorical ≤ 8; packed length ≤ 128),
//       fp32 or bf16 products, 1 or 2 threads, padding-free or padded, weights packed once for
//       inference (`model::pack_weights`; for bf16, rounded to bf16 as they are packed) or plain;
//   W2  one training step (forward, cross-entropy, backward, clipping, AdamW) on W1's batch;
//   W3  a small model (4 layers, hidden 256, 4 heads) at batch 64, inference and training;
//   W4  latency: batch 1…64 of W1 records, and one text sequence of packed length 32…512;
// and building W1's model (initialising its parameters, packing its weights or not).
// W3's and W4's inference runs with packed weights (bf16: rounded), and W4's batches also with plain ones.
// benchmarks/torch_workloads.py runs the PyTorch side on the same shapes; benchmarks/compare.sh runs
// both and prints the ratios. `--w1_lengths=FILE` writes the packed lengths of W1's batch (JSON) for
// the PyTorch side and exits. DM2S2_BENCH_SCALE=tiny shrinks every size for CI's smoke run. Every
// workload runs once untimed before its timed iterations, as the PyTorch side warms up before timing.

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include <dm2s2/dm2s2.hpp>

#include "bench_support.hpp"

namespace {

using dm2s2_bench::tiny;
using namespace dm2s2_bench::workloads;

dm2s2::cpu_backend backend_for_args(const benchmark::State& state)
{
    return dm2s2::cpu_backend({.threads = static_cast<std::size_t>(state.range(0)),
                               .precision = state.range(1) ? dm2s2::matmul_precision::bf16 : dm2s2::matmul_precision::fp32});
}

/// Runs `work` once untimed, then once per iteration: every timing is of a warm call, as on the PyTorch
/// side (torch_workloads.py warms up first), not of a first call's one-off costs (AdamW allocating its
/// moments, buffers growing, pages faulting in). compare.py times one iteration per process.
template <class Work>
void time_warm(benchmark::State& state, Work&& work)
{
    work();
    for (auto _ : state) work();
}

void report(benchmark::State& state, const dm2s2::packed_batch& batch)
{
    std::size_t real = 0;
    for (const auto len : batch.lengths) real += len;
    state.counters["samples/s"] = benchmark::Counter(double(batch.layout.batch), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["tokens"] = double(real);
    state.counters["padded_length"] = double(batch.layout.length);
}

/// Arguments: threads, bf16, padding-free, packed weights (for bf16, rounded to bf16 once as they are
/// packed: `weight_rounding::bf16`; the products round plain weights on every call).
void W1_inference(benchmark::State& state)
{
    const auto schema = w1_schema();
    dm2s2::model<float> model(schema, bert_base(), 1, backend_for_args(state));
    model.set_padding_free(state.range(2) != 0);
    if (state.range(3) != 0) model.pack_weights(dm2s2::weight_rounding::bf16);
    const auto batch = model.pack(random_records(schema, w1_batch, w1_seed));
    time_warm(state, [&] { benchmark::DoNotOptimize(model.forward(batch).logits.data()); });
    report(state, batch);
}

/// One training step of `config` on `count` records. Arguments: threads, bf16 (ignored: fp32 only).
void train_step_of(benchmark::State& state, const dm2s2::model_config& config, std::size_t count)
{
    const auto schema = w1_schema();
    dm2s2::model<float> model(schema, config, 1, dm2s2::cpu_backend({.threads = static_cast<std::size_t>(state.range(0))}));
    dm2s2::adamw<float> optimizer;
    dm2s2::random_generator dropout(3);
    const auto batch = model.pack(random_records(schema, count, w1_seed));
    dm2s2::tensor<float> targets({count});
    for (std::size_t i = 0; i < count; ++i) targets[i] = static_cast<float>(i % 4);
    auto gradients = model.zero_gradients();  // reused, as the trainer does
    time_warm(state, [&] {
        benchmark::DoNotOptimize(dm2s2::train_step(model, optimizer, std::span(&batch, 1), dm2s2::task_type::multiclass,
                                                   std::span<const dm2s2::tensor<float>>(&targets, 1),
                                                   {.learning_rate = 1e-5, .dropout_rng = &dropout}, gradients)
                                     .loss);
    });
    report(state, batch);
}

void W2_train_step(benchmark::State& state)
{
    train_step_of(state, bert_base(), w1_batch);
}
void W3_train_step(benchmark::State& state)
{
    train_step_of(state, small_model(), tiny() ? 4 : 64);
}

/// Arguments: threads, bf16.
void W3_inference(benchmark::State& state)
{
    const auto schema = w1_schema();
    dm2s2::model<float> model(schema, small_model(), 1, backend_for_args(state));
    model.pack_weights(dm2s2::weight_rounding::bf16);
    const auto batch = model.pack(random_records(schema, tiny() ? 4 : 64, w1_seed));
    time_warm(state, [&] { benchmark::DoNotOptimize(model.forward(batch).logits.data()); });
    report(state, batch);
}

/// Arguments: threads, batch size (the first records of W3's), packed weights.
void W4_batch(benchmark::State& state)
{
    const auto schema = w1_schema();
    dm2s2::model<float> model(schema, bert_base(), 1, dm2s2::cpu_backend({.threads = static_cast<std::size_t>(state.range(0))}));
    if (state.range(2) != 0) model.pack_weights();
    const auto batch = model.pack(random_records(schema, static_cast<std::size_t>(state.range(1)), w1_seed));
    time_warm(state, [&] { benchmark::DoNotOptimize(model.forward(batch).logits.data()); });
    report(state, batch);
}

/// Arguments: threads, packed length (one text modality of length − 2 tokens).
void W4_length(benchmark::State& state)
{
    const auto length = static_cast<std::size_t>(tiny() ? 16 : state.range(1));
    const dm2s2::schema schema({{.name = "text", .kind = dm2s2::modality_kind::tokens, .max_length = 512}});
    auto config = bert_base();
    config.bert.max_position_embeddings = 514;
    dm2s2::model<float> model(schema, config, 1, dm2s2::cpu_backend({.threads = static_cast<std::size_t>(state.range(0))}));
    model.pack_weights();
    dm2s2::sequence_set record(schema);
    std::vector<std::int64_t> text(length - 2);
    for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<std::int64_t>(1000 + 37 * i % 29000);
    record.set_tokens("text", text);
    const auto batch = model.pack(std::vector{record});
    time_warm(state, [&] { benchmark::DoNotOptimize(model.forward(batch).logits.data()); });
    report(state, batch);
}

/// W5: W1's encoder and batch size with no padding anywhere: W1_batch records of one text modality, each
/// packed to W1's padded length, so that a padded run does the same work. Arguments: threads, bf16.
void W5_equal_lengths(benchmark::State& state)
{
    const std::size_t length =
        dm2s2::pack(w1_schema(), random_records(w1_schema(), w1_batch, w1_seed), {}).layout.length;  // W1's padded length
    const dm2s2::schema schema({{.name = "text", .kind = dm2s2::modality_kind::tokens, .max_length = 512}});
    dm2s2::model<float> model(schema, bert_base(), 1, backend_for_args(state));
    model.pack_weights(dm2s2::weight_rounding::bf16);
    std::vector<dm2s2::sequence_set> records;
    for (std::size_t r = 0; r < w1_batch; ++r) {
        dm2s2::sequence_set record(schema);
        std::vector<std::int64_t> text(length - 2);  // with [CLS] and [SEP], `length` rows
        for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<std::int64_t>(1000 + (37 * i + 101 * r) % 29000);
        record.set_tokens("text", text);
        records.push_back(std::move(record));
    }
    const auto batch = model.pack(records);
    if (batch.layout.length != length) state.SkipWithError("W5: the records did not pack to W1's padded length");
    time_warm(state, [&] { benchmark::DoNotOptimize(model.forward(batch).logits.data()); });
    report(state, batch);
}

/// Building W1's model: allocating and initialising its 110 M BERT-base parameters (N(0, 0.02) draws
/// for every weight) and the pooling. Argument: whether the encoder's weights are then packed.
void W1_construction(benchmark::State& state)
{
    const auto schema = w1_schema();
    for (auto _ : state) {
        dm2s2::model<float> model(schema, bert_base(), 1, dm2s2::cpu_backend({.threads = 2}));
        if (state.range(0) != 0) model.pack_weights();
        benchmark::DoNotOptimize(model.pooling().head.bias.data());
    }
}

/// Writes the packed lengths of W1's batch and of 64 records drawn the same way (W3; W4's batches are
/// their first records), and the encoder's shape, for the PyTorch side.
int write_w1_lengths(const std::string& path)
{
    const auto schema = w1_schema();
    const auto lengths_of = [&](std::size_t count) {
        std::string list;
        for (const auto len : dm2s2::pack(schema, random_records(schema, count, w1_seed), {}).lengths)
            list += (list.empty() ? "" : ", ") + std::to_string(len);
        return "[" + list + "]";
    };
    std::ofstream out(path);
    out << "{\"lengths\": " << lengths_of(w1_batch) << ", \"w3_lengths\": " << lengths_of(64);
    const auto c = bert_base().bert;
    out << ", \"hidden\": " << c.hidden_size << ", \"layers\": " << c.num_hidden_layers
        << ", \"heads\": " << c.num_attention_heads << ", \"intermediate\": " << c.intermediate_size
        << ", \"vocab\": " << c.vocab_size << ", \"dense_dim\": " << dense_dim() << ", \"classes\": 4}\n";
    if (!out.flush()) {
        std::cerr << path << ": cannot write\n";
        return 1;
    }
    return 0;
}

}  // namespace

BENCHMARK(W1_inference)
    ->ArgNames({"threads", "bf16", "padding_free", "packed_weights"})
    ->Args({1, 0, 1, 1})
    ->Args({2, 0, 1, 1})
    ->Args({1, 0, 1, 0})
    ->Args({2, 0, 1, 0})
    ->Args({1, 0, 0, 1})
    ->Args({2, 0, 0, 1})
    ->Args({1, 1, 1, 1})
    ->Args({2, 1, 1, 1})
    ->Args({1, 1, 1, 0})
    ->Args({2, 1, 1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(W2_train_step)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(W3_inference)
    ->ArgNames({"threads", "bf16"})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(W3_train_step)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(W4_batch)
    ->ArgNames({"threads", "batch", "packed_weights"})
    ->ArgsProduct({{2}, {1, 2, 4, 8, 16, 32, 64}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(W4_length)
    ->ArgNames({"threads", "length"})
    ->ArgsProduct({{2}, {32, 64, 128, 256, 512}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(W5_equal_lengths)
    ->ArgNames({"threads", "bf16"})
    ->ArgsProduct({{1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(W1_construction)->ArgNames({"packed_weights"})->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv)
{
    constexpr std::string_view flag = "--w1_lengths=";
    for (int i = 1; i < argc; ++i)
        if (std::string_view arg = argv[i]; arg.starts_with(flag)) return write_w1_lengths(std::string(arg.substr(flag.size())));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
