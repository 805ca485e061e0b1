#pragma once
/// \file
/// `staging_backend`: a backend whose memory host code may not touch, as a GPU's is, but which lives
/// in host RAM, so that every machine can run it. It proves the device seam:
/// - its tensors are in `staging_space`, so host element access to them does not compile;
/// - its kernels are a host backend's (`reference_backend` unless named), run on the raw addresses;
/// - it counts every transfer (`transfers()`), so a test can state exactly how many a forward pass or a
///   training step makes;
/// - in guard mode (`staging_options::guard`) every staging buffer is `mprotect`ed to no access
///   outside the backend's own operations, so any stray host read or write faults at once.
///
/// Linux (POSIX `mmap`/`mprotect`) only.

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/backend/training_kernels.hpp"
#include "dm2s2/core/memory_space.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2 {

/// Host RAM posing as a device's memory: whole pages per buffer, so that guard mode can take every
/// access right away from them between the staging backend's operations.
struct staging_space {
    static constexpr const char* name() noexcept { return "staging"; }
    static constexpr bool host_accessible = false;

    static void* allocate(std::size_t bytes)
    {
        auto& r = registry();
        const std::lock_guard lock(r.mutex);
        const std::size_t mapped = page_multiple(bytes);
        void* p = ::mmap(nullptr, mapped, r.locked() ? PROT_NONE : PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        r.blocks.emplace(p, mapped);
        return p;
    }

    static void deallocate(void* p, std::size_t) noexcept
    {
        auto& r = registry();
        const std::lock_guard lock(r.mutex);
        if (const auto it = r.blocks.find(p); it != r.blocks.end()) {
            ::munmap(p, it->second);
            r.blocks.erase(it);
        }
    }

    /// Copies bytes between two staging buffers (a tensor copy), inside an access scope.
    static void copy(void* to, const void* from, std::size_t bytes)
    {
        const access_scope open;
        if (bytes != 0) std::memcpy(to, from, bytes);
    }

    /// While one lives, every staging buffer is readable and writable: the backend's operations run
    /// inside one. Nested scopes and scopes on several threads count together.
    class access_scope {
    public:
        access_scope() { registry().enter(); }
        ~access_scope() { registry().leave(); }
        access_scope(const access_scope&) = delete;
        access_scope& operator=(const access_scope&) = delete;
    };

    /// Number of staging buffers alive.
    static std::size_t buffers()
    {
        auto& r = registry();
        const std::lock_guard lock(r.mutex);
        return r.blocks.size();
    }

    /// Whether guard mode is on (some `staging_backend` with `guard` set is alive).
    static bool guarded()
    {
        auto& r = registry();
        const std::lock_guard lock(r.mutex);
        return r.guards > 0;
    }

    /// Turns guard mode on for the lifetime of the returned handle (`staging_backend` holds one).
    static std::shared_ptr<void> hold_guard()
    {
        static int token = 0;
        registry().add_guard(+1);
        return std::shared_ptr<void>(&token, [](void*) { registry().add_guard(-1); });
    }

private:
    struct state {
        std::mutex mutex;
        std::map<void*, std::size_t> blocks;
        std::size_t open_scopes = 0;
        std::ptrdiff_t guards = 0;

        bool locked() const noexcept { return guards > 0 && open_scopes == 0; }

        void protect_all(int rights)
        {
            for (const auto& [p, bytes] : blocks)
                if (::mprotect(p, bytes, rights) != 0)
                    throw std::system_error(errno, std::generic_category(), "staging_space: mprotect");
        }
        void enter()
        {
            const std::lock_guard lock(mutex);
            if (locked()) protect_all(PROT_READ | PROT_WRITE);
            ++open_scopes;
        }
        void leave()
        {
            const std::lock_guard lock(mutex);
            --open_scopes;
            if (locked()) protect_all(PROT_NONE);
        }
        void add_guard(std::ptrdiff_t change)
        {
            const std::lock_guard lock(mutex);
            const bool was = locked();
            guards += change;
            if (locked() != was) protect_all(locked() ? PROT_NONE : PROT_READ | PROT_WRITE);
        }
    };

    static state& registry()
    {
        static state s;
        return s;
    }

    static std::size_t page_multiple(std::size_t bytes)
    {
        static const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        return bytes == 0 ? page : (bytes + page - 1) / page * page;
    }
};

/// Settings of a `staging_backend`.
struct staging_options {
    /// Every staging buffer inaccessible outside the backend's operations (process-wide while such a
    /// backend lives): a host access to one faults.
    bool guard = false;
};

/// Transfers a `staging_backend` has made, counted since it was made or last reset.
struct transfer_counts {
    std::size_t uploads = 0;    ///< host → staging copies
    std::size_t downloads = 0;  ///< staging → host copies
    std::size_t uploaded_bytes = 0;
    std::size_t downloaded_bytes = 0;

    friend bool operator==(const transfer_counts&, const transfer_counts&) = default;
};

/// A backend over `staging_space` running the kernels of host backend `Kernels` (plain loops by
/// default). Copies share their transfer counts.
template <class Kernels = reference_backend>
class basic_staging_backend : public device_tensor_transfers<basic_staging_backend<Kernels>, staging_space> {
public:
    using memory_space = staging_space;
    template <class T>
    using pointer = device_ptr<T, staging_space>;

    static constexpr const char* name() noexcept { return "staging"; }

    basic_staging_backend() = default;
    explicit basic_staging_backend(staging_options options, Kernels kernels = {})
        : kernels_(std::move(kernels)), guard_(options.guard ? staging_space::hold_guard() : nullptr)
    {
    }

    /// Whether this backend keeps staging memory guarded between its operations.
    bool guarding() const noexcept { return guard_ != nullptr; }

    /// The transfers made so far (by this backend and its copies).
    transfer_counts transfers() const noexcept { return *counts_; }
    void reset_transfers() const noexcept { *counts_ = {}; }

    using device_tensor_transfers<basic_staging_backend, staging_space>::upload;
    using device_tensor_transfers<basic_staging_backend, staging_space>::download;
    template <class T>
    void upload(const T* from, std::size_t n, pointer<T> to) const
    {
        const staging_space::access_scope open;
        std::copy_n(from, n, to.device_address());
        ++counts_->uploads;
        counts_->uploaded_bytes += n * sizeof(T);
    }
    template <class T>
    void download(pointer<const T> from, std::size_t n, T* to) const
    {
        const staging_space::access_scope open;
        std::copy_n(from.device_address(), n, to);
        ++counts_->downloads;
        counts_->downloaded_bytes += n * sizeof(T);
    }

    template <scalar T>
    void gemm(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, T alpha, pointer<const T> a,
              std::size_t lda, pointer<const T> b, std::size_t ldb, T beta, pointer<T> c, std::size_t ldc) const
    {
        run([&](const Kernels& K) { K.gemm(ta, tb, m, n, k, alpha, raw(a), lda, raw(b), ldb, beta, raw(c), ldc); });
    }
    template <scalar T>
    void add_row_vector(pointer<T> x, std::size_t rows, std::size_t cols, std::size_t ldx, pointer<const T> v) const
    {
        run([&](const Kernels& K) { K.add_row_vector(raw(x), rows, cols, ldx, raw(v)); });
    }
    template <scalar T>
    void gelu(pointer<T> x, std::size_t n) const
    {
        run([&](const Kernels& K) { K.gelu(raw(x), n); });
    }
    template <scalar T>
    void tanh(pointer<T> x, std::size_t n) const
    {
        run([&](const Kernels& K) { K.tanh(raw(x), n); });
    }
    template <scalar T>
    void masked_softmax(pointer<T> x, std::size_t n, pointer<const std::uint8_t> keep) const
    {
        run([&](const Kernels& K) { K.masked_softmax(raw(x), n, raw(keep)); });
    }
    template <scalar T>
    void layer_norm(pointer<const T> x, pointer<const T> residual, pointer<T> y, std::size_t rows, std::size_t cols,
                    pointer<const T> gamma, pointer<const T> beta, T eps) const
    {
        run([&](const Kernels& K) { K.layer_norm(raw(x), raw(residual), raw(y), rows, cols, raw(gamma), raw(beta), eps); });
    }
    template <scalar T>
    void gelu_backward(pointer<const T> x, pointer<T> grad, std::size_t n) const
    {
        run([&](const Kernels& K) { K.gelu_backward(raw(x), raw(grad), n); });
    }
    template <scalar T>
    void tanh_backward(pointer<const T> y, pointer<T> grad, std::size_t n) const
    {
        run([&](const Kernels& K) { K.tanh_backward(raw(y), raw(grad), n); });
    }
    template <scalar T>
    void masked_softmax_backward(pointer<const T> p, pointer<T> grad, std::size_t n) const
    {
        run([&](const Kernels& K) { K.masked_softmax_backward(raw(p), raw(grad), n); });
    }
    template <scalar T>
    void layer_norm_backward(pointer<const T> v, pointer<const T> dy, pointer<T> dv, std::size_t rows, std::size_t cols,
                             pointer<const T> gamma, T eps, pointer<T> dgamma, pointer<T> dbeta) const
    {
        run([&](const Kernels& K) {
            K.layer_norm_backward(raw(v), raw(dy), raw(dv), rows, cols, raw(gamma), eps, raw(dgamma), raw(dbeta));
        });
    }
    template <scalar T>
    void add_column_sums(pointer<const T> x, std::size_t rows, std::size_t cols, std::size_t ldx, pointer<T> out) const
    {
        run([&](const Kernels& K) { K.add_column_sums(raw(x), rows, cols, ldx, raw(out)); });
    }

    template <scalar T>
    void attention_forward(const attention_shape& shape, T scale, pointer<const T> q, pointer<const T> k, pointer<const T> v,
                           pointer<const std::uint8_t> key_mask, pointer<T> probabilities, dropout_draw dropout,
                           pointer<T> context) const
    {
        run([&](const Kernels& K) {
            K.attention_forward(shape, scale, raw(q), raw(k), raw(v), raw(key_mask), raw(probabilities), dropout, raw(context));
        });
    }
    template <scalar T>
    void attention_backward(const attention_shape& shape, T scale, pointer<const T> q, pointer<const T> k, pointer<const T> v,
                            pointer<const T> probabilities, dropout_draw dropout, pointer<const T> d_context, pointer<T> dq,
                            pointer<T> dk, pointer<T> dv) const
    {
        run([&](const Kernels& K) {
            K.attention_backward(shape, scale, raw(q), raw(k), raw(v), raw(probabilities), dropout, raw(d_context), raw(dq),
                                 raw(dk), raw(dv));
        });
    }

    template <class T>
    void copy(pointer<const T> from, std::size_t n, pointer<T> to) const
    {
        run([&](const Kernels& K) { K.copy(raw(from), n, raw(to)); });
    }
    template <class T>
    void fill(pointer<T> x, std::size_t n, T value) const
    {
        run([&](const Kernels& K) { K.fill(raw(x), n, value); });
    }
    template <scalar T>
    void scale_rows(pointer<T> x, pointer<const T> factors, std::size_t rows, std::size_t width) const
    {
        run([&](const Kernels& K) { K.scale_rows(raw(x), raw(factors), rows, width); });
    }
    template <scalar T>
    void add(pointer<const T> a, pointer<const T> b, pointer<T> out, std::size_t n) const
    {
        run([&](const Kernels& K) { K.add(raw(a), raw(b), raw(out), n); });
    }
    template <scalar T>
    void dropout(pointer<T> x, std::size_t n, dropout_draw draw, std::size_t offset = 0) const
    {
        run([&](const Kernels& K) { K.dropout(raw(x), n, draw, offset); });
    }
    template <scalar T, class FromIndex, class ToIndex>
    void copy_rows(pointer<const T> from, pointer<const FromIndex> from_rows, pointer<T> to, pointer<const ToIndex> to_rows,
                   std::size_t count, std::size_t width) const
    {
        run([&](const Kernels& K) { K.copy_rows(raw(from), raw(from_rows), raw(to), raw(to_rows), count, width); });
    }
    template <scalar T, class FromIndex, class ToIndex>
    void add_rows(pointer<const T> from, pointer<const FromIndex> from_rows, pointer<T> to, pointer<const ToIndex> to_rows,
                  std::size_t count, std::size_t width) const
    {
        run([&](const Kernels& K) { K.add_rows(raw(from), raw(from_rows), raw(to), raw(to_rows), count, width); });
    }
    template <scalar T, class Index>
    void add_type_and_position_rows(pointer<T> rows, std::size_t count, std::size_t width, pointer<const T> types,
                                    pointer<const Index> type_ids, pointer<const T> positions,
                                    pointer<const Index> position_ids) const
    {
        run([&](const Kernels& K) {
            K.add_type_and_position_rows(raw(rows), count, width, raw(types), raw(type_ids), raw(positions), raw(position_ids));
        });
    }
    template <scalar T, class ToIndex>
    void scale_shift_rows(pointer<const T> values, pointer<const T> scale, pointer<const T> shift, pointer<T> to,
                          pointer<const ToIndex> to_rows, std::size_t count, std::size_t width) const
    {
        run([&](const Kernels& K) {
            K.scale_shift_rows(raw(values), raw(scale), raw(shift), raw(to), raw(to_rows), count, width);
        });
    }
    template <scalar T, class FromIndex>
    void scale_shift_rows_backward(pointer<const T> values, pointer<const T> d_rows, pointer<const FromIndex> from_rows,
                                   std::size_t count, std::size_t width, pointer<T> d_scale, pointer<T> d_shift) const
    {
        run([&](const Kernels& K) {
            K.scale_shift_rows_backward(raw(values), raw(d_rows), raw(from_rows), count, width, raw(d_scale), raw(d_shift));
        });
    }
    template <scalar T>
    void segment_attention_pool(pointer<const T> rows, std::size_t width, pointer<const row_group> groups,
                                std::size_t group_count, pointer<T> scores, pointer<const T> residual, pointer<T> pooled) const
    {
        run([&](const Kernels& K) {
            K.segment_attention_pool(raw(rows), width, raw(groups), group_count, raw(scores), raw(residual), raw(pooled));
        });
    }
    template <scalar T>
    void segment_attention_pool_backward(pointer<const T> rows, std::size_t width, pointer<const row_group> groups,
                                         std::size_t group_count, pointer<const T> weights, pointer<const T> residual,
                                         pointer<const T> d_pooled, pointer<T> d_rows, pointer<T> d_scores,
                                         pointer<T> d_residual) const
    {
        run([&](const Kernels& K) {
            K.segment_attention_pool_backward(raw(rows), width, raw(groups), group_count, raw(weights), raw(residual),
                                              raw(d_pooled), raw(d_rows), raw(d_scores), raw(d_residual));
        });
    }
    template <scalar T>
    void max_pool(pointer<const T> x, std::size_t width, pointer<const row_group> groups, std::size_t group_count, pointer<T> out,
                  pointer<std::uint32_t> argmax) const
    {
        run([&](const Kernels& K) { K.max_pool(raw(x), width, raw(groups), group_count, raw(out), raw(argmax)); });
    }
    template <scalar T>
    void max_pool_backward(pointer<const T> d_out, std::size_t width, std::size_t group_count,
                           pointer<const std::uint32_t> argmax, std::size_t rows, pointer<T> dx) const
    {
        run([&](const Kernels& K) { K.max_pool_backward(raw(d_out), width, group_count, raw(argmax), rows, raw(dx)); });
    }

    template <scalar T>
    void softmax_cross_entropy(pointer<const T> logits, pointer<const T> classes, std::size_t batch, std::size_t outputs,
                               pointer<T> grad, double weight, pointer<double> loss) const
    {
        run([&](const Kernels& K) {
            K.softmax_cross_entropy(raw(logits), raw(classes), batch, outputs, raw(grad), weight, raw(loss));
        });
    }
    template <scalar T>
    void binary_cross_entropy(pointer<const T> logits, pointer<const T> targets, std::size_t n, pointer<T> grad, double weight,
                              pointer<double> loss) const
    {
        run([&](const Kernels& K) { K.binary_cross_entropy(raw(logits), raw(targets), n, raw(grad), weight, raw(loss)); });
    }
    template <scalar T>
    void squared_error(pointer<const T> logits, pointer<const T> targets, std::size_t n, pointer<T> grad, double weight,
                       pointer<double> loss) const
    {
        run([&](const Kernels& K) { K.squared_error(raw(logits), raw(targets), n, raw(grad), weight, raw(loss)); });
    }
    template <scalar T>
    void sum_of_squares(std::span<const buffer_view<pointer<const T>>> buffers, pointer<double> norm) const
    {
        const auto views = raw_views(buffers);
        run([&](const Kernels& K) { K.sum_of_squares(std::span<const buffer_view<const T*>>(views), raw(norm)); });
    }
    template <scalar T>
    void scale_buffers(std::span<const buffer_view<pointer<T>>> buffers, double factor) const
    {
        const auto views = raw_views(buffers);
        run([&](const Kernels& K) { K.scale_buffers(std::span<const buffer_view<T*>>(views), factor); });
    }
    template <scalar T>
    void clip_buffers(std::span<const buffer_view<pointer<T>>> buffers, pointer<const double> norm, double max_norm) const
    {
        const auto views = raw_views(buffers);
        run([&](const Kernels& K) { K.clip_buffers(std::span<const buffer_view<T*>>(views), raw(norm), max_norm); });
    }
    template <scalar T>
    void adamw_update(std::span<const adamw_buffers<pointer<T>, pointer<const T>>> parameters,
                      pointer<const double> norm = nullptr) const
    {
        std::vector<adamw_buffers<T*, const T*>> views;
        for (const auto& b : parameters) views.push_back({raw(b.p), raw(b.m), raw(b.v), raw(b.g), b.size, b.coefficients});
        run([&](const Kernels& K) { K.adamw_update(std::span<const adamw_buffers<T*, const T*>>(views), raw(norm)); });
    }

private:
    template <class T>
    static std::vector<buffer_view<T*>> raw_views(std::span<const buffer_view<device_ptr<T, staging_space>>> buffers)
    {
        std::vector<buffer_view<T*>> views;
        for (const auto& b : buffers) views.push_back({raw(b.data), b.size});
        return views;
    }

    template <class T>
    static T* raw(device_ptr<T, staging_space> p) noexcept
    {
        return p.device_address();
    }

    /// Runs one operation with staging memory open. Operations return nothing: their results stay in
    /// staging memory until downloaded.
    template <class F>
    void run(F&& operation) const
    {
        const staging_space::access_scope open;
        operation(kernels_);
    }

    Kernels kernels_{};
    std::shared_ptr<transfer_counts> counts_ = std::make_shared<transfer_counts>();
    std::shared_ptr<void> guard_;
};

/// The staging backend on the plain-loop kernels.
using staging_backend = basic_staging_backend<reference_backend>;

static_assert(optimizing_backend_for<staging_backend, float> && optimizing_backend_for<staging_backend, double>);
static_assert(!host_backend_for<staging_backend, float>);

}  // namespace dm2s2
