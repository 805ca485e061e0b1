// How the CPU backend executes: its thread pool, its matrix-product kernels over every configuration
// (threads × kernels × precision) against the plain-loop reference, and the model's execution modes
// (padding-free or padded, one or two threads, fp32 or bf16) against each other.

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#include "dm2s2/backend/cpu/cpu_backend.hpp"
#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/core/thread_pool.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using namespace dm2s2::testing;

namespace {

std::vector<float> logits_of(const model<float>& m, const std::vector<sequence_set>& records)
{
    const auto output = m.forward(records);
    return {output.logits.values().begin(), output.logits.values().end()};
}

/// Every distinct way this processor can run float products: 1 or 2 threads × the kernel sets it has
/// (AVX-512, AVX2, Eigen) × fp32 or each bf16 kernel (AMX tiles, `vdpbf16ps`, FMA), and tf32 (Eigen's,
/// on rounded copies). Options that land on kernels already listed (AVX2 asked for where it is also
/// the widest, tiles or `vdpbf16ps` where there are none, tf32 with any kernel set) are left out.
std::vector<cpu_options> every_configuration()
{
    std::vector<cpu_options> all;
    std::set<std::pair<std::size_t, std::string>> seen;
    for (const std::size_t threads : {1, 2})
        for (const auto kernels : {simd_kernels::widest, simd_kernels::avx2, simd_kernels::portable}) {
            std::vector<cpu_options> candidates{{.threads = threads, .precision = matmul_precision::fp32, .kernels = kernels}};
            for (const auto kernel : {bf16_kernel::tiles, bf16_kernel::dot_product, bf16_kernel::rounded_fma})
                candidates.push_back(
                    {.threads = threads, .precision = matmul_precision::bf16, .bf16 = kernel, .kernels = kernels});
            candidates.push_back({.threads = threads, .precision = matmul_precision::tf32, .kernels = kernels});
            for (const auto& options : candidates)
                if (seen.emplace(threads, cpu_backend(options).float_kernels()).second) all.push_back(options);
        }
    return all;
}

/// An operand for the packing tests, `rows` × `k`: every `every`-th value is one of `special` (bit
/// patterns, in turn), the others random and up to 1000 in magnitude. `row_major` holds it with k
/// contiguous, `k_major` with rows contiguous, `ld` apart (rows + 3).
struct packing_operand {
    std::vector<float> row_major, k_major;
    std::size_t ld = 0;

    packing_operand(std::size_t rows, std::size_t k, std::span<const std::uint32_t> special, std::size_t every,
                    random_generator& rng)
        : row_major(rows * k), k_major(k * (rows + 3)), ld(rows + 3)
    {
        const auto random = random_floats(rows * k, rng);
        for (std::size_t i = 0; i < row_major.size(); ++i)
            row_major[i] = i % every == 0 ? std::bit_cast<float>(special[i / every % special.size()]) : random[i] * 1e3f;
        for (std::size_t q = 0; q < rows; ++q)
            for (std::size_t kk = 0; kk < k; ++kk) k_major[kk * ld + q] = row_major[q * k + kk];
    }
};

}  // namespace

TEST_CASE("the thread pool runs every index once and hands back the first exception")
{
    thread_pool pool(3);
    CHECK(pool.size() == 3);
    for (const std::size_t count : {0, 1, 2, 5, 1000}) {
        std::vector<std::atomic<int>> hits(count);
        pool.parallel_for(count, [&](std::size_t i) { hits[i].fetch_add(1); });
        for (std::size_t i = 0; i < count; ++i) REQUIRE(hits[i].load() == 1);
    }
    // A loop inside a task runs on that task's thread; the outer loop still covers everything.
    std::atomic<int> inner{0};
    pool.parallel_for(4, [&](std::size_t) { pool.parallel_for(10, [&](std::size_t) { inner.fetch_add(1); }); });
    CHECK(inner.load() == 40);
    // Loops in quick succession meet workers still polling; loops after a pause meet sleeping ones.
    for (int round = 0; round < 6; ++round) {
        if (round % 2 == 1) std::this_thread::sleep_for(thread_pool::spin_time * 4);
        std::atomic<int> hits{0};
        pool.parallel_for(8, [&](std::size_t) { hits.fetch_add(1); });
        REQUIRE(hits.load() == 8);
    }
    CHECK_THROWS_WITH_AS(pool.parallel_for(50,
                                           [](std::size_t i) {
                                               if (i == 7) throw std::runtime_error("task 7");
                                           }),
                         "task 7", std::runtime_error);
    std::atomic<int> after{0};  // the pool still works after a failure
    pool.parallel_for(20, [&](std::size_t) { after.fetch_add(1); });
    CHECK(after.load() == 20);
    CHECK_THROWS_AS(thread_pool(0), config_error);
    CHECK_THROWS_AS(cpu_backend({.threads = 0}), config_error);
}

TEST_CASE("a pool with bound threads runs each on a processor of its own")
{
#if defined(__linux__)
    const auto processors_of = [](pthread_t thread) {
        cpu_set_t mask;
        CPU_ZERO(&mask);
        pthread_getaffinity_np(thread, sizeof mask, &mask);
        std::set<int> cpus;
        for (int i = 0; i < CPU_SETSIZE; ++i)
            if (CPU_ISSET(i, &mask)) cpus.insert(i);
        return cpus;
    };
    const std::set<int> allowed = processors_of(pthread_self());
    // Each worker may run on its processor only, and does. Tasks rest a little so that workers take
    // some; loops repeat until both workers have run tasks (a loaded machine may keep one away).
    const auto check_workers = [&](thread_pool& pool) {
        const std::vector<int> cpus = pool.worker_cpus();
        REQUIRE(cpus.size() == 2);
        for (const int cpu : cpus) CHECK(allowed.count(cpu) == 1);
        if (allowed.size() >= 2) CHECK(cpus[0] != cpus[1]);
        const auto caller = std::this_thread::get_id();
        std::mutex mutex;
        std::map<std::thread::id, std::set<int>> may_run_on, ran_on;
        for (int loop = 0; loop < 100 && may_run_on.size() - may_run_on.count(caller) < 2; ++loop)
            pool.parallel_for(64, [&](std::size_t) {
                const auto mask = processors_of(pthread_self());
                const int cpu = sched_getcpu();
                {
                    std::lock_guard lock(mutex);
                    may_run_on[std::this_thread::get_id()] = mask;
                    ran_on[std::this_thread::get_id()].insert(cpu);
                }
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            });
        may_run_on.erase(caller);
        ran_on.erase(caller);
        CHECK(may_run_on.size() == 2);
        for (const auto& [thread, allowed_to] : may_run_on) {
            REQUIRE(allowed_to.size() == 1);
            CHECK(std::find(cpus.begin(), cpus.end(), *allowed_to.begin()) != cpus.end());
            CHECK(ran_on[thread] == allowed_to);
        }
        return cpus;
    };
    {
        thread_pool pool(3, thread_binding::workers);
        check_workers(pool);
        CHECK(processors_of(pthread_self()) == allowed);  // the caller stays free
    }
    CHECK(thread_pool(3).worker_cpus().empty());
    // Bound with its workers, the caller takes a processor they do not (where there are enough), until
    // the pool is gone.
    {
        thread_pool pool(3, thread_binding::caller_and_workers);
        const auto caller_cpus = processors_of(pthread_self());
        REQUIRE(caller_cpus.size() == 1);
        CHECK(allowed.count(*caller_cpus.begin()) == 1);
        const auto cpus = check_workers(pool);
        if (allowed.size() >= 3) CHECK(std::count(cpus.begin(), cpus.end(), *caller_cpus.begin()) == 0);
    }
    CHECK(processors_of(pthread_self()) == allowed);
    // A backend with bound workers computes what an unbound one does.
    const cpu_backend bound({.threads = 2, .binding = thread_binding::workers}), unbound({.threads = 2});
    CHECK(bound.worker_cpus().size() == 1);
    CHECK(unbound.worker_cpus().empty());
    random_generator rng(8);
    const std::size_t m = 97, n = 300, k = 70;
    const auto a = random_floats(m * k, rng), b = random_floats(k * n, rng);
    std::vector<float> c_bound(m * n), c_unbound(m * n);
    bound.gemm(transpose::no, transpose::no, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c_bound.data(), n);
    unbound.gemm(transpose::no, transpose::no, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c_unbound.data(), n);
    CHECK(c_bound == c_unbound);
#else
    CHECK_THROWS_AS(thread_pool(2, thread_binding::workers), config_error);
#endif
}

TEST_CASE("float products match the reference in every backend configuration")
{
    random_generator rng(5);
    const reference_backend reference;
    // Sizes that cross the kernels' blocks: partial row panels and 32-column panels, rows past one
    // packed block of A, columns past one packed slice of B, depth past one slice (and odd, for bf16
    // pairs: a bf16 slice holds twice as many values), and a product large enough for two threads to
    // split its columns.
    constexpr std::size_t kc = detail::blocked::kc, nc = packed_layout::nc;
    const std::size_t wide_mc = detail::blocked::derive_gemm_blocking(detail::avx512::mr, detected_cpu_cache_sizes()).mc,
                      narrow_mc = detail::blocked::derive_gemm_blocking(detail::avx2::mr, detected_cpu_cache_sizes()).mc;
    for (const auto& dims : {std::array<std::size_t, 3>{1, 1, 1},
                             {5, 3, 7},
                             {37, 45, 19},
                             {200, 70, 600},
                             {64, 64, 33},
                             {9, 130, kc + 1},
                             {9, 50, 2 * kc + 89},
                             {wide_mc + 23, 40, 20},
                             {narrow_mc + 5, 40, 20},
                             {20, nc + 45, 18},
                             {30, 300, 2 * kc + 5}})
        for (const auto ta : {transpose::no, transpose::yes})
            for (const auto tb : {transpose::no, transpose::yes})
                for (const float beta : {-1.5f, 0.0f})  // beta = 0 must ignore what C held, NaN included
                    for (const auto& options : every_configuration()) {
                        if (sanitized && (beta == 0.0f) != (ta == tb)) continue;  // each beta, each transpose
                        const std::size_t m = dims[0], n = dims[1], k = dims[2];
                        const std::size_t threads = options.threads;
                        const cpu_backend backend(options);
                        const std::string kernels = backend.float_kernels();
                        CAPTURE(m);
                        CAPTURE(n);
                        CAPTURE(k);
                        CAPTURE(threads);
                        CAPTURE(kernels);
                        CAPTURE(beta);
                        const std::size_t lda = (ta == transpose::yes ? m : k) + 1, ldb = (tb == transpose::yes ? k : n) + 2,
                                          ldc = n + 1;
                        const auto a = random_floats((ta == transpose::yes ? k : m) * lda, rng);
                        const auto b = random_floats((tb == transpose::yes ? n : k) * ldb, rng);
                        auto c = random_floats(m * ldc, rng), expected = c;
                        if (beta == 0.0f) std::fill(c.begin(), c.end(), std::numeric_limits<float>::quiet_NaN());
                        // bf16 and tf32 are compared with the exact product of the operands so rounded.
                        auto ra = a, rb = b;
                        if (options.precision != matmul_precision::fp32) {
                            const auto round = options.precision == matmul_precision::bf16 ? round_to_bfloat16 : round_to_tf32;
                            for (auto& v : ra) v = round(v);
                            for (auto& v : rb) v = round(v);
                        }
                        backend.gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
                        reference.gemm(ta, tb, m, n, k, 0.5f, ra.data(), lda, rb.data(), ldb, beta, expected.data(), ldc);
                        for (std::size_t i = 0; i < m; ++i)
                            for (std::size_t j = 0; j < n; ++j)
                                REQUIRE(std::abs(c[i * ldc + j] - expected[i * ldc + j]) <= 2e-6 * static_cast<double>(k) + 1e-5);
                    }
}

#if DM2S2_HAS_X86_KERNELS  // otherwise the products are Eigen's, and nothing packs
TEST_CASE("products cut among two threads give the one-thread sums bit for bit")
{
    // Shapes two threads split by rows with op(B) packed once for both (`gemm_with_shared_b`): partial
    // panels, a second block of columns, depths past one slice, W1's 485 rows; and Aᵀ, which keeps
    // packing as it goes. Each is compared with one thread, which packs slice by slice, in fp32 and in
    // each bf16 kernel the processor has. AMX tiles, which sum each block of C over the whole depth in
    // one order, are held to the same. (Eigen's
    // products, where the processor has no AVX2, block by sizes and so are not held to this.) Under
    // the sanitizers W1's product is cut to a depth of a slice and a bit, and the transposed products
    // take one beta.
    random_generator rng(8);
    constexpr std::size_t kc = detail::blocked::kc, nc = packed_layout::nc, w1_depth = sanitized ? kc + 7 : 768;
    for (const auto& dims : {std::array<std::size_t, 3>{29, nc + 45, 2 * kc + 5},
                             {200, 70, 600},
                             {64, 64, 257},
                             {485, 768, w1_depth},
                             {31, 3, 9000}})
        for (const auto ta : {transpose::no, transpose::yes})
            for (const auto tb : {transpose::no, transpose::yes})
                for (const float beta : {-1.5f, 0.0f, 1.0f})
                    for (const auto precision : {matmul_precision::fp32, matmul_precision::bf16})
                        for (const auto kernels : {simd_kernels::widest, simd_kernels::avx2})
                            for (const auto bf16 : {bf16_kernel::rounded_fma, bf16_kernel::dot_product, bf16_kernel::tiles}) {
                                if (sanitized && beta != -1.5f && (ta == transpose::yes || tb == transpose::yes))
                                    continue;  // every beta once, untransposed
                                const bool here = bf16 == bf16_kernel::tiles ? detail::amx::has_bf16_tiles()
                                                                             : detail::avx512::has_bf16_dot_products();
                                if (bf16 != bf16_kernel::rounded_fma &&
                                    (precision != matmul_precision::bf16 || kernels != simd_kernels::widest || !here))
                                    continue;  // `vdpbf16ps` and tiles where the processor has them, once
                                const std::size_t m = dims[0], n = dims[1], k = dims[2];
                                const cpu_options options{.precision = precision, .bf16 = bf16, .kernels = kernels};
                                cpu_options two_threads = options;
                                two_threads.threads = 2;
                                const cpu_backend one(options), two(two_threads);
                                const std::string used = two.float_kernels();
                                if (used.starts_with("eigen")) continue;
                                CAPTURE(m);
                                CAPTURE(n);
                                CAPTURE(k);
                                CAPTURE(beta);
                                CAPTURE(used);
                                CAPTURE(ta == transpose::yes);
                                CAPTURE(tb == transpose::yes);
                                const std::size_t lda = (ta == transpose::yes ? m : k) + 1,
                                                  ldb = (tb == transpose::yes ? k : n) + 2, ldc = n + 3;
                                const auto a = random_floats((ta == transpose::yes ? k : m) * lda, rng);
                                const auto b = random_floats((tb == transpose::yes ? n : k) * ldb, rng);
                                auto c1 = random_floats(m * ldc, rng);
                                if (beta == 0.0f) std::fill(c1.begin(), c1.end(), std::numeric_limits<float>::quiet_NaN());
                                auto c2 = c1;
                                one.gemm(ta, tb, m, n, k, 0.75f, a.data(), lda, b.data(), ldb, beta, c1.data(), ldc);
                                two.gemm(ta, tb, m, n, k, 0.75f, a.data(), lda, b.data(), ldb, beta, c2.data(), ldc);
                                REQUIRE(same_bits(c1.data(), c2.data(), c1.size()));
                            }
}

TEST_CASE_TEMPLATE("packing in registers gives the scalar words, rounded to bf16 or not, k contiguous or not", K,
                   detail::avx512::avx512_kernels, detail::avx2::avx2_kernels)
{
    if (!(std::is_same_v<K, detail::avx512::avx512_kernels> ? detail::avx512::has_fp32_kernels()
                                                            : detail::avx2::has_fp32_kernels())) {
        MESSAGE("this processor lacks the kernel set's instructions: its packing is not used");
        return;
    }
    // Ties both ways, values that carry into the exponent or overflow to infinity, subnormals, zeros,
    // infinities and NaNs of either sign (signalling ones must stay NaN, not become infinity).
    const std::uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x3fffffffu, 0x7f7fffffu, 0xff7f8000u,
                                     0x00000001u, 0x80008000u, 0x007fffffu, 0x00000000u, 0x80000000u, 0x7f800000u,
                                     0xff800000u, 0x7f800001u, 0xffc00001u, 0x7fbfffffu};
    // 21 rows in panels of the tile's rows (register blocks, panels straddling them, a short last panel,
    // runs shorter than a vector) × 40 k (register blocks and a scalar tail), from unit 3 on; and 300
    // rows, which rows that are contiguous pack in more than one group of panels.
    constexpr std::size_t k = 40, p0 = 3, units = k - p0, width = K::mr;
    random_generator rng(9);
    using detail::blocked::operand_format;
    const auto check = [&]<operand_format F>(std::size_t rows, bool k_contiguous) {
        const packing_operand x(rows, k, special, 3, rng);
        const std::size_t panels = (rows + width - 1) / width;
        CAPTURE(rows);
        CAPTURE(F == operand_format::rounded_bf16);
        CAPTURE(k_contiguous);
        std::vector<std::uint32_t> packed(panels * width * units, 0xdeadbeefu);
        detail::blocked::pack_panels<K, F>(k_contiguous ? x.row_major.data() : x.k_major.data(), k_contiguous ? k : x.ld,
                                           k_contiguous, 0, rows, p0, units, k, width, packed.data());
        for (std::size_t q = 0; q < panels * width; ++q)
            for (std::size_t u = 0; u < units; ++u) {
                const float value = q < rows ? x.row_major[q * k + p0 + u] : 0.0f;
                const std::uint32_t expected = F == operand_format::fp32 ? std::bit_cast<std::uint32_t>(value)
                                                                         : std::uint32_t(to_bfloat16_bits(value)) << 16;
                CAPTURE(q);
                CAPTURE(u);
                CAPTURE(std::bit_cast<std::uint32_t>(value));
                REQUIRE(packed[q / width * width * units + u * width + q % width] == expected);
            }
    };
    for (const std::size_t rows : {std::size_t{21}, std::size_t{300}})
        for (const bool k_contiguous : {true, false}) {
            check.template operator()<operand_format::fp32>(rows, k_contiguous);
            check.template operator()<operand_format::rounded_bf16>(rows, k_contiguous);
        }
}

TEST_CASE("packing bf16 pairs in registers gives the scalar words, k contiguous or not")
{
    if (!detail::avx512::has_fp32_kernels() || !__builtin_cpu_supports("avx512bw")) {
        MESSAGE("this processor lacks AVX-512 BW: bf16 pairs are not packed here");
        return;
    }
    using K = detail::avx512::avx512_kernels;
    using detail::blocked::operand_format;
    const std::uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu, 0x00000001u, 0x80008000u,
                                     0x80000000u, 0x7f800000u, 0xff800000u, 0x7f800001u, 0xffc00001u, 0x7fbfffffu};
    random_generator rng(10);
    // 45 rows in panels of 14 (whole register blocks, panels straddling them, a short last panel), and
    // 300, more than one group of panels where rows are contiguous; an odd k, so that the last unit
    // holds one value and a zero.
    constexpr std::size_t k = 75, width = 14;
    for (const std::size_t rows : {std::size_t{45}, std::size_t{300}})
        for (const std::size_t p0 : {std::size_t{0}, std::size_t{5}})  // units from the first, or from the sixth
            for (const bool k_contiguous : {true, false}) {
                const packing_operand x(rows, k, special, 5, rng);
                const std::size_t panels = (rows + width - 1) / width;
                CAPTURE(rows);
                CAPTURE(p0);
                CAPTURE(k_contiguous);
                const std::size_t units = (k + 1) / 2 - p0;
                std::vector<std::uint32_t> packed(panels * width * units, 0xdeadbeefu);
                detail::blocked::pack_panels<K, operand_format::bf16_pairs>(k_contiguous ? x.row_major.data() : x.k_major.data(),
                                                                            k_contiguous ? k : x.ld, k_contiguous, 0, rows, p0,
                                                                            units, k, width, packed.data());
                for (std::size_t q = 0; q < panels * width; ++q)
                    for (std::size_t u = 0; u < units; ++u) {
                        const std::size_t kk = 2 * (p0 + u);
                        const std::uint32_t expected =
                            q >= rows ? 0u
                                      : detail::blocked::word_of(x.row_major[q * k + kk],
                                                                 kk + 1 < k ? x.row_major[q * k + kk + 1] : 0.0f);
                        CAPTURE(q);
                        CAPTURE(u);
                        REQUIRE(packed[q / width * width * units + u * width + q % width] == expected);
                    }
            }
}
#endif

TEST_CASE("cache sizes are read as sysfs writes them, and nothing else")
{
    CHECK(parse_cache_size("48K") == std::size_t{48} << 10);
    CHECK(parse_cache_size(" 2048K\n") == std::size_t{2} << 20);
    CHECK(parse_cache_size("1M") == std::size_t{1} << 20);
    CHECK(parse_cache_size("32768") == std::size_t{32768});
    for (const char* bad : {"", "K", "0K", "-1K", "48 K", "48KB", "4x", "1e3", "2048G", "99999999999999999999"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_cache_size(bad).has_value());
    }

    // A directory laid out as /sys/devices/system/cpu/cpu0/cache: instruction caches are skipped,
    // malformed entries are ignored, and an empty or missing directory lists nothing.
    const auto dir = scratch_dir("cache_sizes");
    const auto entry = [&](const std::string& name, const std::string& level, const std::string& type, const std::string& size) {
        std::filesystem::create_directories(dir / name);
        std::ofstream(dir / name / "level") << level << "\n";
        std::ofstream(dir / name / "type") << type << "\n";
        std::ofstream(dir / name / "size") << size << "\n";
    };
    CHECK_FALSE(read_listed_cache_sizes(dir).l1d.has_value());
    CHECK_FALSE(read_listed_cache_sizes(dir / "missing").l2.has_value());
    entry("index0", "1", "Instruction", "64K");
    entry("index1", "2", "Unified", "lots");
    CHECK_FALSE(read_listed_cache_sizes(dir).l1d.has_value());
    CHECK_FALSE(read_listed_cache_sizes(dir).l2.has_value());
    entry("index2", "1", "Data", "32K");
    entry("index3", "2", "Unified", "1024K");
    entry("index4", "3", "Unified", "32M");
    entry("other", "2", "Unified", "4M");
    const auto listed = read_listed_cache_sizes(dir);
    CHECK(listed.l1d == std::size_t{32} << 10);
    CHECK(listed.l2 == std::size_t{1} << 20);

    const auto& here = detected_cpu_cache_sizes();
    CHECK(here.l1d > 0);
    CHECK(here.l2 > 0);
}

TEST_CASE("the products' blocking follows the level 2 cache")
{
    using detail::blocked::derive_gemm_blocking;
    using detail::blocked::gemm_blocking;
    const auto with_l2 = [](std::size_t bytes) { return cpu_cache_sizes{.l1d = std::size_t{32} << 10, .l2 = bytes}; };
    constexpr std::size_t wide = detail::avx512::mr, narrow = detail::avx2::mr;
    CHECK(derive_gemm_blocking(wide, with_l2(std::size_t{2} << 20)) == gemm_blocking{.mc = 504, .nc = 1024});
    CHECK(derive_gemm_blocking(wide, with_l2(std::size_t{1} << 20)) == gemm_blocking{.mc = 252, .nc = 512});
    CHECK(derive_gemm_blocking(narrow, with_l2(std::size_t{512} << 10)) == gemm_blocking{.mc = 126, .nc = 256});
    // Far larger caches: passes stop at the packed layout's blocks; far smaller: one panel each.
    CHECK(derive_gemm_blocking(wide, with_l2(std::size_t{64} << 20)) == gemm_blocking{.mc = 16380, .nc = 1024});
    CHECK(derive_gemm_blocking(wide, with_l2(std::size_t{16} << 10)) == gemm_blocking{.mc = wide, .nc = detail::blocked::nr});
    CHECK(derive_gemm_blocking(narrow, with_l2(1)) == gemm_blocking{.mc = narrow, .nc = detail::blocked::nr});
    for (std::size_t l2 = 1; l2 <= (std::size_t{64} << 20); l2 = l2 * 3 + 1)
        for (const std::size_t mr : {wide, narrow}) {
            const auto b = derive_gemm_blocking(mr, with_l2(l2));
            CAPTURE(l2);
            CAPTURE(mr);
            CHECK(b.mc % mr == 0);
            CHECK(b.mc >= mr);
            CHECK(b.nc % detail::blocked::nr == 0);
            CHECK(packed_layout::nc % b.nc == 0);
        }

    const cpu_backend here, small({.caches = with_l2(std::size_t{256} << 10)});
    CHECK(here.cache_sizes() == detected_cpu_cache_sizes());
    CHECK(small.cache_sizes().l2 == std::size_t{256} << 10);
#if DM2S2_HAS_X86_KERNELS
    if (detail::avx2::has_fp32_kernels()) {
        REQUIRE(here.product_blocking().has_value());
        const std::size_t mr = detail::avx512::has_fp32_kernels() ? wide : narrow;
        CHECK(*here.product_blocking() == derive_gemm_blocking(mr, detected_cpu_cache_sizes()));
        CHECK(*small.product_blocking() == derive_gemm_blocking(mr, with_l2(std::size_t{256} << 10)));
    }
#endif
    CHECK_FALSE(cpu_backend({.kernels = simd_kernels::portable}).product_blocking().has_value());
}

#if DM2S2_HAS_X86_KERNELS
TEST_CASE("products give the same sums bit for bit whatever caches their blocking is derived from")
{
    // Small caches cut the products into many blocks of A and many passes over B; every cut must
    // leave each sum's order as it was, for plain and packed weights, on one thread and two.
    random_generator rng(11);
    constexpr std::size_t kc = detail::blocked::kc;
    const std::size_t depth = sanitized ? kc + 9 : 2 * kc + 9;
    for (const auto& dims : {std::array<std::size_t, 3>{300, 700, depth}, {61, 1100, 40}, {5, 3, 7}})
        for (const auto kernels : {simd_kernels::widest, simd_kernels::avx2})
            for (const auto precision : {matmul_precision::fp32, matmul_precision::bf16})
                for (const std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
                    const std::size_t m = dims[0], n = dims[1], k = dims[2];
                    const cpu_options options{
                        .threads = threads, .precision = precision, .bf16 = bf16_kernel::rounded_fma, .kernels = kernels};
                    const cpu_backend usual(options);
                    if (std::string(usual.float_kernels()).starts_with("eigen")) continue;
                    const auto a = random_floats(m * k, rng), w = random_floats(n * k, rng);
                    std::vector<float> expected(m * n), expected_packed(m * n);
                    usual.gemm(transpose::no, transpose::yes, m, n, k, 1.0f, a.data(), k, w.data(), k, 0.0f, expected.data(), n);
                    const auto usual_weights = usual.pack_weight(w.data(), n, k, weight_rounding::bf16);
                    REQUIRE(usual_weights.has_value());
                    usual.gemm_packed(m, 1.0f, a.data(), k, *usual_weights, 0.0f, expected_packed.data(), n,
                                      product_epilogue<float>{});
                    CHECK(same_bits(expected.data(), expected_packed.data(), expected.size()));
                    for (const std::size_t l2 : {std::size_t{64} << 10, std::size_t{300} << 10, std::size_t{1} << 20}) {
                        cpu_options cut = options;
                        cut.caches = cpu_cache_sizes{.l1d = std::size_t{32} << 10, .l2 = l2};
                        const cpu_backend backend(cut);
                        const std::string used = backend.float_kernels();
                        const auto blocking = backend.product_blocking();
                        REQUIRE(blocking.has_value());
                        const std::size_t mc = blocking->mc, nc = blocking->nc;
                        CAPTURE(m);
                        CAPTURE(n);
                        CAPTURE(k);
                        CAPTURE(threads);
                        CAPTURE(used);
                        CAPTURE(mc);
                        CAPTURE(nc);
                        std::vector<float> c(m * n, std::numeric_limits<float>::quiet_NaN()), c_packed = c;
                        backend.gemm(transpose::no, transpose::yes, m, n, k, 1.0f, a.data(), k, w.data(), k, 0.0f, c.data(), n);
                        CHECK(same_bits(c.data(), expected.data(), c.size()));
                        backend.gemm_packed(m, 1.0f, a.data(), k, *usual_weights, 0.0f, c_packed.data(), n,
                                            product_epilogue<float>{});
                        CHECK(same_bits(c_packed.data(), expected.data(), c.size()));
                    }
                }
}
#endif

TEST_CASE("tensors asked for zeros get zeros; unset tensors get their shape and aligned storage")
{
    // Scratch outputs are made unset (the products overwrite them): the zero-filling paths must stay
    // zero-filling.
    tensor<float> t({3, 5}, 2.0f);
    t.resize({4, 5});
    for (std::size_t i = 0; i < 15; ++i) REQUIRE(t[i] == 2.0f);
    for (std::size_t i = 15; i < 20; ++i) REQUIRE(t[i] == 0.0f);
    CHECK(tensor<double>({7}).values()[6] == 0.0);
    tensor<float> scratch({33, 17}, uninitialized);
    CHECK(scratch.shape() == shape_t{33, 17});
    CHECK(scratch.size() == 33 * 17);
    CHECK(reinterpret_cast<std::uintptr_t>(scratch.data()) % 64 == 0);
    scratch.resize({40, 17}, uninitialized);
    CHECK(scratch.size() == 40 * 17);
}

TEST_CASE("threaded element-wise kernels give the single-thread results")
{
    random_generator rng(7);
    const cpu_backend one, two({.threads = 2});
    const std::size_t rows = 120, cols = 700;  // large enough to be split between the threads
    const auto x = random_floats(rows * cols, rng), residual = random_floats(rows * cols, rng);
    const auto gamma = random_floats(cols, rng), beta = random_floats(cols, rng);
    auto g1 = x, g2 = x;
    one.gelu(g1.data(), g1.size());
    two.gelu(g2.data(), g2.size());
    CHECK(g1 == g2);
    std::vector<float> y1(rows * cols), y2(rows * cols);
    one.layer_norm(x.data(), residual.data(), y1.data(), rows, cols, gamma.data(), beta.data(), 1e-12f);
    two.layer_norm(x.data(), residual.data(), y2.data(), rows, cols, gamma.data(), beta.data(), 1e-12f);
    CHECK(y1 == y2);
    auto b1 = x, b2 = x;
    one.add_row_vector(b1.data(), rows, cols, cols, gamma.data());
    two.add_row_vector(b2.data(), rows, cols, cols, gamma.data());
    CHECK(b1 == b2);
}

TEST_CASE("padding-free, padded and two-thread execution give the same logits and gradients")
{
    for (const auto& variant : pooling_variants()) {
        const std::string variant_name = variant.first;
        CAPTURE(variant_name);
        model<float> free_1(four_modalities(), variant.second, 31);
        model<float> padded_1(four_modalities(), variant.second, 31);
        model<float> free_2(four_modalities(), variant.second, 31, cpu_backend({.threads = 2}));
        padded_1.set_padding_free(false);
        CHECK(free_1.padding_free());
        CHECK_FALSE(padded_1.padding_free());
        const auto batch = free_1.pack(random_records(free_1.schema(), 11, 12));
        tensor<float> d_logits({11, variant.second.num_outputs});
        for (std::size_t i = 0; i < d_logits.size(); ++i) d_logits[i] = static_cast<float>(std::sin(0.7 * double(i)));

        const auto run = [&](const model<float>& m) {
            model_cache<float> cache;
            const auto output = m.forward(batch, false, &cache);
            const std::vector<float> logits(output.logits.values().begin(), output.logits.values().end());
            auto grad = m.zero_gradients();
            m.backward(cache, d_logits, grad);
            std::vector<float> flat;
            grad.for_each_parameter([&](const std::string&, tensor<float>& t) {
                const auto values = t.values();
                flat.insert(flat.end(), values.begin(), values.end());
            });
            return std::pair{logits, flat};
        };
        const auto [logits, gradients] = run(free_1);
        const auto [padded_logits, padded_gradients] = run(padded_1);
        const auto [threaded_logits, threaded_gradients] = run(free_2);
        CHECK(max_relative_diff(padded_logits, logits) <= 1e-6);
        CHECK(max_relative_diff(threaded_logits, logits) <= 1e-6);
        CHECK(max_relative_diff(padded_gradients, gradients) <= 1e-5);
        CHECK(max_relative_diff(threaded_gradients, gradients) <= 1e-5);
    }
}

TEST_CASE("the fastest bf16 kernel is chosen from the instructions' measured rates")
{
    // Injected rates (multiply-adds per second): each step up, to `vdpbf16ps` and then to tiles, needs
    // a 25 % advantage over the best before it.
    const auto chosen = [](double fma, double dot, double tiles) {
        return fastest_bf16_kernel({.fma = fma, .dot_product = dot, .tiles = tiles});
    };
    CHECK(chosen(100e9, 55e9, 1000e9) == bf16_kernel::tiles);        // Sapphire Rapids class, AMX exposed
    CHECK(chosen(100e9, 55e9, 0) == bf16_kernel::rounded_fma);       // the same without AMX
    CHECK(chosen(100e9, 200e9, 0) == bf16_kernel::dot_product);      // Zen 4/5: `vdpbf16ps` at the FMA's rate
    CHECK(chosen(100e9, 120e9, 0) == bf16_kernel::rounded_fma);      // within the margin: the simpler kernel
    CHECK(chosen(100e9, 200e9, 240e9) == bf16_kernel::dot_product);  // tiles must beat the best, not FMA
    CHECK(chosen(100e9, 200e9, 260e9) == bf16_kernel::tiles);
    CHECK(chosen(100e9, 0, 130e9) == bf16_kernel::tiles);
    CHECK(chosen(100e9, 0, 120e9) == bf16_kernel::rounded_fma);
    CHECK(chosen(0, 0, 0) == bf16_kernel::rounded_fma);  // nothing measured (no AVX-512)

    // On this processor: what was measured, what the choice made of it, and the kernels a backend that
    // asks for the fastest then reports. Where AMX is usable its tiles do ten times an FMA's work: no
    // noise in the measurement can hide that.
    const auto rates = detail::measure_bf16_rates();
    const bf16_kernel here = detail::fastest_bf16_kernel_here();
    MESSAGE("bf16 multiply-adds per second: FMA " << rates.fma << ", vdpbf16ps " << rates.dot_product << ", tiles "
                                                  << rates.tiles);
    CHECK((rates.tiles > 0) == detail::amx::has_bf16_tiles());
    CHECK((rates.dot_product > 0) == detail::avx512::has_bf16_dot_products());
    if (detail::amx::has_bf16_tiles()) CHECK(here == bf16_kernel::tiles);
    const std::string reported = cpu_backend({.precision = matmul_precision::bf16}).float_kernels();
    CAPTURE(reported);
    CHECK((reported == "amx-bf16") == (here == bf16_kernel::tiles));
    CHECK((reported == "avx512-bf16-dot") == (here == bf16_kernel::dot_product));
    const std::string asked_tiles =
        cpu_backend({.precision = matmul_precision::bf16, .bf16 = bf16_kernel::tiles}).float_kernels();
    CHECK(asked_tiles == reported);  // tiles where present, otherwise the fastest
}

TEST_CASE("bf16 products keep the logits within 1e-2 of fp32, tf32 products within 2e-3")
{
    for (const auto& options : every_configuration()) {
        if (options.precision == matmul_precision::fp32 || options.threads != 1) continue;
        const bool tf32 = options.precision == matmul_precision::tf32;
        const model<float> fp32(four_modalities(), small_config(), 41, cpu_backend({.kernels = options.kernels}));
        const model<float> rounded(four_modalities(), small_config(), 41, cpu_backend(options));
        const auto records = random_records(fp32.schema(), 16, 13);
        const auto a = logits_of(fp32, records), b = logits_of(rounded, records);
        const double difference = max_relative_diff(b, a);
        MESSAGE(to_string(options.precision) << " logits differ from fp32 by " << difference << " of the largest logit ("
                                             << std::string(rounded.encoder().backend().float_kernels()) << ")");
        CHECK(difference <= (tf32 ? 2e-3 : 1e-2));
        CHECK(difference > 0);  // the products really were rounded
    }
}

TEST_CASE("rounding to TF32 keeps 10 mantissa bits: nearest, ties to even, infinities and NaN kept")
{
    const auto bits = [](float x) { return std::bit_cast<std::uint32_t>(x); };
    const auto from = [](std::uint32_t b) { return std::bit_cast<float>(b); };
    CHECK(round_to_tf32(1.0f) == 1.0f);
    CHECK(round_to_tf32(-2.5f) == -2.5f);
    CHECK(round_to_tf32(from(0x3f800fffu)) == 1.0f);                      // below half an ulp: down
    CHECK(bits(round_to_tf32(from(0x3f801001u))) == 0x3f802000u);         // above half: up
    CHECK(bits(round_to_tf32(from(0x3f801000u))) == 0x3f800000u);         // a tie to the even value below
    CHECK(bits(round_to_tf32(from(0x3f803000u))) == 0x3f804000u);         // a tie to the even value above
    CHECK(bits(round_to_tf32(from(0xbf803000u))) == 0xbf804000u);         // the same, negative
    CHECK(std::isinf(round_to_tf32(std::numeric_limits<float>::max())));  // past TF32's largest finite value
    CHECK(round_to_tf32(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
    CHECK(std::isnan(round_to_tf32(std::numeric_limits<float>::quiet_NaN())));
    CHECK(bits(round_to_tf32(from(0x7f801234u))) == 0x7f801234u);  // a signalling NaN's payload kept
    CHECK(round_to_tf32(std::numeric_limits<float>::denorm_min()) == 0.0f);
    CHECK(bits(round_to_tf32(from(0x00001000u | 0x00002000u))) == 0x00004000u);  // subnormals round alike
    for (std::uint32_t b = 0x3f800000u; b < 0x3f900000u; b += 0x123u) {
        const float x = from(b), r = round_to_tf32(x);
        CHECK((bits(r) & 0x1fffu) == 0u);
        CHECK(std::abs(r - x) <= std::ldexp(1.0f, -11));  // half an ulp of TF32 at 1
    }
}
