#pragma once
// The backends every kernel test runs on, each with its tolerance per scalar type against the
// plain-loop reference. A new backend joins the tests by being added to `DM2S2_BACKEND_CASES`.

#include <cstddef>
#include <type_traits>

#include <doctest/doctest.h>

#include "dm2s2/backend/cpu/cpu_backend.hpp"
#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/backend/staging/staging_backend.hpp"

namespace dm2s2::testing {

/// The staging backend with guard mode on: staging memory is inaccessible outside its operations.
struct guarded_staging_backend : staging_backend {
    guarded_staging_backend() : staging_backend(staging_options{.guard = true}) {}
};

/// The CPU backend on two threads, so that the split kernels are checked too.
struct threaded_cpu_backend : cpu_backend {
    threaded_cpu_backend() : cpu_backend(cpu_options{.threads = 2}) {}
};

/// One test instantiation: backend `B` computing in scalar `T`, with `tolerance` the largest
/// difference from the reference allowed per unit of a result's natural scale.
template <class B, class T>
struct backend_case {
    using backend = B;
    using scalar = T;
    /// The staging backend runs the reference's own loops: exactly its numbers.
    static constexpr bool exact = std::is_base_of_v<staging_backend, B> || std::is_same_v<B, reference_backend>;
    static constexpr double tolerance = exact ? 0.0 : std::is_same_v<T, float> ? 2e-6 : 1e-13;
};

}  // namespace dm2s2::testing

#define DM2S2_BACKEND_CASES                                                                                          \
    dm2s2::testing::backend_case<dm2s2::cpu_backend, float>, dm2s2::testing::backend_case<dm2s2::cpu_backend, double>, \
        dm2s2::testing::backend_case<dm2s2::testing::threaded_cpu_backend, float>,                                    \
        dm2s2::testing::backend_case<dm2s2::staging_backend, float>,                                                  \
        dm2s2::testing::backend_case<dm2s2::staging_backend, double>,                                                 \
        dm2s2::testing::backend_case<dm2s2::testing::guarded_staging_backend, float>,                                 \
        dm2s2::testing::backend_case<dm2s2::testing::guarded_staging_backend, double>

TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::cpu_backend, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::cpu_backend, double>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::threaded_cpu_backend, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::staging_backend, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::staging_backend, double>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::guarded_staging_backend, float>);
TYPE_TO_STRING(dm2s2::testing::backend_case<dm2s2::testing::guarded_staging_backend, double>);
