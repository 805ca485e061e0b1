#pragma once
/// \file
/// `linear`: y = x Wᵀ + b with W stored [out, in] as in PyTorch.

#include <concepts>
#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "dm2s2/backend/backward_kernels.hpp"
#include "dm2s2/backend/cpu/packed_matrix.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/nn/parameter.hpp"

namespace dm2s2::nn {

/// A backend that can hold a weight of scalar T in its products' own layout and multiply by it
/// (`cpu_backend` for float).
template <class B, class T>
concept weight_packing_backend_for =
    host_backend_for<B, T> && requires(const B& backend, const T* x, T* y, const packed_matrix& w, std::size_t n) {
        { backend.pack_weight(x, n, n, weight_rounding::none) } -> std::same_as<std::optional<packed_matrix>>;
        backend.gemm_packed(n, T(1), x, n, w, T(0), y, n, product_epilogue<T>{x, activation::gelu});
    };

/// Affine map with PyTorch's parameter layout: `weight` [out, in], `bias` [out].
///
/// For inference the weight can be packed once (`pack_weights`) into the layout the backend's products
/// read, instead of being repacked by every product. The packed form then replaces `weight`, which is
/// left empty, so the memory stays the same. Every way to reach the parameters as tensors gives the
/// plain weight: a mutable `for_each_parameter` unpacks it for good (it may be changed), a read-only
/// visit gets a plain copy; `backward` multiplies by a plain copy. A weight packed for bf16 products
/// with `weight_rounding::bf16` is rounded for good: the plain weight is then the rounded one.
///
/// The parameters live in memory space `Space` (the host's unless named); a layer in another space
/// is made from a host one by moving its tensors (`linear(host_layer, transfer)`), and runs on a
/// backend of that space. Packing is for host layers only.
template <scalar T, memory_space Space = host_space>
struct linear {
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;
    static constexpr bool on_host = host_accessible_space<Space>;

    tensor<T, Space> weight;
    tensor<T, Space> bias;

    linear() = default;
    linear(std::size_t in_features, std::size_t out_features)
        requires on_host
        : weight({out_features, in_features}), bias({out_features})
    {
    }

    /// The layer `other` with every tensor moved by `transfer` (a function from `other`'s tensors to
    /// this space's, such as a backend's `upload`); a packed weight moves in plain form.
    template <memory_space From, class Transfer>
    linear(const linear<T, From>& other, Transfer&& transfer)
        : weight(transfer(other.unpacked_weight())), bias(transfer(other.bias))
    {
    }

    /// The plain [out, in] weight, as a copy: unpacked where it is packed.
    tensor<T, Space> unpacked_weight() const
    {
        if constexpr (on_host)
            if (packed_) return plain_weight();
        return weight;
    }

    std::size_t in_features() const { return packed_ ? packed_->cols() : weight.dim(1); }
    std::size_t out_features() const { return packed_ ? packed_->rows() : weight.dim(0); }

    /// Whether the weight is held packed (`weight` is then empty).
    bool weights_packed() const noexcept { return packed_.has_value(); }

    /// Whether the weight is held packed and rounded to bfloat16 (`weight_rounding::bf16`).
    bool weights_rounded() const noexcept { return packed_ && packed_->rounding() == weight_rounding::bf16; }

    /// Packs the weight for `backend`'s products where it reads packed weights (see
    /// `cpu_backend::pack_weight`), rounding it where `allowed` says so and the products round it
    /// anyway; returns whether it did. Forward passes on `backend` give the same numbers.
    template <host_backend_for<T> Backend>
    bool pack_weights(const Backend& backend, weight_rounding allowed = weight_rounding::none)
    {
        if constexpr (weight_packing_backend_for<Backend, T>) {
            if (!packed_) {
                if (auto packed = backend.pack_weight(weight.data(), out_features(), in_features(), allowed)) {
                    packed_ = std::move(*packed).stored_in(std::move(weight));
                    weight = tensor<T>();  // moved from, or still holding the weight when it did not fit
                }
            }
        }
        return packed_.has_value();
    }

    /// Puts the weight back into `weight`, exactly as it was packed (rounded, where it was).
    void unpack_weights()
    {
        if constexpr (on_host) {
            if (!packed_) return;
            weight = plain_weight();
            packed_.reset();
        }
    }

    /// y[rows, out] = act(x[rows, in] Wᵀ + b); x and y are contiguous row-major. With packed weights the
    /// bias and the activation are applied inside the product, tile by tile, with the same numbers.
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, const_pointer x, std::size_t rows, pointer y,
                 activation act = activation::identity) const
    {
        if constexpr (on_host && weight_packing_backend_for<Backend, T>) {
            if (packed_) {
                backend.gemm_packed(rows, T(1), x, in_features(), *packed_, T(0), y, out_features(),
                                    product_epilogue<T>{bias.data(), act});
                return;
            }
        }
        tensor<T, Space> unpacked;  // packed for another backend
        backend.gemm(transpose::no, transpose::yes, rows, out_features(), in_features(), T(1), x, in_features(),
                     plain_values(unpacked), in_features(), T(0), y, out_features());
        backend.add_row_vector(y, rows, out_features(), out_features(), bias.data());
        if (act == activation::gelu) backend.gelu(y, rows * out_features());
    }

    /// Tensor overload: resizes y to [rows, out].
    template <backend_in<T, Space> Backend>
    void forward(const Backend& backend, const tensor<T, Space>& x, tensor<T, Space>& y) const
    {
        const std::size_t rows = x.empty() ? 0 : x.size() / in_features();
        y.resize({rows, out_features()}, uninitialized);  // the product overwrites it
        forward(backend, x.data(), rows, y.data());
    }

    /// Backward of `forward` for input x [rows, in] and output gradient dy [rows, out]: accumulates
    /// dW += dyᵀ x and db += Σ dy into `grad`; writes dx = dy W (adds it when `accumulate_dx`), or
    /// skips it when dx is null.
    template <training_backend_in<T, Space> Backend>
    void backward(const Backend& backend, const_pointer x, const_pointer dy, std::size_t rows, pointer dx, linear& grad,
                  bool accumulate_dx = false) const
    {
        backend.gemm(transpose::yes, transpose::no, out_features(), in_features(), rows, T(1), dy, out_features(), x,
                     in_features(), T(1), grad.weight.data(), in_features());
        backend.add_column_sums(dy, rows, out_features(), out_features(), grad.bias.data());
        if (dx != nullptr) {
            tensor<T, Space> unpacked;
            backend.gemm(transpose::no, transpose::no, rows, in_features(), out_features(), T(1), dy, out_features(),
                         plain_values(unpacked), in_features(), accumulate_dx ? T(1) : T(0), dx, in_features());
        }
    }

    /// Visits `weight` and `bias`. A packed weight is unpacked first, or lent as a plain copy to a
    /// `read_only_visitor`.
    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        if (packed_ && is_read_only_visitor_v<F>) {
            tensor<T, Space> copy = unpacked_weight();
            visit(prefix + "weight", copy);
        } else {
            unpack_weights();
            visit(prefix + "weight", weight);
        }
        visit(prefix + "bias", bias);
    }

    /// Weights N(0, stddev), bias zero.
    void initialize(random_generator& rng, double stddev)
        requires on_host
    {
        unpack_weights();
        fill_normal(weight, rng, stddev);
        bias.fill(T(0));
    }

private:
    /// The packed weight as a plain [out, in] tensor.
    tensor<T> plain_weight() const
    {
        tensor<T> w({packed_->rows(), packed_->cols()}, uninitialized);
        if constexpr (std::is_same_v<T, float>) packed_->unpack(w.data());
        return w;
    }

    /// The weight's plain [out, in] values: `weight`'s own, or a copy unpacked into `scratch`.
    const_pointer plain_values(tensor<T, Space>& scratch) const
    {
        if constexpr (on_host)
            if (packed_) {
                scratch = plain_weight();
                return scratch.data();
            }
        return weight.data();
    }

    std::optional<packed_matrix> packed_;  ///< the weight in the backend's layout, when packed
};

}  // namespace dm2s2::nn
