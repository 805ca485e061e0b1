#pragma once
/// \file
/// Multi-head attention over a whole batch as one backend operation, forward and backward, written
/// once for the host backends on their own products and softmax: each (sequence, head) block is a
/// task of the backend's `parallel_for`, its rows a product, a masked softmax per row and a second
/// product. A device backend implements the same two operations over its memory (strided-batched
/// products and one softmax over every row).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "dm2s2/backend/backend.hpp"
#include "dm2s2/core/random.hpp"
#include "dm2s2/core/tensor.hpp"

namespace dm2s2 {

/// The attention operations of a host backend `Backend` on its own kernels; `Backend` derives from it.
template <class Backend>
struct host_attention_operations {
    /// context = softmax(scale · Q Kᵀ, keys where `key_mask` is non-zero) V for every sequence and head.
    /// `key_mask` [rows] may be null (every key kept); `probabilities`, when not null, receives the
    /// maps before dropout; `dropout` drops map elements (numbered as the maps are stored) before they
    /// weigh V.
    template <scalar T>
    void attention_forward(const attention_shape& shape, T scale, const T* q, const T* k, const T* v,
                           const std::uint8_t* key_mask, T* probabilities, dropout_draw dropout, T* context) const
    {
        const Backend& backend = static_cast<const Backend&>(*this);
        const batch_layout& layout = shape.layout;
        const std::size_t heads = shape.heads, d = shape.head_dim, h = shape.width();
        backend.parallel_for(layout.batch * heads, [&](std::size_t unit) {
            const std::size_t b = unit / heads, head = unit % heads;
            const std::size_t first = layout.first_row(b), len = layout.length_of(b);
            const std::size_t offset = first * h + head * d, block = layout.attention_offset(b, heads) + head * len * len;
            const std::uint8_t* keep = key_mask ? key_mask + first : nullptr;
            tensor<T> scores({len, len}, uninitialized);
            backend.gemm(transpose::no, transpose::yes, len, len, d, scale, q + offset, h, k + offset, h, T(0), scores.data(),
                         len);
            for (std::size_t i = 0; i < len; ++i) backend.masked_softmax(scores.row(i), len, keep);
            if (probabilities != nullptr) std::copy(scores.data(), scores.data() + len * len, probabilities + block);
            if (dropout.active())
                for (std::size_t i = 0; i < len * len; ++i) scores[i] *= dropout.factor<T>(block + i);
            backend.gemm(transpose::no, transpose::no, len, d, len, T(1), scores.data(), len, v + offset, h, T(0),
                         context + offset, h);
        });
    }

    /// Backward of `attention_forward` from the maps it produced (`probabilities`, before dropout) and
    /// the same dropout draw, whose factors it regenerates: dq, dk, dv [rows, heads · head_dim] are
    /// overwritten.
    template <scalar T>
    void attention_backward(const attention_shape& shape, T scale, const T* q, const T* k, const T* v, const T* probabilities,
                            dropout_draw dropout, const T* d_context, T* dq, T* dk, T* dv) const
    {
        const Backend& backend = static_cast<const Backend&>(*this);
        const batch_layout& layout = shape.layout;
        const std::size_t heads = shape.heads, d = shape.head_dim, h = shape.width();
        backend.parallel_for(layout.batch * heads, [&](std::size_t unit) {
            const std::size_t b = unit / heads, head = unit % heads;
            const std::size_t first = layout.first_row(b), len = layout.length_of(b);
            const std::size_t offset = first * h + head * d, block = layout.attention_offset(b, heads) + head * len * len;
            const T* p = probabilities + block;
            const T* used = p;                              // the probabilities the context was computed from: P, or P ⊙ dropout
            tensor<T> d_scores({len, len}, uninitialized);  // a product overwrites it
            tensor<T> kept(dropout.active() ? shape_t{len, len} : shape_t{0}, uninitialized);
            if (dropout.active()) {
                for (std::size_t i = 0; i < len * len; ++i) kept[i] = p[i] * dropout.factor<T>(block + i);
                used = kept.data();
            }
            // context = P' V: dP' = dcontext Vᵀ, dV = P'ᵀ dcontext.
            backend.gemm(transpose::no, transpose::yes, len, len, d, T(1), d_context + offset, h, v + offset, h, T(0),
                         d_scores.data(), len);
            backend.gemm(transpose::yes, transpose::no, len, d, len, T(1), used, len, d_context + offset, h, T(0), dv + offset,
                         h);
            if (dropout.active())
                for (std::size_t i = 0; i < len * len; ++i) d_scores[i] *= dropout.factor<T>(block + i);
            for (std::size_t i = 0; i < len; ++i) backend.masked_softmax_backward(p + i * len, d_scores.row(i), len);
            // scores = scale Q Kᵀ: dQ = scale dS K, dK = scale dSᵀ Q.
            backend.gemm(transpose::no, transpose::no, len, d, len, scale, d_scores.data(), len, k + offset, h, T(0), dq + offset,
                         h);
            backend.gemm(transpose::yes, transpose::no, len, d, len, scale, d_scores.data(), len, q + offset, h, T(0),
                         dk + offset, h);
        });
    }
};

}  // namespace dm2s2
