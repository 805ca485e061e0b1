#pragma once
/// \file
/// `self_attention`: HuggingFace `BertAttention` (self-attention and its output block):
/// out = LN(x + Dense(MultiHead(x))), scores QKᵀ/√d, masked keys with exactly zero weight.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "dm2s2/nn/bert_config.hpp"
#include "dm2s2/nn/layer_norm.hpp"
#include "dm2s2/nn/linear.hpp"

namespace dm2s2::nn {

/// Shape of a padded batch: `batch` sequences of `length` rows each, rows flattened to [batch·length].
struct batch_layout {
    std::size_t batch = 0;
    std::size_t length = 0;
    std::size_t rows() const { return batch * length; }
};

/// Multi-head self-attention with its output projection, residual and LayerNorm.
template <scalar T>
struct self_attention {
    linear<T> query, key, value, output;
    layer_norm<T> output_norm;
    std::size_t heads = 1;

    self_attention() = default;
    explicit self_attention(const bert_config& c)
        : query(c.hidden_size, c.hidden_size), key(c.hidden_size, c.hidden_size), value(c.hidden_size, c.hidden_size),
          output(c.hidden_size, c.hidden_size), output_norm(c.hidden_size, c.layer_norm_eps), heads(c.num_attention_heads)
    {
    }

    std::size_t hidden_size() const { return query.in_features(); }

    /// x, y: [rows, H]; key_mask: [rows], non-zero where a row may be attended to. Rows that are padding
    /// still get an output (they attend to the unmasked keys), as in HF. `probabilities`, when not null,
    /// receives the attention weights [batch, heads, length, length]. y must not alias x.
    template <backend_for<T> Backend>
    void forward(const Backend& backend, const T* x, batch_layout layout, const std::uint8_t* key_mask, T* y,
                 T* probabilities = nullptr) const
    {
        const std::size_t h = hidden_size(), n = layout.rows(), s = layout.length, d = h / heads;
        tensor<T> q({n, h}), k({n, h}), v({n, h}), context({n, h});
        query.forward(backend, x, n, q.data());
        key.forward(backend, x, n, k.data());
        value.forward(backend, x, n, v.data());
        tensor<T> scores({s, s});
        const T scale = T(1) / std::sqrt(static_cast<T>(d));
        for (std::size_t b = 0; b < layout.batch; ++b) {
            const std::size_t first = b * s;
            for (std::size_t head = 0; head < heads; ++head) {
                const std::size_t col = head * d;
                backend.gemm(transpose::no, transpose::yes, s, s, d, scale, q.data() + first * h + col, h,
                             k.data() + first * h + col, h, T(0), scores.data(), s);
                for (std::size_t i = 0; i < s; ++i) backend.masked_softmax(scores.row(i), s, key_mask + first);
                if (probabilities != nullptr)
                    std::copy(scores.data(), scores.data() + s * s, probabilities + (b * heads + head) * s * s);
                backend.gemm(transpose::no, transpose::no, s, d, s, T(1), scores.data(), s, v.data() + first * h + col, h,
                             T(0), context.data() + first * h + col, h);
            }
        }
        output.forward(backend, context.data(), n, y);
        output_norm.forward(backend, y, x, y, n);
    }

    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        query.for_each_parameter(prefix + "self.query.", visit);
        key.for_each_parameter(prefix + "self.key.", visit);
        value.for_each_parameter(prefix + "self.value.", visit);
        output.for_each_parameter(prefix + "output.dense.", visit);
        output_norm.for_each_parameter(prefix + "output.LayerNorm.", visit);
    }

    void initialize(random_generator& rng, double stddev)
    {
        for (auto* l : {&query, &key, &value, &output}) l->initialize(rng, stddev);
    }
};

}  // namespace dm2s2::nn
