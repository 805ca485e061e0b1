#pragma once
/// \file
/// The communicator seam of data-parallel training: what a group of processes (ranks), each holding a
/// replica of the model, needs to train as one — its rank and size, the sum of gradient buffers over
/// every rank, the broadcast of parameters from one rank, a barrier, and ending the whole group.
///
/// `single_process` is the group of one (every operation a no-op), for any memory space;
/// `mpi_communicator` (`distributed/mpi_communicator.hpp`, CMake option `DM2S2_MPI`) is the group of
/// an MPI communicator. A GPU collective library implements the same concept on pointers of its
/// device's space. `all_reduce_buffers` sums a list of buffers in buckets, in a fixed order.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdlib>
#include <span>
#include <vector>

#include "dm2s2/backend/training_kernels.hpp"
#include "dm2s2/core/memory_space.hpp"

namespace dm2s2 {

/// A group of ranks that can sum and broadcast buffers of scalar T in memory space `Space`:
/// - `rank()` in [0, `size()`);
/// - `all_reduce_sum(p, n)`: every rank's n values replaced, in place, by their sum over the ranks,
///   the same on every rank;
/// - `broadcast(p, n, root)`: every rank's n values replaced by those of rank `root`;
/// - `barrier()`; `abort(code)`: ends every rank of the group with exit status `code` (never returns).
template <class C, class T, class Space = host_space>
concept communicator_for = requires(const C& c, space_pointer<T, Space> p, std::size_t n, int code) {
    { c.rank() } -> std::convertible_to<std::size_t>;
    { c.size() } -> std::convertible_to<std::size_t>;
    c.all_reduce_sum(p, n);
    c.broadcast(p, n, n);
    c.barrier();
    c.abort(code);
};

/// The group of one process: nothing to sum or send, for buffers of any space.
struct single_process {
    static constexpr std::size_t rank() noexcept { return 0; }
    static constexpr std::size_t size() noexcept { return 1; }
    template <class Pointer>
    void all_reduce_sum(Pointer, std::size_t) const noexcept
    {
    }
    template <class Pointer>
    void broadcast(Pointer, std::size_t, std::size_t) const noexcept
    {
    }
    void barrier() const noexcept {}
    [[noreturn]] void abort(int code) const noexcept { std::_Exit(code); }
};

static_assert(communicator_for<single_process, float> && communicator_for<single_process, double>);

/// Default size of the buckets `all_reduce_buffers` fuses small buffers into (bytes).
inline constexpr std::size_t all_reduce_bucket_bytes = std::size_t{16} << 20;

/// Sums every buffer of `buffers` over the ranks of `comm`, in place: buffers at least
/// `bucket_bytes` long are reduced where they are; consecutive smaller ones are copied into one bucket
/// (host buffers), reduced together and copied back, so that a model's many small tensors cost a few
/// collective calls. Buffers are taken in list order, the same on every rank.
template <class T, class Communicator>
void all_reduce_buffers(const Communicator& comm, std::span<const buffer_view<T*>> buffers,
                        std::size_t bucket_bytes = all_reduce_bucket_bytes)
{
    if (comm.size() == 1) return;
    const std::size_t bucket_values = std::max<std::size_t>(1, bucket_bytes / sizeof(T));
    std::vector<T> bucket;
    std::vector<buffer_view<T*>> waiting;
    const auto flush = [&] {
        if (waiting.empty()) return;
        bucket.clear();
        for (const auto& b : waiting) bucket.insert(bucket.end(), b.data, b.data + b.size);
        comm.all_reduce_sum(bucket.data(), bucket.size());
        std::size_t at = 0;
        for (const auto& b : waiting) {
            std::copy_n(bucket.data() + at, b.size, b.data);
            at += b.size;
        }
        waiting.clear();
    };
    std::size_t waiting_values = 0;
    for (const auto& b : buffers) {
        if (b.size >= bucket_values) {
            flush();
            waiting_values = 0;
            comm.all_reduce_sum(b.data, b.size);
            continue;
        }
        if (waiting_values + b.size > bucket_values) {
            flush();
            waiting_values = 0;
        }
        waiting.push_back(b);
        waiting_values += b.size;
    }
    flush();
}

}  // namespace dm2s2
