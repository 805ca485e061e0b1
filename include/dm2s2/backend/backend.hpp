#pragma once
/// \file
/// The `backend_for` concept: the kernels a module needs, implemented once per device.
///
/// Modules never loop over activations themselves for the heavy work; they call the backend policy
/// they are parameterised by. `cpu_backend` (Eigen products, xsimd element-wise kernels) is the fast
/// CPU policy, `reference_backend` the plain-loop policy every fast path is tested against, and a
/// CUDA policy provides the same members over device memory.
///
/// All matrices are row-major; `ld*` are leading dimensions (elements between consecutive rows).

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "dm2s2/core/scalar.hpp"

namespace dm2s2 {

/// Whether a gemm operand is used as stored or transposed.
enum class transpose : bool { no = false, yes = true };

/// An element-wise function applied to a layer's outputs.
enum class activation { identity, gelu };

/// What a product of a layer does to its outputs once they are complete: add a bias row (one value
/// per column, when given), then apply `act`. A backend that fuses these into the product gives the
/// numbers `add_row_vector` and `gelu` give after it.
template <scalar T>
struct product_epilogue {
    const T* bias = nullptr;
    activation act = activation::identity;
};

/// A backend policy `B` provides these kernels for scalar `T`:
/// - `gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`: C[m,n] = alpha op(A) op(B) + beta C;
///   with beta == 0 the prior contents of C are ignored (they may be NaN);
/// - `add_row_vector(x, rows, cols, ldx, v)`: adds v[cols] to every row of x (biases);
/// - `gelu(x, n)` (erf form) and `tanh(x, n)`, in place;
/// - `masked_softmax(x, n, keep)`: softmax over the entries whose `keep` byte is non-zero (keep may be
///   null: all kept); dropped entries get exactly 0; a row with nothing kept becomes all zeros;
/// - `layer_norm(x, residual, y, rows, cols, gamma, beta, eps)`: y = LN(x + residual) per row with the
///   biased variance (residual may be null; y may alias x).
template <class B, class T>
concept backend_for = scalar<T> && requires(const B& backend, T* y, const T* x, const std::uint8_t* keep,
                                            std::size_t n, T value) {
    { B::name() } -> std::convertible_to<const char*>;
    backend.gemm(transpose::no, transpose::yes, n, n, n, value, x, n, x, n, value, y, n);
    backend.add_row_vector(y, n, n, n, x);
    backend.gelu(y, n);
    backend.tanh(y, n);
    backend.masked_softmax(y, n, keep);
    backend.layer_norm(x, x, y, n, n, x, x, value);
    backend.parallel_for(n, [](std::size_t) {});
};

}  // namespace dm2s2
