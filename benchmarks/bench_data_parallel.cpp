// W2 (one training step of DM²S² with a BERT-base encoder on W1's 8 records) shared among the ranks of
// MPI: each rank runs its share of the batch on `--threads` threads, the gradients are summed over the
// ranks, every rank applies the same AdamW step. Prints the median step time, the median time of the
// gradient all-reduce alone (the same buffers, summed again), and the bytes each all-reduce sums.
//   dm2s2_bench_data_parallel --threads 2            one process, two threads
//   mpirun -np 2 dm2s2_bench_data_parallel --threads 1   two ranks, one thread each
// Options: --steps N (timed steps after one untimed; default 5). DM2S2_BENCH_SCALE=tiny shrinks the model.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <dm2s2/distributed/mpi_communicator.hpp>

#include "bench_support.hpp"

namespace {

using namespace dm2s2_bench::workloads;

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

double seconds_since(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv)
{
    const dm2s2::mpi_communicator comm;
    std::size_t threads = 1, steps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string option = argv[i];
        const auto value = static_cast<std::size_t>(std::strtoul(argv[i + 1], nullptr, 10));
        if (option == "--threads") threads = std::max<std::size_t>(1, value);
        else if (option == "--steps") steps = std::max<std::size_t>(1, value);
    }
    const auto schema = w1_schema();
    dm2s2::model<float> model(schema, bert_base(), 1, dm2s2::cpu_backend({.threads = threads}));
    dm2s2::adamw<float> optimizer;
    const auto records = random_records(schema, w1_batch, w1_seed);
    const std::size_t first = comm.rank() * w1_batch / comm.size(), last = (comm.rank() + 1) * w1_batch / comm.size();
    const auto share = std::span(records).subspan(first, last - first);
    const std::vector<dm2s2::packed_batch> batch{model.pack(share)};
    const std::vector<dm2s2::batch_offset> offset{
        first == 0 ? dm2s2::batch_offset{} : model.offset_after(model.pack(std::span(records).subspan(0, first)))};
    std::vector<dm2s2::tensor<float>> targets{dm2s2::tensor<float>({share.size()})};
    for (std::size_t i = 0; i < share.size(); ++i) targets[0][i] = static_cast<float>((first + i) % 4);
    auto gradients = model.zero_gradients();
    dm2s2::random_generator dropout(3);

    std::vector<double> step_seconds, reduce_seconds;
    for (std::size_t s = 0; s <= steps; ++s) {  // step 0 is untimed: AdamW allocates its moments there
        comm.barrier();
        auto start = std::chrono::steady_clock::now();
        dm2s2::train_step(model, optimizer, std::span<const dm2s2::packed_batch>(batch), dm2s2::task_type::multiclass,
                          std::span<const dm2s2::tensor<float>>(targets),
                          {.learning_rate = 1e-5,
                           .dropout_rng = &dropout,
                           .global_records = w1_batch,
                           .offsets = std::span<const dm2s2::batch_offset>(offset)},
                          gradients, comm);
        comm.barrier();
        if (s > 0) step_seconds.push_back(seconds_since(start));
        // The step's all-reduce alone: the same gradient buffers summed once more.
        const dm2s2::gradient_buffers<float, dm2s2::host_space, dm2s2::model_gradients<float>> buffers(gradients);
        start = std::chrono::steady_clock::now();
        dm2s2::all_reduce_buffers<float>(comm, buffers.outputs());
        comm.barrier();
        if (s > 0) reduce_seconds.push_back(seconds_since(start));
    }
    std::size_t parameters = 0;
    model.for_each_parameter([&](const std::string&, dm2s2::tensor<float>& t) { parameters += t.size(); });
    if (comm.rank() == 0)
        std::printf(
            "ranks %zu, threads per rank %zu, records per rank %zu-%zu: step median %.1f ms, all-reduce median %.1f ms "
            "(%.1f %%), %zu parameters, %.1f MB summed per step\n",
            comm.size(), threads, w1_batch / comm.size(), (w1_batch + comm.size() - 1) / comm.size(), 1e3 * median(step_seconds),
            1e3 * median(reduce_seconds), 100 * median(reduce_seconds) / median(step_seconds), parameters,
            4.0 * double(parameters) / 1e6);
    return 0;
}
