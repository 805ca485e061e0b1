// Memory spaces: host element access to a tensor in another space does not compile (proved here with
// static_asserts on requires-expressions, so the suite fails to build if it ever does), transfers go
// only through the backend and are counted, and guard mode makes a stray host access fault.

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <concepts>
#include <csignal>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include "dm2s2/backend/cpu/cpu_backend.hpp"
#include "dm2s2/backend/staging/staging_backend.hpp"

using namespace dm2s2;

namespace {

using host_tensor = tensor<float>;
using staged_tensor = tensor<float, staging_space>;

// Each requires-expression is true exactly when host code could read or write an element directly.
template <class Tensor>
concept indexable = requires(Tensor& t) { t[0]; };
template <class Tensor>
concept indexable_2d = requires(Tensor& t) { t(0, 0); };
template <class Tensor>
concept spannable = requires(Tensor& t) { t.values(); };
template <class Tensor>
concept dereferenceable_data = requires(Tensor& t) { *t.data(); };
template <class Tensor>
concept dereferenceable_row = requires(Tensor& t) { *t.row(0); };
template <class Tensor>
concept subscriptable_data = requires(Tensor& t) { t.data()[0]; };
template <class Tensor>
concept host_fillable = requires(Tensor& t) { t.fill(1.0f); };
template <class Tensor>
concept filled_on_construction = std::is_constructible_v<Tensor, shape_t, float>;

// Host tensors: everything, as CPU code has always used them.
static_assert(indexable<host_tensor> && indexable_2d<host_tensor> && spannable<host_tensor>);
static_assert(dereferenceable_data<host_tensor> && dereferenceable_row<host_tensor> && subscriptable_data<host_tensor>);
static_assert(host_fillable<host_tensor> && filled_on_construction<host_tensor>);
static_assert(std::same_as<decltype(std::declval<host_tensor&>().data()), float*>);

// Staging tensors: none of it, for mutable and const tensors alike.
static_assert(!indexable<staged_tensor> && !indexable<const staged_tensor>);
static_assert(!indexable_2d<staged_tensor> && !indexable_2d<const staged_tensor>);
static_assert(!spannable<staged_tensor> && !spannable<const staged_tensor>);
static_assert(!dereferenceable_data<staged_tensor> && !dereferenceable_data<const staged_tensor>);
static_assert(!dereferenceable_row<staged_tensor> && !subscriptable_data<staged_tensor>);
static_assert(!host_fillable<staged_tensor> && !filled_on_construction<staged_tensor>);
static_assert(!std::convertible_to<decltype(std::declval<staged_tensor&>().data()), float*>);
static_assert(!std::convertible_to<decltype(std::declval<staged_tensor&>().data()), const void*>);
static_assert(std::same_as<decltype(std::declval<staged_tensor&>().data()), device_ptr<float, staging_space>>);
static_assert(std::same_as<decltype(std::declval<const staged_tensor&>().data()), device_ptr<const float, staging_space>>);
// A staging tensor cannot be handed to a host kernel, nor a host pointer to a staging kernel.
static_assert(!std::is_invocable_v<decltype([](float*) {}), device_ptr<float, staging_space>>);
static_assert(!std::convertible_to<float*, device_ptr<float, staging_space>>);
// Backends name their space; only host backends expose host loops to the modules.
static_assert(std::same_as<backend_space<cpu_backend>, host_space> &&
              std::same_as<backend_space<staging_backend>, staging_space>);
static_assert(host_backend_for<cpu_backend, float> && !host_backend_for<staging_backend, float>);
static_assert(training_backend_for<staging_backend, double>);

/// Runs `body` in a child process; true when the child died of a segmentation fault or bus error,
/// false when it exited normally with status 0 (anything else fails the test).
template <class F>
bool faults_in_child(F&& body)
{
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // The test runner's (and a sanitizer's) fault handlers stay out of it; no core file either.
        const rlimit no_core{0, 0};
        ::setrlimit(RLIMIT_CORE, &no_core);
        std::signal(SIGSEGV, SIG_DFL);
        std::signal(SIGBUS, SIG_DFL);
        body();
        ::_exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    if (WIFEXITED(status)) REQUIRE(WEXITSTATUS(status) == 0);
    return WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS);
}

}  // namespace

TEST_CASE("staging tensors round-trip through upload and download, counted, and copy within the space")
{
    const staging_backend backend;
    tensor<float> host({2, 3});
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) - 2.5f;
    const auto staged = backend.upload(host);
    CHECK(staged.shape() == shape_t{2, 3});
    const auto copied = staged;  // a copy within the space: no transfer
    tensor<float, staging_space> grown = staged;
    grown.resize({4, 3}, uninitialized);  // keeps the first six values
    const auto back = backend.download(copied);
    CHECK(std::vector<float>(back.values().begin(), back.values().end()) ==
          std::vector<float>(host.values().begin(), host.values().end()));
    const auto grown_back = backend.download(grown);
    CHECK(std::equal(host.values().begin(), host.values().end(), grown_back.values().begin()));
    const transfer_counts counts = backend.transfers();
    CHECK(counts == transfer_counts{.uploads = 1, .downloads = 2, .uploaded_bytes = 24, .downloaded_bytes = 24 + 48});
    const staging_backend copy_of_backend = backend;  // copies share the counts
    copy_of_backend.reset_transfers();
    CHECK(backend.transfers() == transfer_counts{});
}

TEST_CASE("guard mode: a host access to staging memory faults, the backend's own operations do not")
{
    const std::size_t before = staging_space::buffers();
    {
        const staging_backend guarded(staging_options{.guard = true});
        CHECK(staging_space::guarded());
        tensor<float> host({64}, 1.5f);
        auto staged = guarded.upload(host);
        guarded.gelu(staged.data(), staged.size());  // inside an operation: allowed
        const auto back = guarded.download(staged);
        CHECK(back[0] == doctest::Approx(1.5 * 0.5 * (1 + std::erf(1.5 / std::sqrt(2.0)))));
        float* stray = staged.data().device_address();  // what a host loop would read through
        CHECK(faults_in_child([&] {
            volatile float v = *stray;
            (void)v;
        }));
        CHECK(faults_in_child([&] { *stray = 1.0f; }));
        // The same access inside an operation's scope is fine, so it was the guard that faulted.
        CHECK_FALSE(faults_in_child([&] {
            const staging_space::access_scope open;
            volatile float v = *stray;
            (void)v;
        }));
    }
    CHECK_FALSE(staging_space::guarded());
    CHECK(staging_space::buffers() == before);
}
