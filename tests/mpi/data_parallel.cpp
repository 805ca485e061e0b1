// Data-parallel training over MPI, run as `mpirun -np 2 dm2s2_mpi_tests [mode]`:
//   (no mode)              2 ranks on each global batch end with the parameters of one process on the
//                          whole batch (float 1e-6, double 1e-12, dropout on and off), every rank holds
//                          the same replica bit for bit, and a run interrupted and resumed on 2 ranks
//                          ends bit-identical to an uninterrupted one; exit status 0 when all holds;
//   --fault DIR            rank 1's records hold an unknown category, so rank 1 fails while rank 0
//                          waits for it: the run must end every rank with the message and a non-zero
//                          status (the caller checks);
//   --unwritable DIR       rank 0 cannot write its first checkpoint into DIR while rank 1 goes on:
//                          the same ending is expected;
//   --kill DIR             trains with a checkpoint after every step; rank 1 kills itself (SIGKILL)
//                          after step 2, while rank 0 goes on;
//   --resume DIR           resumes the run of --kill from its checkpoint and prints the parameters'
//                          digest; --uninterrupted prints the digest of the same run without a break.

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "dm2s2/distributed/mpi_communicator.hpp"
#include "dm2s2/train/trainer.hpp"
#include "model_fixtures.hpp"

using namespace dm2s2;
using namespace dm2s2::testing;

namespace {

int failures = 0;

void check(bool ok, const std::string& what)
{
    if (!ok) {
        ++failures;
        std::cerr << "FAILED: " << what << std::endl;
    }
}

template <class T>
dataset<T> training_data(std::size_t count, std::uint64_t seed)
{
    dataset<T> d{random_records(four_modalities(), count, seed), tensor<T>({count})};
    random_generator rng(seed + 1);
    for (auto& v : d.targets.values()) v = static_cast<T>(rng.below(3));
    return d;
}

template <class T>
std::vector<T> flat_parameters(model<T, cpu_backend>& m, bool with_key_biases = true)
{
    std::vector<T> out;
    m.for_each_parameter([&](const std::string& name, tensor<T>& t) {
        if (!with_key_biases && name.find("attention.self.key.bias") != std::string::npos) return;
        out.insert(out.end(), t.values().begin(), t.values().end());
    });
    return out;
}

/// The largest |a − b| relative to the largest |b|.
template <class T>
double relative_difference(const std::vector<T>& a, const std::vector<T>& b)
{
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
        scale = std::max(scale, std::abs(static_cast<double>(b[i])));
    }
    return a.size() == b.size() ? worst / scale : INFINITY;
}

trainer_options options_for(const std::filesystem::path& out = {})
{
    trainer_options o;
    o.epochs = 2;
    o.batch_size = 5;  // 11 records: global batches of 5, 5 and 1 (one rank's share of the last is empty)
    o.learning_rate = 1e-3;
    o.log = nullptr;
    o.output_dir = out;
    return o;
}

model_config config_for(bool dropout_on)
{
    model_config c = small_config();
    c.bert.hidden_dropout_prob = c.bert.attention_probs_dropout_prob = c.head_dropout = dropout_on ? 0.1 : 0.0;
    return c;
}

/// Whether every rank holds exactly rank 0's values.
template <class T>
bool same_on_every_rank(const mpi_communicator& comm, const std::vector<T>& values)
{
    std::vector<T> root = values;
    comm.broadcast(root.data(), root.size(), 0);
    double differs = std::memcmp(root.data(), values.data(), values.size() * sizeof(T)) == 0 ? 0.0 : 1.0;
    comm.all_reduce_sum(&differs, 1);
    return differs == 0.0;
}

template <class T>
void check_equivalence(const mpi_communicator& comm)
{
    const double tolerance = std::is_same_v<T, float> ? 1e-6 : 1e-12;
    const auto train = training_data<T>(11, 5), validation = training_data<T>(4, 9);
    for (const bool dropout : {false, true}) {
        const std::string what = std::string(std::is_same_v<T, float> ? "float" : "double") + (dropout ? ", dropout" : "");
        model<T, cpu_backend> alone(four_modalities(), config_for(dropout), 3);
        const auto one = trainer<T, cpu_backend>(alone, task_type::multiclass, options_for()).fit(train, &validation);
        model<T, cpu_backend> replica(four_modalities(), config_for(dropout), comm.rank() == 0 ? 3 : 99);  // rank 0's start wins
        const auto two = trainer<T, cpu_backend, mpi_communicator>(replica, task_type::multiclass, options_for(), comm)
                             .fit(train, &validation);
        check(one.steps == two.steps, what + ": the same number of steps");
        const double d = relative_difference(flat_parameters(replica, false), flat_parameters(alone, false));
        if (comm.rank() == 0)
            std::printf("equivalence (%s): 2 ranks vs 1 process, largest relative difference %.3g\n", what.c_str(), d);
        check(d <= tolerance, what + ": parameters of 2 ranks within the tolerance of one process's");
        const double loss =
            std::abs(two.history.back().train_loss - one.history.back().train_loss) / one.history.back().train_loss;
        check(loss <= tolerance * 10, what + ": the epoch's training loss");
        const double v = std::abs(two.history.back().validation->loss - one.history.back().validation->loss);
        check(v <= tolerance * 10 * one.history.back().validation->loss, what + ": the validation loss");
        check(same_on_every_rank(comm, flat_parameters(replica)), what + ": every rank holds the same replica");
    }
}

void check_resume(const mpi_communicator& comm, const std::filesystem::path& dir)
{
    const auto train = training_data<float>(11, 5);
    if (comm.rank() == 0) std::filesystem::remove_all(dir);
    comm.barrier();
    model<float, cpu_backend> uninterrupted(four_modalities(), config_for(true), 3);
    trainer<float, cpu_backend, mpi_communicator>(uninterrupted, task_type::multiclass, options_for(), comm).fit(train);

    model<float, cpu_backend> interrupted(four_modalities(), config_for(true), 3);
    auto stopping = options_for(dir);
    stopping.stop_after_steps = 3;  // inside the second epoch
    trainer<float, cpu_backend, mpi_communicator> first(interrupted, task_type::multiclass, stopping, comm);
    check(first.fit(train).interrupted, "the run stops after 3 steps");
    comm.barrier();  // rank 0 has written the checkpoint
    model<float, cpu_backend> resumed(four_modalities(), config_for(true), 7);
    trainer<float, cpu_backend, mpi_communicator> second(resumed, task_type::multiclass, options_for(dir), comm);
    second.fit(train, nullptr, first.checkpoint_path());
    const auto a = flat_parameters(resumed), b = flat_parameters(uninterrupted);
    check(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0,
          "a run resumed on 2 ranks ends bit-identical to an uninterrupted one");
}

/// FNV-1a over the parameters' bytes.
unsigned long long digest(model<float, cpu_backend>& m)
{
    unsigned long long h = 1469598103934665603ULL;
    for (const float v : flat_parameters(m)) {
        unsigned char bytes[sizeof v];
        std::memcpy(bytes, &v, sizeof v);
        for (const unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
    }
    return h;
}

}  // namespace

int main(int argc, char** argv)
{
    const mpi_communicator comm;
    const std::string mode = argc > 1 ? argv[1] : "";
    const std::filesystem::path dir = argc > 2 ? argv[2] : "";
    try {
        if (mode.empty()) {
            if (comm.size() != 2) {
                std::cerr << "run as mpirun -np 2\n";
                return 2;
            }
            check_equivalence<float>(comm);
            check_equivalence<double>(comm);
            check_resume(comm, std::filesystem::temp_directory_path() / "dm2s2_mpi_resume");
            double total = failures;
            comm.all_reduce_sum(&total, 1);
            if (comm.rank() == 0) std::printf("%s\n", total == 0 ? "all checks passed" : "some checks FAILED");
            return total == 0 ? 0 : 1;
        }
        auto train = training_data<float>(11, 5);
        auto options = options_for(dir);
        model<float, cpu_backend> m(four_modalities(), config_for(true), 3);
        if (mode == "--fault") {  // rank 1's records hold a category its table lacks: it fails, rank 0 waits
            if (comm.rank() == 1) {
                std::vector<sequence_set> faulty;
                for (std::size_t i = 0; i < train.size(); ++i)
                    faulty.push_back(train.records.to_sequence_set(i).set_categorical("tags", {5, 99}));
                train.records = faulty;
            }
        } else if (mode == "--unwritable") {  // rank 0 cannot write its first checkpoint; rank 1 waits
            options.checkpoint_every = 1;
        } else if (mode == "--kill") {
            options.checkpoint_every = 1;
            options.stop_after_steps = 2;
            trainer<float, cpu_backend, mpi_communicator>(m, task_type::multiclass, options, comm).fit(train);
            if (comm.rank() == 1) std::raise(SIGKILL);
            options.stop_after_steps = 0;  // rank 0 goes on alone and waits for rank 1 in the next step
        } else if (mode == "--resume") {
            options.checkpoint_every = 1;
            trainer<float, cpu_backend, mpi_communicator> t(m, task_type::multiclass, options, comm);
            t.fit(train, nullptr, t.checkpoint_path());
            if (comm.rank() == 0) std::printf("digest %016llx\n", digest(m));
            return 0;
        } else if (mode == "--uninterrupted") {
            options.checkpoint_every = 1;
        } else {
            std::cerr << "unknown mode " << mode << "\n";
            return 2;
        }
        trainer<float, cpu_backend, mpi_communicator>(m, task_type::multiclass, options, comm).fit(train);
        if (comm.rank() == 0) std::printf("digest %016llx\n", digest(m));
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "rank " << comm.rank() << ": " << e.what() << std::endl;
        comm.abort(1);
    }
}
