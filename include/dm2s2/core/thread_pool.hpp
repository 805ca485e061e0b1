#pragma once
/// \file
/// `thread_pool`: a fixed set of worker threads that share index ranges with the calling thread.
///
/// The library has no global thread state: a backend owns its pool, sized by the caller, and every
/// parallel loop goes through it. A loop started from inside a task runs serially on that thread, so
/// kernels can call each other without deadlock or oversubscription.
///
/// A forward pass runs hundreds of short loops. Waking a sleeping thread through the kernel is slow on
/// a virtual machine (benchmarks/README.md, step 11), so threads that wait (workers for the next loop,
/// the caller for the workers) first poll for a short while (`spin_time`) and only then sleep.
///
/// Threads may be bound to one processor each (`thread_binding`, Linux). Unbound, the scheduler of a
/// virtual machine sometimes put a two-thread loop's threads on one processor and left them there
/// while the other idled: after OpenBLAS's calls in the same process, a product ran at one thread's
/// speed round after round (`sched_getcpu` in its tasks gave the same processor). Binding the workers
/// alone did not prevent it: the caller then moved onto a worker's processor and stayed.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// Where a `thread_pool`'s threads may run (binding: Linux only).
enum class thread_binding {
    none,               ///< wherever the scheduler puts them
    workers,            ///< each worker on one processor, taken in turn from the process's, the caller's current one last
    caller_and_workers  ///< the same, and the thread that makes the pool on the processor it runs on then
};

/// Worker threads that run `parallel_for` loops together with the caller.
class thread_pool {
public:
    /// How long a waiting thread polls before it sleeps: longer than the gaps between the loops of a
    /// forward pass, short enough that an idle pool soon stops using the processor.
    static constexpr std::chrono::microseconds spin_time{500};

    /// `threads` counts the caller: 1 runs everything on the calling thread. Bound (`binding`), the
    /// workers take the processors the process may run on in turn, the one the calling thread runs on
    /// now last, so that with as many threads as processors each has its own; with
    /// `caller_and_workers` the calling thread is bound to that last one until the pool is destroyed on
    /// it (while it is bound, threads it starts and pools it makes find only that processor). Binding
    /// throws `config_error` where the system cannot bind threads.
    explicit thread_pool(std::size_t threads, thread_binding binding = thread_binding::none)
    {
        if (threads == 0) throw config_error("thread_pool: the thread count must be at least 1");
        // The caller's processor first, then the others; worker w takes the one after the caller's.
        const std::vector<int> cpus = binding != thread_binding::none ? processors_from_current() : std::vector<int>{};
        if (binding == thread_binding::caller_and_workers) {
            caller_ = std::this_thread::get_id();
            caller_processors_ = processors_of_this_thread();
            bind(this_thread_handle(), cpus.front());
        }
        workers_.reserve(threads - 1);
        try {
            for (std::size_t t = 1; t < threads; ++t) workers_.emplace_back([this] { work(); });
            for (std::size_t w = 0; !cpus.empty() && w < workers_.size(); ++w) {
                worker_cpus_.push_back(cpus[(w + 1) % cpus.size()]);
                bind(workers_[w].native_handle(), worker_cpus_.back());
            }
        } catch (...) {
            release();
            throw;
        }
    }

    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    ~thread_pool() { release(); }

    /// Threads that take part in a loop, the caller included.
    std::size_t size() const noexcept { return workers_.size() + 1; }

    /// The processor each worker is bound to, in order; empty when the workers are not bound.
    const std::vector<int>& worker_cpus() const noexcept { return worker_cpus_; }

    /// Runs task(i) for every i in [0, count) and returns when all are done. Tasks are handed out in
    /// order to whichever thread is free; the first exception a task throws is rethrown here.
    template <class F>
    void parallel_for(std::size_t count, F&& task)
    {
        if (count == 0) return;
        if (count == 1 || workers_.empty() || inside_task()) {
            for (std::size_t i = 0; i < count; ++i) task(i);
            return;
        }
        std::lock_guard one_loop_at_a_time(dispatch_);
        job_ = {&task, [](void* f, std::size_t i) { (*static_cast<std::remove_reference_t<F>*>(f))(i); }, count};
        next_.store(0);
        {
            std::lock_guard lock(mutex_);
            busy_workers_.store(workers_.size());
            generation_.fetch_add(1);  // after the job: a polling worker that sees it sees the job
        }
        wake_.notify_all();
        run_tasks();
        const auto finished = [this] { return busy_workers_.load() == 0; };
        std::unique_lock lock = poll_then_lock(finished);
        done_.wait(lock, finished);
        if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
    }

private:
    struct job {
        void* task = nullptr;
        void (*call)(void*, std::size_t) = nullptr;
        std::size_t count = 0;
    };

    static bool& inside_task() noexcept
    {
        thread_local bool inside = false;
        return inside;
    }

    void run_tasks()
    {
        inside_task() = true;
        for (std::size_t i; (i = next_.fetch_add(1)) < job_.count;) {
            try {
                job_.call(job_.task, i);
            } catch (...) {
                std::lock_guard lock(mutex_);
                if (!failure_) failure_ = std::current_exception();
            }
        }
        inside_task() = false;
    }

    /// Polls `ready` for up to `spin_time`, then returns the pool's lock (to sleep on, if still needed).
    template <class Ready>
    std::unique_lock<std::mutex> poll_then_lock(const Ready& ready)
    {
        const auto until = std::chrono::steady_clock::now() + spin_time;
        for (int polls = 1; !ready(); ++polls) {
            pause();
            if (polls % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
        }
        return std::unique_lock(mutex_);
    }

    /// A hint to the processor that this thread is polling (lets a sibling hyperthread run).
    static void pause() noexcept
    {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
    }

#if defined(__linux__)
    using native_thread = pthread_t;
    using processor_set = cpu_set_t;
    static native_thread this_thread_handle() noexcept { return pthread_self(); }
#else
    using native_thread = std::thread::native_handle_type;
    struct processor_set {};
    static native_thread this_thread_handle() noexcept { return {}; }
#endif

    /// The processors the calling thread may run on.
    static processor_set processors_of_this_thread()
    {
        processor_set allowed{};
#if defined(__linux__)
        CPU_ZERO(&allowed);
        if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
            throw config_error("thread_pool: cannot read the processors this thread may run on (sched_getaffinity)");
#endif
        return allowed;
    }

    /// Lets the calling thread run on `processors` again (what it had before a pool bound it).
    static void restore_this_thread([[maybe_unused]] const processor_set& processors) noexcept
    {
#if defined(__linux__)
        pthread_setaffinity_np(pthread_self(), sizeof processors, &processors);
#endif
    }

    /// The processors the calling thread may run on, the one it runs on now first.
    static std::vector<int> processors_from_current()
    {
#if defined(__linux__)
        const cpu_set_t allowed = processors_of_this_thread();
        const int current = sched_getcpu();
        std::vector<int> cpus;
        if (current >= 0 && CPU_ISSET(current, &allowed)) cpus.push_back(current);
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
            if (CPU_ISSET(cpu, &allowed) && cpu != current) cpus.push_back(cpu);
        if (cpus.empty()) throw config_error("thread_pool: this thread may run on no processor it can name");
        return cpus;
#else
        throw config_error("thread_pool: binding threads to processors is supported on Linux only");
#endif
    }

    /// Binds a thread to processor `cpu`, one that `processors_from_current` listed.
    static void bind([[maybe_unused]] native_thread thread, [[maybe_unused]] int cpu)
    {
#if defined(__linux__)
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (pthread_setaffinity_np(thread, sizeof one, &one) != 0)
            throw config_error("thread_pool: cannot bind a thread to processor " + std::to_string(cpu) +
                               " (pthread_setaffinity_np)");
#endif
    }

    /// Ends the workers' loops, joins them, and unbinds the caller where this pool bound it.
    void release() noexcept
    {
        stop();
        if (caller_ == std::this_thread::get_id()) restore_this_thread(caller_processors_);
    }

    /// Ends the workers' loops and joins them.
    void stop() noexcept
    {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }

    void work()
    {
        std::size_t seen = 0;
        for (;;) {
            {
                const auto woken = [&] { return stopping_.load() || generation_.load() != seen; };
                std::unique_lock lock = poll_then_lock(woken);
                wake_.wait(lock, woken);
                if (stopping_) return;
                seen = generation_.load();
            }
            run_tasks();
            if (busy_workers_.fetch_sub(1) == 1) {
                std::lock_guard lock(mutex_);  // the caller either polls or sleeps on done_ under this lock
                done_.notify_one();
            }
        }
    }

    std::vector<std::thread> workers_;
    std::vector<int> worker_cpus_;
    std::thread::id caller_;             // the thread bound with the workers (`caller_and_workers`), if any
    processor_set caller_processors_{};  // and the processors it could run on before
    std::mutex dispatch_;                // one loop at a time per pool
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    job job_;
    std::atomic<std::size_t> next_{0};
    std::atomic<std::size_t> generation_{0}, busy_workers_{0};
    std::atomic<bool> stopping_{false};
    std::exception_ptr failure_;
};

/// Runs every task on the calling thread, in order: the executor of code that was given none.
struct serial_executor {
    template <class F>
    void parallel_for(std::size_t count, F&& task) const
    {
        for (std::size_t i = 0; i < count; ++i) task(i);
    }
};

/// Elements per piece when a loop over parameters or their gradients is split between threads (fixed,
/// so sums taken per piece, and therefore results, do not depend on the thread count).
inline constexpr std::size_t parameter_chunk = std::size_t{1} << 16;

/// Runs body(piece, begin, end) over [0, n) cut into pieces of `chunk` elements, on `executor` (a
/// backend or a `serial_executor`). The pieces do not depend on the thread count, so partial results
/// kept per piece combine to the same value on any number of threads.
template <class Executor, class F>
void for_each_chunk(const Executor& executor, std::size_t n, std::size_t chunk, F&& body)
{
    const std::size_t pieces = (n + chunk - 1) / chunk;
    executor.parallel_for(pieces, [&](std::size_t piece) { body(piece, piece * chunk, std::min(n, (piece + 1) * chunk)); });
}

}  // namespace dm2s2
