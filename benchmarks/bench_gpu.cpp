// The GPU workload G1 on the library side: DM²S² with a BERT-base encoder on cuda_backend, a batch of
// 32 three-modality records of W1's schema (random lengths in every modality), timed in fp32 (TF32
// off) and with bf16 products (`matmul_precision`) as
//   gpu-infer-<p>  inference: the batch uploaded, the forward pass, the logits downloaded;
//   gpu-train-<p>  one training step: forward, cross-entropy, backward, clipping at 1.0, AdamW,
//                  dropout 0.1, the loss downloaded.
// Each prints one JSON line: the median and every time in milliseconds (after `--warmup` untimed
// runs), the real and padded lengths, and the device memory's high-water mark over the timed runs.
// `--lengths FILE` writes G1's packed lengths and shapes for the PyTorch side (benchmarks/torch_gpu.py)
// and exits. Exits with 77 when there is no usable CUDA device. scripts/gpu_check.sh runs both sides.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <dm2s2/backend/cuda/cuda_backend.hpp>
#include <dm2s2/dm2s2.hpp>

#include "bench_support.hpp"

namespace {

using namespace dm2s2_bench::workloads;

constexpr std::size_t g1_batch = 32;

struct settings {
    int repeats = 20;
    int warmup = 3;
    std::string lengths_file;
};

template <class Work>
std::vector<double> time_runs(const settings& s, Work&& work)
{
    for (int i = 0; i < s.warmup; ++i) work();
    std::vector<double> times;
    for (int i = 0; i < s.repeats; ++i) {
        const auto start = std::chrono::steady_clock::now();
        work();  // each run ends with a download, which waits for the device
        times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    return times;
}

void print(const char* workload, std::vector<double> times, const dm2s2::packed_batch& batch, std::size_t high_water)
{
    std::size_t real = 0;
    for (const auto len : batch.lengths) real += len;
    std::vector<double> sorted = times;
    std::sort(sorted.begin(), sorted.end());
    const double median =
        sorted.size() % 2 ? sorted[sorted.size() / 2] : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
    std::printf("{\"workload\": \"%s\", \"median_ms\": %.4f, \"times_ms\": [", workload, median);
    for (std::size_t i = 0; i < times.size(); ++i) std::printf("%s%.4f", i ? ", " : "", times[i]);
    std::printf("], \"tokens\": %zu, \"padded_length\": %zu, \"peak_device_mib\": %.1f}\n", real, batch.layout.length,
                static_cast<double>(high_water) / (1 << 20));
    std::fflush(stdout);
}

int run(const settings& s)
{
    const auto schema = w1_schema();
    const auto config = bert_base();
    const dm2s2::model<float> host(schema, config, 1);
    const auto records = random_records(schema, g1_batch, w1_seed);
    const auto batch = host.pack(records);
    if (!s.lengths_file.empty()) {
        std::ofstream out(s.lengths_file);
        const auto& c = config.bert;
        out << "{\"lengths\": [";
        for (std::size_t i = 0; i < batch.lengths.size(); ++i) out << (i ? ", " : "") << batch.lengths[i];
        out << "], \"hidden\": " << c.hidden_size << ", \"layers\": " << c.num_hidden_layers
            << ", \"heads\": " << c.num_attention_heads << ", \"intermediate\": " << c.intermediate_size
            << ", \"vocab\": " << c.vocab_size << ", \"classes\": " << config.num_outputs << "}\n";
        if (!out) {
            std::cerr << s.lengths_file << ": cannot write\n";
            return 1;
        }
        return 0;
    }
    const auto devices = dm2s2::cuda_devices();
    if (devices.count == 0) {
        std::printf("no usable CUDA device: %s\n", devices.reason.c_str());
        return 77;
    }
    std::string device_name;
    for (const auto precision : {dm2s2::matmul_precision::fp32, dm2s2::matmul_precision::bf16}) {
        const dm2s2::cuda_backend gpu(dm2s2::cuda_options{.precision = precision});
        const std::string suffix(dm2s2::to_string(precision));
        device_name = gpu.device_name();
        {
            const dm2s2::model<float, dm2s2::cuda_backend> model(host, gpu);
            gpu.reset_memory_high_water();
            const auto times = time_runs(s, [&] { (void)model.forward(batch); });
            print(("gpu-infer-" + suffix).c_str(), times, batch, gpu.memory_high_water());
        }
        {
            auto training_config = config;
            training_config.bert.hidden_dropout_prob = training_config.bert.attention_probs_dropout_prob = 0.1;
            const dm2s2::model<float> host_training(schema, training_config, 1);
            dm2s2::model<float, dm2s2::cuda_backend> model(host_training, gpu);
            dm2s2::adamw<float, dm2s2::cuda_space> optimizer;
            dm2s2::random_generator dropout(3);
            dm2s2::tensor<float> targets({g1_batch});
            for (std::size_t i = 0; i < g1_batch; ++i) targets[i] = static_cast<float>(i % config.num_outputs);
            auto gradients = model.zero_gradients();
            gpu.reset_memory_high_water();
            const auto times = time_runs(s, [&] {
                (void)dm2s2::train_step(model, optimizer, std::span(&batch, 1), dm2s2::task_type::multiclass,
                                        std::span<const dm2s2::tensor<float>>(&targets, 1),
                                        {.learning_rate = 1e-5, .max_gradient_norm = 1.0, .dropout_rng = &dropout}, gradients);
            });
            print(("gpu-train-" + suffix).c_str(), times, batch, gpu.memory_high_water());
        }
    }
    std::printf("{\"device\": \"%s\"}\n", device_name.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << arg << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--repeats") s.repeats = std::max(1, std::atoi(value().c_str()));
        else if (arg == "--warmup") s.warmup = std::max(0, std::atoi(value().c_str()));
        else if (arg == "--lengths") s.lengths_file = value();
        else {
            std::cerr << "usage: dm2s2_bench_gpu [--repeats N] [--warmup N] [--lengths FILE]\n";
            return 2;
        }
    }
    try {
        return run(s);
    } catch (const std::exception& e) {
        std::cerr << "dm2s2_bench_gpu: " << e.what() << "\n";
        return 1;
    }
}
