#pragma once
// The backends every kernel test runs on, each with its tolerance per scalar type against the
// plain-loop reference. A new backend joins the tests by being added to `DM2S2_BACKEND_CASES`.
// Built with DM2S2_TEST_CUDA (the GPU test program, tests/cuda), the list is the CUDA backend's.

#include <cstddef>
#include <type_traits>

#include <doctest/doctest.h>

#include "dm2s2/backend/cpu/cpu_backend.hpp"
#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/backend/staging/staging_backend.hpp"
#if defined(DM2S2_TEST_CUDA)
#include "dm2s2/backend/cuda/cuda_backend.hpp"
#endif

namespace dm2s2::testing {

/// A backend type with its default options. Configurations of one backend type share its template
/// instantiations (the model, the trainer, every kernel), so each type is compiled once per scalar.
template <class B>
struct default_options {
    using backend = B;
    static B make() { return B{}; }
};

/// The CPU backend on two threads, so that the split kernels are checked too.
struct two_threads {
    using backend = cpu_backend;
    static cpu_backend make() { return cpu_backend(cpu_options{.threads = 2}); }
};

/// The staging backend with guard mode on: staging memory is inaccessible outside its operations.
struct guarded {
    using backend = staging_backend;
    static staging_backend make() { return staging_backend(staging_options{.guard = true}); }
};

/// One test instantiation: a backend made by `Configuration` computing in scalar `T`, with
/// `tolerance` the largest difference from the reference allowed per unit of a result's natural scale.
template <class Configuration, class T>
struct backend_case {
    using backend = typename Configuration::backend;
    using scalar = T;
    static backend make_backend() { return Configuration::make(); }
    /// The staging backend runs the reference's own loops: exactly its numbers.
    static constexpr bool exact = std::is_same_v<backend, staging_backend> || std::is_same_v<backend, reference_backend>;
    static constexpr double tolerance = exact ? 0.0 : std::is_same_v<T, float> ? 2e-6 : 1e-13;
};

}  // namespace dm2s2::testing

#if defined(DM2S2_TEST_CUDA)
#define DM2S2_BACKEND_CASES                                                                    \
    dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::cuda_backend>, float>, \
        dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::cuda_backend>, double>
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::cuda_backend>, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::cuda_backend>, double>);
#else
#define DM2S2_BACKEND_CASES                                                                            \
    dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::cpu_backend>, float>,          \
        dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::cpu_backend>, double>,     \
        dm2s2::testing::backend_case<dm2s2::testing::two_threads, float>,                              \
        dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::staging_backend>, float>,  \
        dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::staging_backend>, double>, \
        dm2s2::testing::backend_case<dm2s2::testing::guarded, float>,                                  \
        dm2s2::testing::backend_case<dm2s2::testing::guarded, double>

TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::cpu_backend>, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::cpu_backend>, double>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::two_threads, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::staging_backend>, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::default_options<dm2s2::staging_backend>, double>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::guarded, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::guarded, double>);
#endif
