#pragma once
/// \file
/// The `backend_for` concept: the kernels a module needs, implemented once per device.
///
/// Modules never loop over activations themselves for the heavy work; they call the backend policy
/// they are parameterised by. `cpu_backend` (Eigen products, xsimd element-wise kernels) is the fast
/// CPU policy, `reference_backend` the plain-loop policy every fast path is tested against, and
/// `staging_backend` runs the same loops in a memory space host code may not touch, as a GPU's is.
/// A backend names its memory space; its kernels take pointers of that space.
///
/// All matrices are row-major; `ld*` are leading dimensions (elements between consecutive rows).

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include "dm2s2/core/batch_layout.hpp"
#include "dm2s2/core/memory_space.hpp"
#include "dm2s2/core/scalar.hpp"
#include "dm2s2/core/tensor.hpp"

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

/// The shape of a batched attention: where the sequences lie among the rows (`layout`), the heads,
/// and the width of a head. Q, K, V and the context are [rows, heads · head_dim], row-major; the
/// attention maps of sequence b are [heads, len_b, len_b] blocks stored sequence after sequence
/// (`batch_layout::attention_offset`).
struct attention_shape {
    const batch_layout& layout;
    std::size_t heads = 1;
    std::size_t head_dim = 1;

    std::size_t width() const noexcept { return heads * head_dim; }
    std::size_t map_elements() const { return layout.attention_offset(layout.batch, heads); }
};

/// The memory space a backend's tensors live in.
template <class B>
using backend_space = typename B::memory_space;

/// How a backend's kernels address an element of type T: `T*` for a host backend, a `device_ptr`
/// of its space otherwise.
template <class B, class T>
using backend_pointer = space_pointer<T, backend_space<B>>;

/// A backend policy `B` names the memory space its kernels work in (`B::memory_space`) and provides,
/// for scalar `T`, with every pointer one of that space (`backend_pointer<B, T>`):
/// - `upload(host_tensor)` → a tensor in its space, `download(tensor)` → a host tensor, and the same
///   for raw ranges (`upload(from, n, to)`, `download(from, n, to)`): the only ways elements cross
///   between the host and the backend's memory;
/// - `gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`: C[m,n] = alpha op(A) op(B) + beta C;
///   with beta == 0 the prior contents of C are ignored (they may be NaN);
/// - `add_row_vector(x, rows, cols, ldx, v)`: adds v[cols] to every row of x (biases);
/// - `gelu(x, n)` (erf form) and `tanh(x, n)`, in place;
/// - `masked_softmax(x, n, keep)`: softmax over the entries whose `keep` byte is non-zero (keep may be
///   null: all kept); dropped entries get exactly 0; a row with nothing kept becomes all zeros;
/// - `layer_norm(x, residual, y, rows, cols, gamma, beta, eps)`: y = LN(x + residual) per row with the
///   biased variance (residual may be null; y may alias x);
/// - `attention_forward(shape, scale, q, k, v, key_mask, probabilities, dropout, context)`: multi-head
///   attention over every sequence of a batch at once (see `host_attention_operations`);
/// - the row operations of `host_row_operations`: `copy`, `fill`, `scale_rows`, `add`, `multiply`, `copy_rows` and `add_rows`
///   through index arrays, `add_type_and_position_rows`, `scale_shift_rows`, `segment_attention_pool`,
///   `max_pool`.
/// How a backend runs its kernels (threads, streams) is its own affair: nothing here asks for it.
template <class B, class T>
concept backend_for =
    scalar<T> && memory_space<backend_space<B>> &&
    requires(const B& backend, backend_pointer<B, T> y, backend_pointer<B, const T> x,
             backend_pointer<B, const std::uint8_t> keep, std::size_t n, T value, const tensor<T>& host,
             const tensor<T, backend_space<B>>& device, const T* host_values, T* host_out, const attention_shape& shape,
             backend_pointer<B, const std::int64_t> ids, backend_pointer<B, const std::size_t> rows,
             backend_pointer<B, const row_group> groups, backend_pointer<B, std::uint32_t> argmax) {
        { B::name() } -> std::convertible_to<const char*>;
        { backend.upload(host) } -> std::same_as<tensor<T, backend_space<B>>>;
        { backend.download(device) } -> std::same_as<tensor<T>>;
        backend.upload(host_values, n, y);
        backend.download(x, n, host_out);
        backend.gemm(transpose::no, transpose::yes, n, n, n, value, x, n, x, n, value, y, n);
        backend.add_row_vector(y, n, n, n, x);
        backend.gelu(y, n);
        backend.tanh(y, n);
        backend.masked_softmax(y, n, keep);
        backend.layer_norm(x, x, y, n, n, x, x, value);
        backend.attention_forward(shape, value, x, x, x, keep, y, x, y);
        backend.copy(x, n, y);
        backend.fill(y, n, value);
        backend.scale_rows(y, x, n, n);
        backend.add(x, x, y, n);
        backend.multiply(y, x, n);
        backend.copy_rows(x, ids, y, rows, n, n);
        backend.add_rows(x, rows, y, ids, n, n);
        backend.add_type_and_position_rows(y, n, n, x, ids, x, ids);
        backend.scale_shift_rows(x, x, x, y, rows, n, n);
        backend.segment_attention_pool(x, n, groups, n, y, value, y);
        backend.max_pool(x, n, groups, n, y, argmax);
    };

/// A backend whose memory is the host's, which modules may still drive from host loops over its
/// threads (`parallel_for`). The modules require it where they do; a device backend is a
/// `backend_for` without it.
template <class B, class T>
concept host_backend_for = backend_for<B, T> && host_accessible_space<backend_space<B>> &&
                           requires(const B& backend, std::size_t n) { backend.parallel_for(n, [](std::size_t) {}); };

/// Transfers of a backend working in host memory: an upload or a download is a copy.
struct host_memory_transfers {
    using memory_space = host_space;

    template <class T>
    tensor<T> upload(const tensor<T>& values) const
    {
        return values;
    }
    template <class T>
    tensor<T> download(const tensor<T>& values) const
    {
        return values;
    }
    template <class T>
    void upload(const T* from, std::size_t n, T* to) const
    {
        std::copy_n(from, n, to);
    }
    template <class T>
    void download(const T* from, std::size_t n, T* to) const
    {
        std::copy_n(from, n, to);
    }
};

}  // namespace dm2s2
