#pragma once
/// \file
/// `mpi_communicator`: the communicator seam over MPI (Open MPI, MPICH, ...), for host buffers. Needs
/// MPI's headers and libraries: link `dm2s2::mpi` (CMake option `DM2S2_MPI`).
///
/// `mpirun -np N program` starts N ranks; a program started alone is a group of one (under Open MPI
/// without its runtime daemon, which a group of one does not need). Errors of MPI
/// calls end the job (MPI's default handler); `abort` ends every rank, which is what a rank must do
/// when it fails, so that the others do not wait for it for ever.

#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "dm2s2/core/error.hpp"
#include "dm2s2/distributed/communicator.hpp"

namespace dm2s2 {

/// MPI's datatype for scalar T.
template <class T>
MPI_Datatype mpi_datatype() noexcept
{
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "mpi_communicator: float or double buffers");
    return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

/// The ranks of an MPI communicator (`MPI_COMM_WORLD` unless given). The first one made initialises
/// MPI when nothing has (and the process then finalises it at exit); all of them share it.
class mpi_communicator {
public:
    explicit mpi_communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm)
    {
        ensure_initialized();
        int rank = 0, size = 1;
        MPI_Comm_rank(comm_, &rank);
        MPI_Comm_size(comm_, &size);
        rank_ = static_cast<std::size_t>(rank);
        size_ = static_cast<std::size_t>(size);
    }

    std::size_t rank() const noexcept { return rank_; }
    std::size_t size() const noexcept { return size_; }

    /// Sums `n` values over every rank, in place (`MPI_Allreduce`); every rank gets the same sum.
    template <class T>
    void all_reduce_sum(T* values, std::size_t n) const
    {
        for (std::size_t done = 0; done < n;) {  // counts are ints in MPI
            const int part = piece(n - done);
            MPI_Allreduce(MPI_IN_PLACE, values + done, part, mpi_datatype<T>(), MPI_SUM, comm_);
            done += static_cast<std::size_t>(part);
        }
    }

    /// Every rank's `n` values become rank `root`'s (`MPI_Bcast`).
    template <class T>
    void broadcast(T* values, std::size_t n, std::size_t root) const
    {
        for (std::size_t done = 0; done < n;) {
            const int part = piece(n - done);
            MPI_Bcast(values + done, part, mpi_datatype<T>(), static_cast<int>(root), comm_);
            done += static_cast<std::size_t>(part);
        }
    }

    void barrier() const { MPI_Barrier(comm_); }

    /// Ends every rank of the job with exit status `code` (`MPI_Abort`).
    [[noreturn]] void abort(int code) const noexcept
    {
        MPI_Abort(comm_, code);
        std::_Exit(code);  // MPI_Abort does not return; should it, end this rank at least
    }

private:
    static int piece(std::size_t remaining) noexcept
    {
        return static_cast<int>(std::min<std::size_t>(remaining, std::numeric_limits<int>::max()));
    }

    /// Initialises MPI once per process, finalising it at exit when this process initialised it.
    static void ensure_initialized()
    {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (initialized) return;
        // Started without a launcher, Open MPI would start its runtime daemon (orted) as a second
        // process, which a group of one does not need; a setting the user made is kept.
#if defined(__unix__) || defined(__APPLE__)
        if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr && std::getenv("PMIX_RANK") == nullptr)
            ::setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
#endif
        int provided = 0;
        if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            throw error("mpi_communicator: MPI_Init_thread failed");
        std::atexit([] {
            int finalized = 0;
            MPI_Finalized(&finalized);
            if (!finalized) MPI_Finalize();
        });
    }

    MPI_Comm comm_;
    std::size_t rank_ = 0, size_ = 1;
};

static_assert(communicator_for<mpi_communicator, float> && communicator_for<mpi_communicator, double>);

}  // namespace dm2s2
