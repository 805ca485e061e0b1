// The encoder's matrix products, dm2s2 against OpenBLAS in the same process (benchmarks/README.md).
//
// For each BERT-base weight shape (out × in: 768 × 768, 3072 × 768, 768 × 3072) at W1's token count it
// times the three products of a linear layer: the forward x·Wᵀ, the input gradient dy·W and the weight
// gradient dyᵀ·x, and the forward again with W packed once beforehand (`cpu_backend::pack_weight`, as
// `model::pack_weights` holds it for inference; OpenBLAS then still gets the plain W). Rounds alternate
// the two sides, each after a short rest (`settle`), and the ratio reported is the median of the
// per-round ratios, so a slow spell of a shared machine falls on both; the share of the FMA peak is
// likewise taken against the register-only peak measured straight after dm2s2's product in each
// round. dm2s2's bf16 products (on the kernels `bf16_kernel::fastest` picks, with the packed weight
// rounded once) are timed in the same rounds, and reported against its fp32 ones. The results of the
// sides are also compared, so a wrong fast path cannot pass for a fast one.
//
// OpenBLAS is loaded at run time (libopenblas.so.0), so the build needs no BLAS; without it only the
// dm2s2 figures are printed. OpenBLAS 0.3.21 mistakes some recent processors for Prescott and then
// runs its generic kernels: set OPENBLAS_CORETYPE (benchmarks/compare.py does), and read the core
// name this program prints.
//
// dm2s2's threads, this program's main thread among them, are bound to processors
// (`thread_binding::caller_and_workers`) unless --unbound is given. Unbound, after OpenBLAS's calls
// the scheduler of a 2-core virtual machine often left both of dm2s2's threads on one processor, and
// a product ran at one thread's speed round after round. OpenBLAS's OpenMP threads are started
// before the binding (their own binding, OMP_PROC_BIND, is left as the environment sets it).
//
//   dm2s2_bench_products [--rows M] [--threads T] [--rounds R] [--l2-kib S] [--avx2] [--unbound] [--peaks-only]
// --l2-kib blocks dm2s2's products for a level 2 cache of S KiB instead of the processor's own
// (`cpu_options::caches`): what the blocking derived for another processor costs on this one.
// --avx2 runs dm2s2's products on its AVX2 kernels where the processor has wider ones
// (`simd_kernels::avx2`), against the AVX2 FMA peak: the AVX2 kernels measured on an AVX-512 machine.
// --peaks-only prints the register-only peaks alone, and the kernels fp32 and bf16 products run on
// (benchmarks/compare.py reads them).
// DM2S2_BENCH_SCALE=tiny shrinks the shapes for CI's smoke run.

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <dm2s2/dm2s2.hpp>

#include "bench_support.hpp"

namespace {

using dm2s2::transpose;

/// OpenBLAS's CBLAS entry points, when the library can be loaded.
struct openblas {
    using sgemm_fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
    sgemm_fn sgemm = nullptr;
    std::string core = "not found";

    explicit openblas(int threads)
    {
        void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
        if (lib == nullptr) return;
        sgemm = reinterpret_cast<sgemm_fn>(dlsym(lib, "cblas_sgemm"));
        const auto set_threads = reinterpret_cast<void (*)(int)>(dlsym(lib, "openblas_set_num_threads"));
        const auto corename = reinterpret_cast<const char* (*)()>(dlsym(lib, "openblas_get_corename"));
        if (sgemm == nullptr || set_threads == nullptr) {
            sgemm = nullptr;
            return;
        }
        set_threads(threads);
        core = corename != nullptr ? corename() : "unknown";
    }

    /// Runs one product large enough to use every thread, so that OpenMP starts them now.
    void start_threads() const
    {
        if (sgemm == nullptr) return;
        constexpr std::size_t side = 512;
        std::vector<float> x(side * side, 1.0f), y(side * side);
        (*this)(transpose::no, transpose::no, side, side, side, x.data(), side, x.data(), side, y.data(), side);
    }

    /// C = op(A)·op(B), row-major, like `backend.gemm` with alpha 1 and beta 0.
    void operator()(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda,
                    const float* b, std::size_t ldb, float* c, std::size_t ldc) const
    {
        constexpr int row_major = 101, no = 111, yes = 112;
        sgemm(row_major, ta == transpose::yes ? yes : no, tb == transpose::yes ? yes : no, int(m), int(n), int(k), 1.0f, a,
              int(lda), b, int(ldb), 0.0f, c, int(ldc));
    }
};

/// One product C[m × n] = op(A)·op(B) over depth k, as a linear layer of `out` × `in` weights computes it;
/// with `packed_weight`, B = Wᵀ is handed to dm2s2 packed.
struct product {
    std::string name;
    transpose ta, tb;
    std::size_t m, n, k;
    bool packed_weight = false;
};

std::vector<product> layer_products(std::size_t rows, std::size_t out, std::size_t in)
{
    return {{"x·Wᵀ", transpose::no, transpose::yes, rows, out, in},
            {"x·Wᵀ, W packed", transpose::no, transpose::yes, rows, out, in, true},
            {"dy·W", transpose::no, transpose::no, rows, in, out},
            {"dyᵀ·x", transpose::yes, transpose::no, out, in, rows}};
}

/// Whether two results of product p differ by at most bound·√k anywhere; otherwise says by how much.
bool agree(const std::vector<float>& x, const std::vector<float>& y, const product& p, double bound, const char* x_name,
           const char* y_name)
{
    double worst = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i)
        worst = std::max(worst, std::abs(double(x[i]) - double(y[i])) / std::sqrt(double(p.k)));
    if (worst <= bound) return true;
    std::fprintf(stderr, "dm2s2_bench_products: %s %s %zu × %zu × %zu differs from %s by %g·√k\n", x_name, p.name.c_str(), p.m,
                 p.n, p.k, y_name, worst);
    return false;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

/// How long each side rests before it is timed. After a call, OpenBLAS's OpenMP workers poll for
/// work for milliseconds (libgomp's GOMP_SPINCOUNT) and dm2s2's for 500 µs; timed straight after the
/// other library, a side shared its cores with those pollers; 10 ms let both sides measure on 2
/// threads what they measure on 1, where no poller competes (benchmarks/README.md, step 16).
constexpr std::chrono::milliseconds settle{10};

/// Seconds per call of f, over `calls` calls after one untimed call.
template <class F>
double seconds_per_call(F&& f, int calls)
{
    f();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / calls;
}

#if DM2S2_HAS_X86_KERNELS
/// Seconds for `rounds` rounds of 12 independent AVX2 FMA chains held in registers (8 lanes each).
__attribute__((target("avx2,fma"))) double avx2_chain_seconds(std::size_t rounds) noexcept
{
    constexpr int chains = 12;
    __m256 acc[chains];
    for (auto& a : acc) a = _mm256_setzero_ps();
    __m256 x = _mm256_set1_ps(1.0f), y = _mm256_set1_ps(0x1p-20f);
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t round = 0; round < rounds; ++round) {
#pragma GCC unroll 12
        for (int i = 0; i < chains; ++i) acc[i] = _mm256_fmadd_ps(x, y, acc[i]);
        asm volatile("" : "+x"(x), "+x"(y));  // the compiler may not fold rounds together
    }
    __m256 sum = acc[0];
    for (int i = 1; i < chains; ++i) sum = _mm256_add_ps(sum, acc[i]);
    asm volatile("" : : "x"(sum));
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
#endif

/// GFLOP/s of fp32 FMA (or of `vdpbf16ps`, when `Dot`) held in registers, on all the backend's threads
/// at once, for the kernels the backend uses: the ceiling no product of that kind can pass. Zero where
/// the instruction is missing.
template <bool Dot>
double register_peak_gflops(const dm2s2::cpu_backend& backend)
{
#if DM2S2_HAS_X86_KERNELS
    namespace avx512 = dm2s2::detail::avx512;
    const std::string kernels = backend.float_kernels();
    const bool wide = kernels.starts_with("avx512");
    if (Dot ? !avx512::has_bf16_dot_products() : !(wide || kernels.starts_with("avx2"))) return 0.0;
    constexpr std::size_t rounds = 200000;
    std::vector<double> seconds(backend.threads(), 1e9);
    for (int trial = 0; trial < 5; ++trial)
        backend.parallel_for(seconds.size(), [&](std::size_t t) {
            seconds[t] = std::min(seconds[t], Dot || wide ? avx512::chain_seconds<Dot>(rounds) : avx2_chain_seconds(rounds));
        });
    const double flop_per_round = Dot || wide ? 2.0 * (Dot ? 2 : 1) * 16 * avx512::timing_chains : 2.0 * 8 * 12;
    return flop_per_round * double(rounds) * double(seconds.size()) / *std::max_element(seconds.begin(), seconds.end()) / 1e9;
#else
    (void)backend;
    return 0.0;
#endif
}

/// GFLOP/s of AMX `tdpbf16ps` on tiles held in registers, on all the backend's threads at once: the
/// ceiling of bf16 products on tiles. Zero where the processor (or the operating system) offers none.
double tile_peak_gflops(const dm2s2::cpu_backend& backend)
{
    namespace amx = dm2s2::detail::amx;
#if DM2S2_HAS_AMX_KERNELS
    if (!amx::has_bf16_tiles()) return 0.0;
    constexpr std::size_t rounds = 20000;
    std::vector<double> seconds(backend.threads(), 1e9);
    for (int trial = 0; trial < 5; ++trial)
        backend.parallel_for(seconds.size(),
                             [&](std::size_t t) { seconds[t] = std::min(seconds[t], amx::tile_chain_seconds(rounds)); });
    const double flop_per_round = 2.0 * 4 * 16 * 16 * 32;
    return flop_per_round * double(rounds) * double(seconds.size()) / *std::max_element(seconds.begin(), seconds.end()) / 1e9;
#else
    (void)backend;
    return 0.0;
#endif
}

/// "L1d 48 KiB, L2 2048 KiB; blocks of 504 rows of A, passes of 1024 columns" for the backend's
/// products (no blocking where they are not the library's AVX-512 or AVX2 kernels).
std::string describe_blocking(const dm2s2::cpu_backend& backend)
{
    const auto& caches = backend.cache_sizes();
    std::string out = "L1d " + std::to_string(caches.l1d >> 10) + " KiB, L2 " + std::to_string(caches.l2 >> 10) + " KiB";
    if (const auto b = backend.product_blocking())
        out += "; blocks of " + std::to_string(b->mc) + " rows of A, passes of " + std::to_string(b->nc) + " columns";
    return out;
}

/// Prints the register-only peaks of fp32 FMA, `vdpbf16ps` and AMX tiles on the backend's threads.
void print_peaks(const dm2s2::cpu_backend& backend, double fma_peak)
{
    std::printf(
        "Register-only peak on %zu thread(s): fp32 FMA %.0f GFLOP/s, vdpbf16ps %.0f GFLOP/s, AMX tiles %.0f GFLOP/s "
        "(0: not available)\n",
        backend.threads(), fma_peak, register_peak_gflops<true>(backend), tile_peak_gflops(backend));
    std::fflush(stdout);
}

int usage(const char* message)
{
    std::fprintf(stderr,
                 "dm2s2_bench_products: %s\n"
                 "usage: dm2s2_bench_products [--rows M] [--threads T] [--rounds R] [--l2-kib S] [--avx2] [--unbound] "
                 "[--peaks-only]\n",
                 message);
    return 2;
}

}  // namespace

int main(int argc, char** argv)
{
    const bool tiny = dm2s2_bench::tiny();
    std::size_t rows = tiny ? 20 : 485, threads = 1, rounds = tiny ? 1 : 15, l2_kib = 0;
    auto binding = dm2s2::thread_binding::caller_and_workers;
    bool peaks_only = false;
    auto kernels = dm2s2::simd_kernels::widest;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--unbound") {
            binding = dm2s2::thread_binding::none;
            continue;
        }
        if (arg == "--peaks-only") {
            peaks_only = true;
            continue;
        }
        if (arg == "--avx2") {
            kernels = dm2s2::simd_kernels::avx2;
            continue;
        }
        std::size_t* target = arg == "--rows"      ? &rows
                              : arg == "--threads" ? &threads
                              : arg == "--rounds"  ? &rounds
                              : arg == "--l2-kib"  ? &l2_kib
                                                   : nullptr;
        if (target == nullptr) return usage(("unknown argument " + std::string(arg)).c_str());
        if (i + 1 == argc) return usage(("missing value after " + std::string(arg)).c_str());
        char* end = nullptr;
        const unsigned long long value = std::strtoull(argv[++i], &end, 10);
        if (*end != '\0' || value == 0 || value > 100000) return usage(("bad value for " + std::string(arg)).c_str());
        *target = static_cast<std::size_t>(value);
    }
    std::optional<dm2s2::cpu_cache_sizes> caches;
    if (l2_kib != 0) caches = dm2s2::cpu_cache_sizes{.l1d = dm2s2::detected_cpu_cache_sizes().l1d, .l2 = l2_kib << 10};

    if (peaks_only) {  // without OpenBLAS, whose threads could take the processors' time
        const dm2s2::cpu_backend backend({.threads = threads, .kernels = kernels, .binding = binding, .caches = caches});
        const dm2s2::cpu_backend bf16_backend({.precision = dm2s2::matmul_precision::bf16, .kernels = kernels, .caches = caches});
        std::printf("dm2s2 kernels: fp32 %s, bf16 %s\n", backend.float_kernels(), bf16_backend.float_kernels());
        std::printf("dm2s2 blocking: %s\n", describe_blocking(backend).c_str());
        print_peaks(backend, register_peak_gflops<false>(backend));
        return 0;
    }
    const openblas blas(static_cast<int>(threads));
    blas.start_threads();  // before the main thread is bound: threads start with their creator's processors
    // The bf16 backend's pool first: a pool that a bound caller makes finds only the caller's
    // processor, and its worker would share it. Made before, its worker takes the processor after the
    // caller's, as the fp32 backend's worker then does.
    const dm2s2::cpu_backend bf16_backend(
        {.threads = threads,
         .precision = dm2s2::matmul_precision::bf16,
         .kernels = kernels,
         .binding = binding == dm2s2::thread_binding::none ? binding : dm2s2::thread_binding::workers,
         .caches = caches});
    const dm2s2::cpu_backend backend({.threads = threads, .kernels = kernels, .binding = binding, .caches = caches});
    const std::size_t hidden = tiny ? 32 : 768, ffn = 4 * hidden;
    std::printf(
        "dm2s2 kernels: %s (bf16: %s), threads %s; %s; OpenBLAS core: %s; %zu threads; %zu rounds; median of "
        "per-round ratios (the share of the FMA peak: of the register-only peak measured in the same round)\n\n",
        backend.float_kernels(), bf16_backend.float_kernels(),
        backend.worker_cpus().empty() ? "unbound" : "bound to processors (the caller too)", describe_blocking(backend).c_str(),
        blas.core.c_str(), threads, rounds);
    const double peak = register_peak_gflops<false>(backend);
    std::printf(
        "| product | m × n × k | dm2s2 GFLOP/s | of FMA peak | dm2s2 bf16 GFLOP/s | bf16 / fp32 | OpenBLAS GFLOP/s | dm2s2 / "
        "OpenBLAS |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n");

    dm2s2::random_generator rng(11);
    int status = 0;
    for (const auto& [out, in] : {std::pair{hidden, hidden}, std::pair{ffn, hidden}, std::pair{hidden, ffn}}) {
        for (const auto& p : layer_products(rows, out, in)) {
            const std::size_t a_rows = p.ta == transpose::no ? p.m : p.k, a_cols = p.ta == transpose::no ? p.k : p.m;
            const std::size_t b_rows = p.tb == transpose::no ? p.k : p.n, b_cols = p.tb == transpose::no ? p.n : p.k;
            std::vector<float> a(a_rows * a_cols), b(b_rows * b_cols), ours(p.m * p.n), ours_bf16(p.m * p.n), theirs(p.m * p.n);
            for (auto& v : a) v = static_cast<float>(rng.normal());
            for (auto& v : b) v = static_cast<float>(rng.normal());
            const auto packed = p.packed_weight ? backend.pack_weight(b.data(), p.n, p.k) : std::nullopt;
            if (p.packed_weight && !packed) continue;  // this backend multiplies plain weights
            // bf16 with the weight packed rounded where its products read it so (as a bf16 model's are).
            const auto packed_bf16 =
                p.packed_weight ? bf16_backend.pack_weight(b.data(), p.n, p.k, dm2s2::weight_rounding::bf16) : std::nullopt;
            const auto run_ours = [&] {
                if (packed) backend.gemm_packed(p.m, 1.0f, a.data(), a_cols, *packed, 0.0f, ours.data(), p.n);
                else backend.gemm(p.ta, p.tb, p.m, p.n, p.k, 1.0f, a.data(), a_cols, b.data(), b_cols, 0.0f, ours.data(), p.n);
            };
            const auto run_bf16 = [&] {
                if (packed_bf16) bf16_backend.gemm_packed(p.m, 1.0f, a.data(), a_cols, *packed_bf16, 0.0f, ours_bf16.data(), p.n);
                else
                    bf16_backend.gemm(p.ta, p.tb, p.m, p.n, p.k, 1.0f, a.data(), a_cols, b.data(), b_cols, 0.0f, ours_bf16.data(),
                                      p.n);
            };
            const auto run_theirs = [&] {
                blas(p.ta, p.tb, p.m, p.n, p.k, a.data(), a_cols, b.data(), b_cols, theirs.data(), p.n);
            };
            const double flop = 2.0 * double(p.m) * double(p.n) * double(p.k);
            std::vector<double> ours_s, of_peak, bf16_s, bf16_ratios, theirs_s, ratios;
            for (std::size_t r = 0; r < rounds; ++r) {
                std::this_thread::sleep_for(settle);
                ours_s.push_back(seconds_per_call(run_ours, 5));
                // The register-only peak again, straight after: a shared machine's clock drifts from
                // round to round, and the share of the peak is the product's rate over this one.
                if (peak > 0) of_peak.push_back(flop / ours_s.back() / 1e9 / register_peak_gflops<false>(backend));
                std::this_thread::sleep_for(settle);
                bf16_s.push_back(seconds_per_call(run_bf16, 5));
                bf16_ratios.push_back(ours_s.back() / bf16_s.back());
                if (blas.sgemm == nullptr) continue;
                std::this_thread::sleep_for(settle);
                theirs_s.push_back(seconds_per_call(run_theirs, 5));
                ratios.push_back(theirs_s.back() / ours_s.back());
            }
            const double gflops = flop / median(ours_s) / 1e9;
            std::printf("| %s | %zu × %zu × %zu | %.1f | %s | %.1f | %.2f |", p.name.c_str(), p.m, p.n, p.k, gflops,
                        peak > 0 ? std::to_string(int(std::lround(100 * median(of_peak)))).append(" %").c_str() : "–",
                        flop / median(bf16_s) / 1e9, median(bf16_ratios));
            // bf16 products against fp32 ones: the operands' rounding (2⁻⁹ relative), no more.
            if (!agree(ours_bf16, ours, p, 3e-2, "bf16", "fp32")) status = 1;
            if (blas.sgemm == nullptr) {
                std::printf(" – | – |\n");
                continue;
            }
            std::printf(" %.1f | %.3f |\n", flop / median(theirs_s) / 1e9, median(ratios));
            // Both sides sum k products in float, in different orders: allow for that, no more.
            if (!agree(ours, theirs, p, 1e-4, "fp32", "OpenBLAS")) status = 1;
        }
    }
    std::printf("\n");
    print_peaks(backend, peak);
    return status;
}
