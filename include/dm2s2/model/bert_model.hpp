#pragma once
/// \file
/// `bert_model`: HuggingFace `BertModel` (embeddings, encoder, pooler) on token inputs. It is the
/// encoder DM²S² is built on, and on its own it reproduces `BertModel` outputs for a checkpoint.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dm2s2/backend/default_backend.hpp"
#include "dm2s2/nn/embeddings.hpp"
#include "dm2s2/nn/encoder.hpp"
#include "dm2s2/nn/pooler.hpp"

namespace dm2s2 {

/// Token inputs of a padded batch, all [batch, length] row-major; `position_ids` empty means 0..length-1.
struct bert_inputs {
    nn::batch_layout layout;
    std::vector<std::int64_t> input_ids;
    std::vector<std::int64_t> token_type_ids;
    std::vector<std::int64_t> position_ids;
    std::vector<std::uint8_t> attention_mask;
};

/// Outputs of `bert_model::forward`.
template <scalar T>
struct bert_outputs {
    tensor<T> last_hidden_state;  ///< [batch, length, H]
    tensor<T> pooler_output;      ///< [batch, H]
    nn::encoder_trace<T> trace;   ///< filled when requested: hidden states [batch, length, H], attentions
};

/// What the backward pass of the BERT encoder needs from its forward pass.
template <scalar T>
struct bert_cache {
    nn::batch_layout layout;
    std::vector<std::int64_t> word_ids;  ///< the word ids of `forward` (empty after `encode` alone)
    std::vector<std::int64_t> positions, types;
    tensor<T> embedding_pre_norm;
    dropout_draw embedding_dropout;
    std::vector<nn::encoder_layer_cache<T>> layers;
};

/// The parameters of a BERT encoder under HuggingFace names; also the shape of their gradients.
template <scalar T>
struct bert_parameters {
    nn::bert_embeddings<T> embeddings;
    nn::encoder<T> encoder;
    nn::pooler<T> pooler;

    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(F&& visit)
    {
        embeddings.for_each_parameter("embeddings.", visit);
        encoder.for_each_parameter("encoder.", visit);
        pooler.for_each_parameter("pooler.", visit);
    }
};

/// Gradients of a `bert_model`'s parameters, under the same names.
template <scalar T>
using bert_gradients = bert_parameters<T>;

/// BERT encoder with HuggingFace parameter names (`embeddings.…`, `encoder.layer.{i}.…`, `pooler.…`).
template <scalar T, host_backend_for<T> Backend = default_backend>
class bert_model {
public:
    using scalar_type = T;
    using backend_type = Backend;

    explicit bert_model(const bert_config& config, Backend backend = {})
        : config_((config.validate(), config)), backend_(std::move(backend)),
          params_{nn::bert_embeddings<T>(config), nn::encoder<T>(config), nn::pooler<T>(config.hidden_size)}
    {
    }

    const bert_config& config() const noexcept { return config_; }
    const Backend& backend() const noexcept { return backend_; }
    const nn::bert_embeddings<T>& embeddings() const noexcept { return params_.embeddings; }
    nn::bert_embeddings<T>& embeddings() noexcept { return params_.embeddings; }
    const nn::encoder<T>& encoder() const noexcept { return params_.encoder; }
    const nn::pooler<T>& pooler() const noexcept { return params_.pooler; }

    /// BERT's initialisation: weights N(0, initializer_range), biases 0, LayerNorm γ=1 β=0.
    void initialize(random_generator& rng)
    {
        params_.embeddings.initialize(rng, config_.initializer_range);
        params_.encoder.initialize(rng, config_.initializer_range);
        params_.pooler.dense.initialize(rng, config_.initializer_range);
    }

    /// Packs the encoder's and the pooler's weights into the layout this model's backend multiplies
    /// (`linear::pack_weights`), for inference: products no longer repack them on every call, the
    /// outputs stay the same and so does the memory. Returns how many weights it packed: none where the
    /// backend multiplies plain weights (double, Eigen's products, `vdpbf16ps`), and none for bf16
    /// products unless `allowed` is `weight_rounding::bf16`. Training and checkpoints work as before:
    /// whatever needs the plain weights unpacks them.
    ///
    /// With `weight_rounding::bf16`, a backend with bf16 products by FMA packs the weights rounded to
    /// bf16 once, instead of rounding them in every product: the same outputs on that backend, at the
    /// fp32 products' speed, but the weights stay rounded (unpacking, saving and training see bf16
    /// values). Meant for a model that only serves bf16 inference.
    std::size_t pack_weights(weight_rounding allowed = weight_rounding::none)
    {
        return params_.encoder.pack_weights(backend_, allowed) + (params_.pooler.dense.pack_weights(backend_, allowed) ? 1 : 0);
    }

    /// Puts every packed weight back into plain form.
    void unpack_weights()
    {
        params_.encoder.unpack_weights();
        params_.pooler.dense.unpack_weights();
    }

    /// Runs embeddings, encoder and pooler. `with_trace` also returns every hidden state and the
    /// attention probabilities (as HF's output_hidden_states / output_attentions).
    bert_outputs<T> forward(const bert_inputs& in, bool with_trace = false, bert_cache<T>* cache = nullptr,
                            random_generator* dropout_rng = nullptr) const
    {
        const auto& layout = in.layout;
        const std::size_t n = layout.rows(), h = config_.hidden_size;
        const auto check = [&](std::size_t size, const char* name) {
            if (size != n)
                throw shape_error(std::string("bert_model: ") + name + " has " + std::to_string(size) +
                                  " elements, expected batch × length = " + std::to_string(n));
        };
        check(in.input_ids.size(), "input_ids");
        check(in.token_type_ids.size(), "token_type_ids");
        check(in.attention_mask.size(), "attention_mask");
        std::vector<std::int64_t> default_positions;
        if (in.position_ids.empty()) {
            default_positions.resize(n);
            for (std::size_t i = 0; i < n; ++i) default_positions[i] = static_cast<std::int64_t>(i % layout.length);
        } else {
            check(in.position_ids.size(), "position_ids");
        }

        bert_outputs<T> out;
        tensor<T> hidden({n, h});
        params_.embeddings.embed_words(backend_, in.input_ids, hidden.data());
        encode(hidden, in.position_ids.empty() ? default_positions : in.position_ids, in.token_type_ids, layout,
               in.attention_mask.data(), with_trace ? &out.trace : nullptr, cache, dropout_rng);
        if (cache != nullptr) cache->word_ids = in.input_ids;
        out.pooler_output = pool(hidden, layout);
        hidden.reshape({layout.batch, layout.length, h});
        out.last_hidden_state = std::move(hidden);
        for (auto& state : out.trace.hidden_states) state.reshape({layout.batch, layout.length, h});
        return out;
    }

    /// Embedding (position, type, LayerNorm) and encoder over rows that already hold element vectors:
    /// `rows` [batch·length, H] is replaced by the last hidden state.
    /// With `cache`, keeps what `encode_backward` needs; with `dropout_rng` (training), applies dropout.
    void encode(tensor<T>& rows, std::span<const std::int64_t> positions, std::span<const std::int64_t> types,
                nn::batch_layout layout, const std::uint8_t* key_mask, nn::encoder_trace<T>* trace = nullptr,
                bert_cache<T>* cache = nullptr, random_generator* dropout_rng = nullptr) const
    {
        embed(rows, positions, types, layout, cache, dropout_rng);
        params_.encoder.forward(backend_, rows, layout, key_mask, trace, cache ? &cache->layers : nullptr, dropout_rng);
    }

    /// The embedding part of `encode` alone (position and type embeddings, LayerNorm, dropout), for
    /// models that read embedded elements without the encoder layers.
    void embed(tensor<T>& rows, std::span<const std::int64_t> positions, std::span<const std::int64_t> types,
               nn::batch_layout layout, bert_cache<T>* cache = nullptr, random_generator* dropout_rng = nullptr) const
    {
        if (cache != nullptr) {
            cache->layout = layout;
            cache->positions.assign(positions.begin(), positions.end());
            cache->types.assign(types.begin(), types.end());
            cache->layers.clear();
        }
        params_.embeddings.forward(backend_, rows.data(), positions, types, cache ? &cache->embedding_pre_norm : nullptr,
                                   dropout_rng, cache ? &cache->embedding_dropout : nullptr);
    }

    /// Backward of `encode` (or of `embed` when the cache has no layers): `grad_rows` holds d(output) on
    /// entry and d(element rows) on return; embedding and encoder gradients accumulate into `grad`.
    void encode_backward(const bert_cache<T>& cache, tensor<T>& grad_rows, bert_gradients<T>& grad) const
        requires host_training_backend_for<Backend, T>
    {
        if (!cache.layers.empty()) params_.encoder.backward(backend_, cache.layers, cache.layout, grad_rows, grad.encoder);
        params_.embeddings.backward(backend_, cache.embedding_pre_norm, cache.embedding_dropout, cache.positions,
                                    cache.types, grad_rows.data(), grad.embeddings);
    }

    /// Backward of `forward` (through the last hidden state; the pooler is not differentiated here):
    /// accumulates every embedding and encoder gradient into `grad`, word rows only where used.
    void backward(const bert_cache<T>& cache, const tensor<T>& grad_last_hidden, bert_gradients<T>& grad) const
        requires host_training_backend_for<Backend, T>
    {
        tensor<T> rows = grad_last_hidden;
        rows.reshape({cache.layout.rows(), config_.hidden_size});
        encode_backward(cache, rows, grad);
        params_.embeddings.backward_words(backend_, cache.word_ids, rows.data(), grad.embeddings);
    }

    /// Zero gradients shaped like this model's parameters.
    bert_gradients<T> zero_gradients() const
    {
        bert_gradients<T> zeros = params_;
        zeros.for_each_parameter([](const std::string&, tensor<T>& t) { t.fill(T(0)); });
        return zeros;
    }

    /// The pooler on the [CLS] row of each sequence of `hidden` ([batch·length, H]) → [batch, H].
    tensor<T> pool(const tensor<T>& hidden, nn::batch_layout layout) const
    {
        tensor<T> pooled({layout.batch, config_.hidden_size});
        params_.pooler.forward(backend_, hidden.data(), layout, pooled.data());
        return pooled;
    }

    /// Visits every parameter with its HuggingFace name.
    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(F&& visit)
    {
        params_.for_each_parameter(visit);
    }

private:
    bert_config config_;
    Backend backend_;
    bert_parameters<T> params_;
};

}  // namespace dm2s2
