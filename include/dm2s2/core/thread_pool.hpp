#pragma once
/// \file
/// `thread_pool`: a fixed set of worker threads that share index ranges with the calling thread.
///
/// The library has no global thread state: a backend owns its pool, sized by the caller, and every
/// parallel loop goes through it. A loop started from inside a task runs serially on that thread, so
/// kernels can call each other without deadlock or oversubscription.
///
/// A forward pass runs hundreds of short loops. Waking a sleeping thread through the kernel cost
/// 80-95 µs per loop on a virtual machine, so threads that wait (workers for the next loop, the caller
/// for the workers) first poll for a short while (`spin_time`) and only then sleep.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// Worker threads that run `parallel_for` loops together with the caller.
class thread_pool {
public:
    /// How long a waiting thread polls before it sleeps: longer than the gaps between the loops of a
    /// forward pass, short enough that an idle pool soon stops using the processor.
    static constexpr std::chrono::microseconds spin_time{500};

    /// `threads` counts the caller: 1 runs everything on the calling thread.
    explicit thread_pool(std::size_t threads)
    {
        if (threads == 0) throw config_error("thread_pool: the thread count must be at least 1");
        workers_.reserve(threads - 1);
        for (std::size_t t = 1; t < threads; ++t) workers_.emplace_back([this] { work(); });
    }

    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    ~thread_pool()
    {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }

    /// Threads that take part in a loop, the caller included.
    std::size_t size() const noexcept { return workers_.size() + 1; }

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
    std::mutex dispatch_;  // one loop at a time per pool
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
