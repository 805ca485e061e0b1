#pragma once
/// \file
/// `cpu_backend`: float matrix products through the library's AVX-512 or AVX2 kernels where the
/// processor has them (fp32, or bf16 with fp32 sums, on AMX tiles where present), Eigen otherwise and
/// for double; element-wise kernels through xsimd (scalar loops when xsimd is disabled). Each
/// element-wise kernel runs its SIMD body over whole registers and finishes the tail with the scalar
/// loop, so every length is handled.
///
/// The backend owns its threads: `cpu_backend({.threads = 2})` splits every large product and
/// element-wise kernel over two threads, and models run attention heads in parallel on them. Copies
/// share one pool. The default is one thread, so nothing runs concurrently unless asked for.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <numbers>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "dm2s2/backend/attention_kernels.hpp"
#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/backend/row_kernels.hpp"
#include "dm2s2/backend/training_kernels.hpp"
#include "dm2s2/backend/cpu/amx_gemm.hpp"
#include "dm2s2/backend/cpu/avx2_gemm.hpp"
#include "dm2s2/backend/cpu/avx512_gemm.hpp"
#include "dm2s2/backend/cpu/cache_sizes.hpp"
#include "dm2s2/core/simd.hpp"
#include "dm2s2/core/thread_pool.hpp"

namespace dm2s2 {

/// Which kernels a `cpu_backend`'s float products run on.
enum class simd_kernels {
    widest,   ///< the widest the processor has: AVX-512, else AVX2 with FMA, else Eigen's
    avx2,     ///< AVX2 with FMA even where AVX-512 is present (to compare or test them), else Eigen's
    portable  ///< Eigen's products, the path the kernels are tested against
};

/// Settings of a `cpu_backend`.
struct cpu_options {
    std::size_t threads = 1;  ///< threads that run each kernel, the caller included
    /// Float products in fp32, or with operands rounded to bf16 (fp32 sums), or to TF32 (Eigen's
    /// products of rounded copies: a reference for GPUs, not a fast path). Double products are always
    /// double.
    matmul_precision precision = matmul_precision::fp32;
    /// How the kernels carry out bf16 products. `dot_product` needs AVX512_BF16 and falls back to
    /// `rounded_fma` where the processor lacks it; `tiles` needs AMX-BF16 and falls back to `fastest`;
    /// all give the same numbers up to the order of the sums (and `dot_product` and `tiles` treat
    /// subnormals as zero).
    bf16_kernel bf16 = bf16_kernel::fastest;
    /// The kernels float products run on; Eigen's (with rounded operands for bf16) where the processor
    /// lacks the chosen ones.
    simd_kernels kernels = simd_kernels::widest;
    /// Which of the pool's threads are bound to processors (`thread_binding`; Linux only): steadier
    /// timings where other thread pools share the process.
    thread_binding binding = thread_binding::none;
    /// The caches the products' blocking is derived from (`derive_gemm_blocking`): the running
    /// processor's (`detected_cpu_cache_sizes`) unless given. Any sizes give the same numbers; they
    /// change only the speed.
    std::optional<cpu_cache_sizes> caches = std::nullopt;
};

/// CPU backend: AVX-512, AVX2 or Eigen products, xsimd element-wise kernels, an owned thread pool.
struct cpu_backend : portable_backward_kernels,
                     host_memory_transfers,
                     host_attention_operations<cpu_backend>,
                     host_row_operations<cpu_backend>,
                     host_training_operations<cpu_backend> {
    static constexpr const char* name() noexcept { return "cpu"; }

    /// One thread.
    cpu_backend() = default;

    explicit cpu_backend(cpu_options options)
        : pool_(options.threads > 1 ? std::make_shared<thread_pool>(options.threads, options.binding) : nullptr),
          precision_(options.precision),
          bf16_(options.bf16),
          kernels_(options.kernels),
          caches_(options.caches.value_or(detected_cpu_cache_sizes()))
    {
        if (options.threads == 0) throw config_error("cpu_backend: threads must be at least 1");
    }

    /// Threads each kernel runs on.
    std::size_t threads() const noexcept { return pool_ ? pool_->size() : 1; }

    /// The processor each worker thread is bound to (`cpu_options::binding`); empty when unbound.
    std::vector<int> worker_cpus() const { return pool_ ? pool_->worker_cpus() : std::vector<int>{}; }

    /// How float products are computed.
    matmul_precision precision() const noexcept { return precision_; }

    /// The kernels float products use on this processor, for reports: "avx512-fp32", "amx-bf16" (AMX
    /// tiles), "avx512-bf16-dot" (`vdpbf16ps`), "avx512-bf16-rounded-fma", "avx2-fp32",
    /// "avx2-bf16-rounded-fma", "eigen", "eigen-bf16-rounded" or "eigen-tf32-rounded".
    const char* float_kernels() const noexcept
    {
        const auto path = float_path();
        if (!path) {
            switch (precision_) {
            case matmul_precision::bf16: return "eigen-bf16-rounded";
            case matmul_precision::tf32: return "eigen-tf32-rounded";
            default: return "eigen";
            }
        }
        if (path->isa == kernel_isa::amx) return "amx-bf16";
        const bool wide = path->isa == kernel_isa::avx512;
        switch (path->format) {
        case operand_format::rounded_bf16: return wide ? "avx512-bf16-rounded-fma" : "avx2-bf16-rounded-fma";
        case operand_format::bf16_pairs: return "avx512-bf16-dot";
        default: return wide ? "avx512-fp32" : "avx2-fp32";
        }
    }

    /// The caches the products' blocking is derived from.
    const cpu_cache_sizes& cache_sizes() const noexcept { return caches_; }

    /// The blocking of float products on the library's AVX-512 or AVX2 kernels (`gemm_blocking`);
    /// nothing where they run elsewhere (Eigen's products, AMX tiles).
    std::optional<detail::blocked::gemm_blocking> product_blocking() const noexcept
    {
        std::optional<detail::blocked::gemm_blocking> blocking;
        if (const auto path = float_path(); path && path->isa != kernel_isa::amx)
            with_kernel_set(path->isa, [&]<class K>(K) { blocking = blocking_for<K>(); });
        return blocking;
    }

    /// Whether `pack_weight` packs float weights for this backend's products, rather than leaving them
    /// as they are: exactly for fp32 products on the library's kernels, and, where `allowed` is
    /// `weight_rounding::bf16`, rounded for bf16 products by FMA (`bf16_kernel::rounded_fma`), by
    /// `vdpbf16ps` (as bf16 pairs, half the memory: `packed_form::bf16_pairs`) or on AMX tiles (as bf16,
    /// half the memory: `packed_form::bf16_tiles`).
    bool reads_packed_weights(weight_rounding allowed = weight_rounding::none) const noexcept
    {
        return packed_weight_path(allowed).has_value();
    }

    template <class F>
    void parallel_for(std::size_t count, F&& task) const
    {
        if (pool_) {
            pool_->parallel_for(count, task);
        } else {
            for (std::size_t i = 0; i < count; ++i) task(i);
        }
    }

    /// C = alpha op(A) op(B) + beta C, one block of C per thread (`for_each_product_block`). Where the
    /// threads can split C by rows, the library's kernels pack op(B) once, a slice of depth at a time,
    /// the threads sharing the work, so that no thread packs what another packs too
    /// (`gemm_with_shared_b`); the sums are the same bit for bit. AMX tiles always pack op(B) once so
    /// (`gemm_on_tiles`).
    template <scalar T>
    void gemm(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
              const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) const
    {
        if (m == 0 || n == 0) return;
        if constexpr (std::is_same_v<T, float>) {
            if (gemm_on_tiles(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
            if (gemm_with_shared_b(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
        }
        for_each_product_block<T>(
            m, n, k, product_split::longer_side, [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
                gemm_block(ta, tb, i1 - i0, j1 - j0, k, alpha, a + (ta == transpose::no ? i0 * lda : i0), lda,
                           b + (tb == transpose::yes ? j0 * ldb : j0), ldb, beta, c + i0 * ldc + j0, ldc);
            });
    }

    /// W [n, k] (row-major, contiguous) packed once for `gemm_packed`, where this backend's products
    /// read packed weights (`reads_packed_weights(allowed)`): exactly for fp32 products, rounded to
    /// bf16 for bf16 products where `allowed` says so (as bf16 pairs for `vdpbf16ps`, as bf16 tiles on
    /// AMX). Elsewhere nothing, and the weight stays as it is.
    template <scalar T>
    std::optional<packed_matrix> pack_weight(const T* w, std::size_t n, std::size_t k,
                                             weight_rounding allowed = weight_rounding::none) const
    {
        if constexpr (std::is_same_v<T, float>) {
            if (const auto path = packed_weight_path(allowed); path && n > 0 && k > 0) {
                if (path->isa == kernel_isa::amx) {
                    packed_matrix packed(n, k, weight_rounding::bf16, packed_form::bf16_tiles);
                    pack_tiles(w, k, true, n, k, reinterpret_cast<std::uint32_t*>(packed.data()));
                    return packed;
                }
                packed_matrix packed(n, k, path->format == operand_format::fp32 ? weight_rounding::none : weight_rounding::bf16,
                                     packed_form_of(*path));
                with_kernel_set(path->isa, [&]<class K>(K) {
                    with_format<K>(path->format,
                                   [&]<operand_format F>() { detail::blocked::pack_weight<K, F>(w, n, k, k, packed); });
                });
                return packed;
            }
        }
        return std::nullopt;
    }

    /// C[m, n] = alpha A[m, k] Wᵀ + beta C with W packed by `pack_weight`, then `finish` applied to C
    /// (a bias row, an activation): the same numbers as `gemm` on the plain W (as packed: rounded, where
    /// it was) followed by `add_row_vector` and `gelu`. Large products are cut among the threads by
    /// rows (W is packed already, so no thread packs what another packs too), and each tile of C is
    /// finished as soon as its sum is complete, while it is still in cache. A backend that cannot read
    /// W as it is packed (another precision, bf16 products given an exact W, no SIMD kernels, the other
    /// `packed_form`) unpacks it first.
    void gemm_packed(std::size_t m, float alpha, const float* a, std::size_t lda, const packed_matrix& w, float beta, float* c,
                     std::size_t ldc, product_epilogue<float> finish = {}) const
    {
        const std::size_t n = w.rows(), k = w.cols();
        if (m == 0 || n == 0) return;
        const bool finishing = finish.bias != nullptr || finish.act != activation::identity;
        // fp32 products read either float form as it is (rounded values are floats too); bf16 products
        // need the values rounded, `vdpbf16ps` as pairs and tiles as tiles.
        const auto path = packed_weight_path(w.rounding());
        if (!path || packed_form_of(*path) != w.form()) {
            std::vector<float> plain(n * k);
            w.unpack(plain.data());
            gemm(transpose::no, transpose::yes, m, n, k, alpha, a, lda, plain.data(), k, beta, c, ldc);
            if (finishing)
                for_each_range(m, row_grain(n), [&](std::size_t first, std::size_t last) {
                    finish_rows(c + first * ldc, last - first, n, ldc, std::size_t{0}, finish);
                });
            return;
        }
        const auto tile_done = [&](float* tile, std::size_t rows, std::size_t cols, std::size_t first_col) {
            if (finishing) finish_rows(tile, rows, cols, ldc, first_col, finish);
        };
        // The kernels read B only through vector loads, which may alias the floats.
        const auto* words = reinterpret_cast<const std::uint32_t*>(w.data());
        if (path->isa == kernel_isa::amx) {
            multiply_tiles(transpose::no, m, n, k, alpha, a, lda, words, beta, c, ldc, tile_done);
            return;
        }
        with_kernel_set(path->isa, [&]<class K>(K) {
            with_format<K>(path->format, [&]<operand_format F>() {
                multiply_packed<K, F>(m, n, k, alpha, a, lda, words, beta, c, ldc, tile_done);
            });
        });
    }

    template <scalar T>
    void add_row_vector(T* x, std::size_t rows, std::size_t cols, std::size_t ldx, const T* v) const
    {
        for_each_range(rows, row_grain(cols), [&](std::size_t first, std::size_t last) {
            for (std::size_t r = first; r < last; ++r) add(x + r * ldx, v, x + r * ldx, cols);
        });
    }

    template <scalar T>
    void gelu(T* x, std::size_t n) const
    {
        for_each_range(n, element_grain, [&](std::size_t first, std::size_t last) { gelu_range(x + first, last - first); });
    }

    template <scalar T>
    void tanh(T* x, std::size_t n) const
    {
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        for (; i + batch::size <= n; i += batch::size) xsimd::tanh(batch::load_unaligned(x + i)).store_unaligned(x + i);
#endif
        for (; i < n; ++i) x[i] = std::tanh(x[i]);
    }

    template <scalar T>
    void masked_softmax(T* x, std::size_t n, const std::uint8_t* keep) const
    {
        constexpr T minus_inf = -std::numeric_limits<T>::infinity();
        if (keep != nullptr)
            for (std::size_t i = 0; i < n; ++i)
                if (keep[i] == 0) x[i] = minus_inf;
        T max = max_of(x, n);
        if (max == minus_inf) {  // nothing kept: no weight anywhere, and no NaN from (-inf) - (-inf)
            for (std::size_t i = 0; i < n; ++i) x[i] = T(0);
            return;
        }
        T sum = T(0);
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        batch acc(T(0));
        for (; i + batch::size <= n; i += batch::size) {
            const batch e = xsimd::exp(batch::load_unaligned(x + i) - max);
            e.store_unaligned(x + i);
            acc += e;
        }
        sum = simd::reduce_sum(acc);
#endif
        for (; i < n; ++i) sum += x[i] = std::exp(x[i] - max);
        scale(x, n, T(1) / sum);
        if (keep != nullptr)  // exactly 0 even where a kept NaN made the sum NaN
            for (std::size_t j = 0; j < n; ++j)
                if (keep[j] == 0) x[j] = T(0);
    }

    template <scalar T>
    void layer_norm(const T* x, const T* residual, T* y, std::size_t rows, std::size_t cols, const T* gamma, const T* beta,
                    T eps) const
    {
        for_each_range(rows, row_grain(cols), [&](std::size_t first, std::size_t last) {
            for (std::size_t r = first; r < last; ++r) {
                const T* xr = x + r * cols;
                T* yr = y + r * cols;
                if (residual != nullptr) {
                    add(xr, residual + r * cols, yr, cols);
                } else if (yr != xr) {
                    for (std::size_t j = 0; j < cols; ++j) yr[j] = xr[j];
                }
                const T mean = sum_of(yr, cols) / static_cast<T>(cols);
                const T var = centered_square_sum(yr, cols, mean) / static_cast<T>(cols);
                const T inv = T(1) / std::sqrt(var + eps);
                std::size_t j = 0;
#if DM2S2_HAS_XSIMD
                using batch = simd::batch<T>;
                for (; j + batch::size <= cols; j += batch::size) {
                    const batch v = (batch::load_unaligned(yr + j) - mean) * inv;
                    xsimd::fma(v, batch::load_unaligned(gamma + j), batch::load_unaligned(beta + j)).store_unaligned(yr + j);
                }
#endif
                for (; j < cols; ++j) yr[j] = (yr[j] - mean) * inv * gamma[j] + beta[j];
            }
        });
    }

    /// `portable_backward_kernels::gelu_backward` cut among the threads: each element's formula as
    /// there, so the same numbers on any thread count.
    template <scalar T>
    void gelu_backward(const T* x, T* grad, std::size_t n) const
    {
        for_each_range(n, element_grain, [&](std::size_t first, std::size_t last) {
            portable_backward_kernels::gelu_backward(x + first, grad + first, last - first);
        });
    }

    /// `portable_backward_kernels::add_column_sums` with the columns cut among the threads: each
    /// column's sum as there, so the same numbers on any thread count.
    template <scalar T>
    void add_column_sums(const T* x, std::size_t rows, std::size_t cols, std::size_t ldx, T* out) const
    {
        for_each_range(cols, row_grain(rows),
                       [&](std::size_t first, std::size_t last) { add_column_sums_range(x, rows, ldx, first, last, out); });
    }

    /// `portable_backward_kernels::layer_norm_backward` cut among the threads: the row statistics by
    /// rows, dγ and dβ by columns (each column adding the rows' shares in row order, as there), then
    /// dv by rows (after dγ has read dy, which dv may be): the same numbers on any thread count.
    template <scalar T>
    void layer_norm_backward(const T* v, const T* dy, T* dv, std::size_t rows, std::size_t cols, const T* gamma, T eps, T* dgamma,
                             T* dbeta) const
    {
        std::vector<row_statistics> stats(rows);
        const auto by_rows = [&](auto&& row) {
            for_each_range(rows, row_grain(cols), [&](std::size_t first, std::size_t last) {
                for (std::size_t r = first; r < last; ++r) row(r);
            });
        };
        by_rows([&](std::size_t r) { stats[r] = layer_norm_statistics(v + r * cols, cols, eps); });
        for_each_range(cols, row_grain(rows), [&](std::size_t first, std::size_t last) {
            for (std::size_t r = 0; r < rows; ++r)
                layer_norm_parameter_gradients(v + r * cols, dy + r * cols, first, last, stats[r], dgamma, dbeta);
        });
        by_rows(
            [&](std::size_t r) { layer_norm_input_gradient(v + r * cols, dy + r * cols, dv + r * cols, cols, gamma, stats[r]); });
    }

    /// out[i] = a[i] + b[i] (out may alias a or b), in SIMD registers: the same sums as one at a time.
    template <scalar T>
    static void add(const T* a, const T* b, T* out, std::size_t n)
    {
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        for (; i + batch::size <= n; i += batch::size)
            (batch::load_unaligned(a + i) + batch::load_unaligned(b + i)).store_unaligned(out + i);
#endif
        for (; i < n; ++i) out[i] = a[i] + b[i];
    }

private:
    using operand_format = detail::blocked::operand_format;

    /// The instruction sets the library has kernels for.
    enum class kernel_isa { amx, avx512, avx2 };

    /// Which kernels multiply floats for this backend, and how they pack the operands.
    struct kernel_path {
        kernel_isa isa;
        operand_format format;
    };

    /// The kernels float products run on; none where Eigen's are used.
    std::optional<kernel_path> float_path() const noexcept
    {
        if (precision_ == matmul_precision::tf32) return std::nullopt;  // Eigen's products of rounded copies
        if (kernels_ == simd_kernels::widest && detail::avx512::has_fp32_kernels()) {
            if (precision_ == matmul_precision::fp32) return kernel_path{kernel_isa::avx512, operand_format::fp32};
            switch (bf16_kernel_used()) {
            case bf16_kernel::tiles: return kernel_path{kernel_isa::amx, operand_format::bf16_pairs};
            case bf16_kernel::dot_product: return kernel_path{kernel_isa::avx512, operand_format::bf16_pairs};
            default: return kernel_path{kernel_isa::avx512, operand_format::rounded_bf16};
            }
        }
        if (kernels_ != simd_kernels::portable && detail::avx2::has_fp32_kernels())
            return kernel_path{kernel_isa::avx2,
                               precision_ == matmul_precision::fp32 ? operand_format::fp32 : operand_format::rounded_bf16};
        return std::nullopt;
    }

    /// The bf16 kernel asked for, where the processor has it; otherwise what it falls back to.
    bf16_kernel bf16_kernel_used() const noexcept
    {
        switch (bf16_) {
        case bf16_kernel::tiles: return detail::amx::has_bf16_tiles() ? bf16_kernel::tiles : detail::fastest_bf16_kernel_here();
        case bf16_kernel::dot_product:
            return detail::avx512::has_bf16_dot_products() ? bf16_kernel::dot_product : bf16_kernel::rounded_fma;
        case bf16_kernel::rounded_fma: return bf16_kernel::rounded_fma;
        default: return detail::fastest_bf16_kernel_here();
        }
    }

    /// The kernels that read packed weights whose values may be rounded as `allowed` says: fp32
    /// products on the library's kernels; where rounding is allowed, bf16 products (by FMA, by
    /// `vdpbf16ps`, on AMX tiles). None where the products multiply plain weights (Eigen's) or need
    /// values the packing may not round.
    std::optional<kernel_path> packed_weight_path(weight_rounding allowed) const noexcept
    {
        const auto path = float_path();
        if (!path) return std::nullopt;
        if (path->format == operand_format::fp32 || allowed == weight_rounding::bf16) return path;
        return std::nullopt;
    }

    /// The form of the weights `path`'s products read packed.
    static packed_form packed_form_of(kernel_path path) noexcept
    {
        if (path.isa == kernel_isa::amx) return packed_form::bf16_tiles;
        return path.format == operand_format::bf16_pairs ? packed_form::bf16_pairs : packed_form::fp32_panels;
    }

    /// Calls f.template operator()<F>() with `format` as a template argument, among the formats kernel
    /// set K multiplies (`bf16_pairs` only where it has `vdpbf16ps`).
    template <class K, class F>
    static void with_format(operand_format format, F&& f)
    {
        switch (format) {
        case operand_format::fp32: return f.template operator()<operand_format::fp32>();
        case operand_format::rounded_bf16: return f.template operator()<operand_format::rounded_bf16>();
        case operand_format::bf16_pairs:
            if constexpr (K::bf16_dot_products) return f.template operator()<operand_format::bf16_pairs>();
            break;
        }
    }

    /// Calls f with the kernel set (`micro_kernel_set`) of `isa` (AVX-512's for AMX, whose products
    /// have their own functions), a value of an empty type.
    template <class F>
    static void with_kernel_set([[maybe_unused]] kernel_isa isa, [[maybe_unused]] F&& f)
    {
#if DM2S2_HAS_X86_KERNELS
        if (isa != kernel_isa::avx2) f(detail::avx512::avx512_kernels{});
        else f(detail::avx2::avx2_kernels{});
#endif
    }

    /// The blocking of products on kernel set K for this backend's caches.
    template <class K>
    detail::blocked::gemm_blocking blocking_for() const noexcept
    {
        return detail::blocked::derive_gemm_blocking(K::mr, caches_);
    }

    /// How `for_each_product_block` cuts a product among the threads.
    enum class product_split {
        longer_side,  ///< along the longer side of C, so that each thread packs only its share of the wider operand
        /// by rows where each thread gets at least `min_rows_per_thread` (B is packed already: nothing is
        /// packed twice); with fewer rows, along the longer side, so that each thread reads only its share
        /// of B from memory, which then costs more than packing all of the few rows of A
        rows
    };

    /// Rows each thread needs before `product_split::rows` cuts by rows. Short sequences ran faster cut by
    /// columns (benchmarks/README.md, step 27).
    static constexpr std::size_t min_rows_per_thread = 64;

    /// Rows and columns at which a float product may be cut: whole panels of the kernels that run it.
    template <scalar T>
    std::pair<std::size_t, std::size_t> block_alignment() const
    {
        std::pair<std::size_t, std::size_t> align{8, 16};
        if constexpr (std::is_same_v<T, float>)
            if (const auto path = float_path()) {
                if (path->isa == kernel_isa::amx) return {detail::amx::block, detail::amx::block};
                with_kernel_set(path->isa, [&]<class K>(K) { align = {K::mr, detail::blocked::nr}; });
            }
        return align;
    }

    /// Whether a product of m × n × k is worth cutting among threads: below about a million
    /// multiply-adds a dispatch costs more than it saves.
    static bool worth_splitting(std::size_t m, std::size_t n, std::size_t k) noexcept
    {
        constexpr double parallel_flops = 1 << 20;
        return 2.0 * double(m) * double(n) * double(k) >= parallel_flops;
    }

    /// Runs block(i0, i1, j0, j1) on the block rows [i0, i1) × columns [j0, j1) of a product's C [m, n]
    /// over k, one block per thread, cut as `split` says at whole panels (`block_alignment`). Small
    /// products run whole on the calling thread.
    template <scalar T, class F>
    void for_each_product_block(std::size_t m, std::size_t n, std::size_t k, product_split split, F&& block) const
    {
        const std::size_t parts = worth_splitting(m, n, k) ? threads() : 1;
        if (parts == 1) {
            block(std::size_t{0}, m, std::size_t{0}, n);
            return;
        }
        const auto [row_align, col_align] = block_alignment<T>();
        const bool by_rows = (split == product_split::rows && m >= parts * std::max(row_align, min_rows_per_thread)) || m >= n;
        const std::size_t extent = by_rows ? m : n, align = by_rows ? row_align : col_align;
        const std::size_t chunk = ((extent + parts - 1) / parts + align - 1) / align * align;
        parallel_for(parts, [&](std::size_t part) {
            const std::size_t begin = part * chunk, end = std::min(extent, begin + chunk);
            if (begin >= end) return;
            if (by_rows) block(begin, end, std::size_t{0}, n);
            else block(std::size_t{0}, m, begin, end);
        });
    }

    /// C[m, n] = alpha A op(B) + beta C with op(B) [k, n] packed already as F's words in `packed_layout`,
    /// cut among the threads by rows (`product_split::rows`); tile_done finishes each tile of C as
    /// `gemm_accumulate_packed` completes it.
    template <class K, operand_format F, class TileDone>
    void multiply_packed(std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a, std::size_t lda,
                         const std::uint32_t* b, float beta, float* c, std::size_t ldc, TileDone&& tile_done) const
    {
        const bool add_to_c = beta != 0.0f;
        for_each_product_block<float>(
            m, n, k, product_split::rows, [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
                if (add_to_c) scale_matrix(c + i0 * ldc + j0, i1 - i0, j1 - j0, ldc, beta);
                detail::blocked::gemm_accumulate_packed<K, F>(i1 - i0, j0, j1, alpha, a + i0 * lda, lda, b, n, k, c + i0 * ldc,
                                                              ldc, add_to_c, blocking_for<K>(), tile_done);
            });
    }

    /// C[m, n] = alpha op(A) op(B) + beta C on AMX tiles with op(B) packed already in `tile_layout`
    /// (`b`), cut among the threads by rows (by columns when there are too few rows for a block of 32
    /// each); tile_done finishes each block of C as `amx::multiply` completes it.
    template <class TileDone>
    void multiply_tiles([[maybe_unused]] transpose ta, [[maybe_unused]] std::size_t m, [[maybe_unused]] std::size_t n,
                        [[maybe_unused]] std::size_t k, [[maybe_unused]] float alpha, [[maybe_unused]] const float* a,
                        [[maybe_unused]] std::size_t lda, [[maybe_unused]] const std::uint32_t* b, [[maybe_unused]] float beta,
                        [[maybe_unused]] float* c, [[maybe_unused]] std::size_t ldc, [[maybe_unused]] TileDone&& tile_done) const
    {
#if DM2S2_HAS_AMX_KERNELS
        const bool add_to_c = beta != 0.0f, transposed = ta == transpose::yes;
        for_each_product_block<float>(m, n, k, product_split::rows,
                                      [&](std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
                                          if (add_to_c) scale_matrix(c + i0 * ldc + j0, i1 - i0, j1 - j0, ldc, beta);
                                          detail::amx::multiply(i1 - i0, j0, j1, alpha, transposed ? a + i0 : a + i0 * lda, lda,
                                                                transposed, b, k, c + i0 * ldc, ldc, add_to_c, tile_done);
                                      });
#endif
    }

    /// C = alpha op(A) op(B) + beta C on AMX tiles, where this backend's products run on them (k > 0):
    /// op(B) is packed into `tile_layout` first by all threads, a block of columns each, into the
    /// calling thread's buffer (kept for later products), then multiplied as a packed weight is.
    /// Returns false, having done nothing, elsewhere.
    bool gemm_on_tiles(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                       std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) const
    {
        const auto path = float_path();
        if (!path || path->isa != kernel_isa::amx || k == 0) return false;
        std::uint32_t* const packed_b = detail::blocked::packing_buffer<2>(tile_layout::size(n, k));
        pack_tiles(b, ldb, tb == transpose::yes, n, k, packed_b);
        multiply_tiles(ta, m, n, k, alpha, a, lda, packed_b, beta, c, ldc, [](float*, std::size_t, std::size_t, std::size_t) {});
        return true;
    }

    /// Packs op(B) [k, n] into `tile_layout` (`out`), the threads sharing its blocks of columns. Depth
    /// p, column j of op(B) is b[j·ldb + p] when `k_contiguous`, else b[p·ldb + j].
    void pack_tiles([[maybe_unused]] const float* b, [[maybe_unused]] std::size_t ldb, [[maybe_unused]] bool k_contiguous,
                    [[maybe_unused]] std::size_t n, [[maybe_unused]] std::size_t k, [[maybe_unused]] std::uint32_t* out) const
    {
#if DM2S2_HAS_AMX_KERNELS
        const std::size_t tiles = tile_layout::column_tiles(n);
        const std::size_t parts = worth_splitting(n, k, 16) ? std::min(threads(), tiles) : 1;
        const std::size_t chunk = (tiles + parts - 1) / parts;
        parallel_for(parts, [&](std::size_t part) {
            const std::size_t first = part * chunk, last = std::min(tiles, first + chunk);
            if (first < last) detail::amx::pack_b(b, ldb, k_contiguous, n, k, first, last, out);
        });
#endif
    }

    /// A slice of op(B) packed for all threads (all of its columns, `packed_layout::kc` units deep), at
    /// most this many words (16 MiB): BERT-base's widest is 3072 × 256 (0.75 Mi). A wider op(B), such as
    /// a vocabulary's output layer, is packed slice by slice by each thread as it goes, so that no
    /// product holds such a copy.
    static constexpr std::size_t max_shared_b_words = std::size_t{1} << 22;

    /// C = alpha A op(B) + beta C on the library's kernels, one slice of op(B)'s depth at a time: the
    /// slice packed into the calling thread's buffer (kept for later products) by all threads, then C
    /// split among the threads by rows, each packing only its own rows of A. Otherwise a product cut by
    /// columns packs all of A on every thread, and one cut by rows all of B (benchmarks/README.md,
    /// step 20). Returns false, having done nothing, where it does not apply: one thread, a small
    /// product, too few rows for a whole panel per thread, Aᵀ (packing A from columns is the slow
    /// direction either way), or a slice of op(B) over `max_shared_b_words`.
    bool gemm_with_shared_b(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const float* a,
                            std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) const
    {
        const auto path = float_path();
        const std::size_t parts = threads();
        if (!path || ta == transpose::yes || parts == 1 || k == 0 || !worth_splitting(m, n, k) ||
            m < parts * block_alignment<float>().first ||
            packed_layout::padded_columns(n) * std::min(packed_layout::kc, k) > max_shared_b_words)
            return false;
        with_kernel_set(path->isa, [&]<class K>(K) {
            with_format<K>(path->format, [&]<operand_format F>() {
                using namespace detail::blocked;
                // One slice of depth at a time: the threads pack an equal share of its panels each (a slice
                // of a single block of columns, such as 768 × 256, no longer falls to one thread while the
                // other waits), then multiply their rows of A by it, adding into C, while the slice is
                // still in cache (benchmarks/README.md, step 34).
                constexpr std::size_t values_per_unit = F == operand_format::bf16_pairs ? 2 : 1;
                const std::size_t padded = packed_layout::padded_columns(n), panels = padded / nr;
                std::uint32_t* const packed_b = packing_buffer<2>(padded * std::min(kc, units_of<F>(k)));
                for (std::size_t first = 0; first < k; first += values_per_unit * kc) {
                    const std::size_t depth = std::min(values_per_unit * kc, k - first);
                    const float* const b_slice = b + (tb == transpose::yes ? first : first * ldb);
                    parallel_for(parts, [&](std::size_t part) {
                        const std::size_t begin = panels * part / parts * nr, end = std::min(n, panels * (part + 1) / parts * nr);
                        if (begin < end) pack_columns<K, F>(b_slice, ldb, tb == transpose::yes, n, depth, begin, end, packed_b);
                    });
                    multiply_packed<K, F>(m, n, depth, alpha, a + first, lda, packed_b, first == 0 ? beta : 1.0f, c, ldc,
                                          [](float*, std::size_t, std::size_t, std::size_t) {});
                }
            });
        });
        return true;
    }

    /// One thread's product: the library's kernels for float where present, else Eigen.
    template <scalar T>
    void gemm_block(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a, std::size_t lda,
                    const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc) const
    {
        if constexpr (std::is_same_v<T, float>) {
            if (const auto path = float_path(); path && k > 0) {
                // beta = 0: the kernels overwrite C, which may hold anything (NaN, or nothing yet).
                const bool add_to_c = beta != 0.0f;
                if (add_to_c) scale_matrix(c, m, n, ldc, beta);
                with_kernel_set(path->isa, [&]<class K>(K) {
                    detail::blocked::gemm_accumulate<K>(path->format, ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc, add_to_c,
                                                        blocking_for<K>());
                });
                return;
            }
            if (precision_ != matmul_precision::fp32) {
                rounded_gemm(precision_, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
                return;
            }
        }
        eigen_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }

    /// bf16 or tf32 products without the library's kernels: Eigen's product of copies rounded to
    /// `precision`.
    static void rounded_gemm(matmul_precision precision, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k,
                             float alpha, const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                             std::size_t ldc)
    {
        const auto round = precision == matmul_precision::tf32 ? round_to_tf32 : round_to_bfloat16;
        // A stored matrix of rows × cols with leading dimension ld, every value rounded.
        const auto rounded = [round](const float* x, std::size_t rows, std::size_t cols, std::size_t ld) {
            std::vector<float> copy(rows == 0 ? 0 : (rows - 1) * ld + cols);
            for (std::size_t i = 0; i < copy.size(); ++i) copy[i] = round(x[i]);
            return copy;
        };
        const bool at = ta == transpose::yes, bt = tb == transpose::yes;
        const auto ra = rounded(a, at ? k : m, at ? m : k, lda), rb = rounded(b, bt ? n : k, bt ? k : n, ldb);
        eigen_gemm(ta, tb, m, n, k, alpha, ra.data(), lda, rb.data(), ldb, beta, c, ldc);
    }

    /// C = beta C, where beta == 0 overwrites (C may hold NaN).
    template <scalar T>
    static void scale_matrix(T* c, std::size_t m, std::size_t n, std::size_t ldc, T beta)
    {
        if (beta == T(1)) return;
        for (std::size_t i = 0; i < m; ++i) {
            T* row = c + i * ldc;
            if (beta == T(0)) std::fill_n(row, n, T(0));
            else scale(row, n, beta);
        }
    }

    /// Eigen's blocked product over views of the buffers.
    template <scalar T>
    static void eigen_gemm(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, T alpha, const T* a,
                           std::size_t lda, const T* b, std::size_t ldb, T beta, T* c, std::size_t ldc)
    {
        using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        using const_map = Eigen::Map<const matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
        using map = Eigen::Map<matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
        const auto rows = [](std::size_t r) { return static_cast<Eigen::Index>(r); };
        const_map A(a, rows(ta == transpose::yes ? k : m), rows(ta == transpose::yes ? m : k), Eigen::OuterStride<>(rows(lda)));
        const_map B(b, rows(tb == transpose::yes ? n : k), rows(tb == transpose::yes ? k : n), Eigen::OuterStride<>(rows(ldb)));
        map C(c, rows(m), rows(n), Eigen::OuterStride<>(rows(ldc)));
        if (k == 0) {
            if (beta == T(0)) C.setZero();
            else C *= beta;
            return;
        }
        const auto product = [&](const auto& opa, const auto& opb) {
            if (beta == T(0)) {
                C.noalias() = alpha * opa * opb;
            } else {
                if (beta != T(1)) C *= beta;
                C.noalias() += alpha * opa * opb;
            }
        };
        if (ta == transpose::no && tb == transpose::no) product(A, B);
        else if (ta == transpose::no) product(A, B.transpose());
        else if (tb == transpose::no) product(A.transpose(), B);
        else product(A.transpose(), B.transpose());
    }

    template <scalar T>
    static void gelu_range(T* x, std::size_t n)
    {
        const T inv_sqrt2 = static_cast<T>(1.0 / std::numbers::sqrt2);
#if DM2S2_HAS_XSIMD
        // The tail goes through the vector formula too, so that each value's GELU does not depend on
        // where it lies in the range: a product that applies GELU tile by tile gives what a pass over
        // the whole matrix gives.
        using batch = simd::batch<T>;
        const auto gelu_batch = [&](batch v) { return T(0.5) * v * (T(1) + xsimd::erf(v * inv_sqrt2)); };
        std::size_t i = 0;
        for (; i + batch::size <= n; i += batch::size) gelu_batch(batch::load_unaligned(x + i)).store_unaligned(x + i);
        if (i < n) {
            alignas(64) T tail[batch::size] = {};
            std::copy(x + i, x + n, tail);
            gelu_batch(batch::load_aligned(tail)).store_aligned(tail);
            std::copy(tail, tail + (n - i), x + i);
        }
#else
        for (std::size_t i = 0; i < n; ++i) x[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * inv_sqrt2));
#endif
    }

    /// `finish` applied to rows × cols of C (row stride ldc) whose first column is column `first_col`
    /// of the product: the bias values from there, then the activation.
    template <scalar T>
    static void finish_rows(T* c, std::size_t rows, std::size_t cols, std::size_t ldc, std::size_t first_col,
                            const product_epilogue<T>& finish)
    {
        for (std::size_t r = 0; r < rows; ++r) {
            T* const row = c + r * ldc;
            if (finish.bias != nullptr) add(row, finish.bias + first_col, row, cols);
            if (finish.act == activation::gelu) gelu_range(row, cols);
        }
    }

    /// Runs body(begin, end) over [0, n) in pieces of at least `grain`, one piece per thread.
    template <class F>
    void for_each_range(std::size_t n, std::size_t grain, F&& body) const
    {
        const std::size_t parts = std::max<std::size_t>(1, std::min(threads(), n / std::max<std::size_t>(grain, 1)));
        const std::size_t chunk = (n + parts - 1) / parts;
        parallel_for(parts, [&](std::size_t part) {
            const std::size_t begin = part * chunk, end = std::min(n, begin + chunk);
            if (begin < end) body(begin, end);
        });
    }

    static constexpr std::size_t element_grain = 1 << 14;  // elements per thread worth a dispatch
    static std::size_t row_grain(std::size_t cols)
    {
        return std::max<std::size_t>(1, element_grain / std::max<std::size_t>(cols, 1));
    }

    std::shared_ptr<thread_pool> pool_;
    matmul_precision precision_ = matmul_precision::fp32;
    bf16_kernel bf16_ = bf16_kernel::fastest;
    simd_kernels kernels_ = simd_kernels::widest;
    cpu_cache_sizes caches_ = detected_cpu_cache_sizes();

    template <scalar T>
    static void scale(T* x, std::size_t n, T factor)
    {
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        for (; i + batch::size <= n; i += batch::size) (batch::load_unaligned(x + i) * factor).store_unaligned(x + i);
#endif
        for (; i < n; ++i) x[i] *= factor;
    }

    template <scalar T>
    static T sum_of(const T* x, std::size_t n)
    {
        T sum = T(0);
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        batch acc(T(0));
        for (; i + batch::size <= n; i += batch::size) acc += batch::load_unaligned(x + i);
        sum = simd::reduce_sum(acc);
#endif
        for (; i < n; ++i) sum += x[i];
        return sum;
    }

    template <scalar T>
    static T centered_square_sum(const T* x, std::size_t n, T mean)
    {
        T sum = T(0);
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        batch acc(T(0));
        for (; i + batch::size <= n; i += batch::size) {
            const batch d = batch::load_unaligned(x + i) - mean;
            acc = xsimd::fma(d, d, acc);
        }
        sum = simd::reduce_sum(acc);
#endif
        for (; i < n; ++i) sum += (x[i] - mean) * (x[i] - mean);
        return sum;
    }

    template <scalar T>
    static T max_of(const T* x, std::size_t n)
    {
        T max = -std::numeric_limits<T>::infinity();
        std::size_t i = 0;
#if DM2S2_HAS_XSIMD
        using batch = simd::batch<T>;
        if (n >= batch::size) {
            batch acc(max);
            for (; i + batch::size <= n; i += batch::size) acc = xsimd::max(acc, batch::load_unaligned(x + i));
            max = simd::reduce_max(acc);
        }
#endif
        for (; i < n; ++i) max = x[i] > max ? x[i] : max;
        return max;
    }
};

static_assert(optimizing_backend_for<cpu_backend, float> && optimizing_backend_for<cpu_backend, double>);

}  // namespace dm2s2
