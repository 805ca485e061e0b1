#pragma once
/// \file
/// `bert_model`: HuggingFace `BertModel` (embeddings, encoder, pooler) on token inputs. It is the
/// encoder DM²S² is built on, and on its own it reproduces `BertModel` outputs for a checkpoint.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dm2s2/backend/arena.hpp"
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

/// Outputs of `bert_model::forward`, on the host.
template <scalar T>
struct bert_outputs {
    tensor<T> last_hidden_state;  ///< [batch, length, H]
    tensor<T> pooler_output;      ///< [batch, H]
    nn::encoder_trace<T> trace;   ///< filled when requested: hidden states [batch, length, H], attentions
};

/// Position and type ids of the rows an encoder runs on, in memory space `Space`, with the arena that
/// holds them (shared, so that a cache keeps it alive).
template <memory_space Space = host_space>
struct row_ids {
    std::shared_ptr<const space_arena<Space>> arena;
    space_pointer<const std::int64_t, Space> positions{};
    space_pointer<const std::int64_t, Space> types{};
    std::size_t count = 0;
};

/// What the backward pass of the BERT encoder needs from its forward pass.
template <scalar T, memory_space Space = host_space>
struct bert_cache {
    nn::batch_layout layout;
    row_ids<Space> ids;
    space_pointer<const std::int64_t, Space> word_ids{};  ///< the word ids of `forward` (null after `encode` alone)
    tensor<T, Space> embedding_pre_norm;
    dropout_draw embedding_dropout;
    std::vector<nn::encoder_layer_cache<T, Space>> layers;
};

/// The parameters of a BERT encoder under HuggingFace names, in memory space `Space`; also the shape of
/// their gradients.
template <scalar T, memory_space Space = host_space>
struct bert_parameters {
    nn::bert_embeddings<T, Space> embeddings;
    nn::encoder<T, Space> encoder;
    nn::pooler<T, Space> pooler;

    bert_parameters() = default;
    /// BERT's parameters for `c`, before `initialize` (LayerNorm γ = 1, everything else zero).
    explicit bert_parameters(const bert_config& c)
        requires host_accessible_space<Space>
        : embeddings(c), encoder(c), pooler(c.hidden_size)
    {
    }
    /// `other` with its tensors moved by `transfer` (see `nn::linear`).
    template <memory_space From, class Transfer>
    bert_parameters(const bert_parameters<T, From>& other, Transfer&& transfer)
        : embeddings(other.embeddings, transfer), encoder(other.encoder, transfer), pooler(other.pooler, transfer)
    {
    }

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(F&& visit)
    {
        embeddings.for_each_parameter("embeddings.", visit);
        encoder.for_each_parameter("encoder.", visit);
        pooler.for_each_parameter("pooler.", visit);
    }

    /// BERT's initialisation: weights N(0, stddev), biases 0 (LayerNorm as constructed).
    void initialize(random_generator& rng, double stddev)
        requires host_accessible_space<Space>
    {
        embeddings.initialize(rng, stddev);
        encoder.initialize(rng, stddev);
        pooler.dense.initialize(rng, stddev);
    }
};

/// Gradients of a `bert_model`'s parameters, under the same names.
template <scalar T, memory_space Space = host_space>
using bert_gradients = bert_parameters<T, Space>;

/// BERT encoder with HuggingFace parameter names (`embeddings.…`, `encoder.layer.{i}.…`, `pooler.…`),
/// its parameters in the memory of its backend.
template <scalar T, backend_for<T> Backend = default_backend>
class bert_model {
public:
    using scalar_type = T;
    using backend_type = Backend;
    using space = backend_space<Backend>;
    using parameters_type = bert_parameters<T, space>;
    using gradients_type = bert_gradients<T, space>;
    using cache_type = bert_cache<T, space>;
    static constexpr bool on_host = host_accessible_space<space>;

    explicit bert_model(const bert_config& config, Backend backend = {})
        : config_((config.validate(), config)), backend_(std::move(backend)), params_(host_parameters())
    {
    }

    /// `other`'s parameters moved to `backend`'s memory (a CPU model onto a device, or back).
    template <class OtherBackend>
    bert_model(const bert_model<T, OtherBackend>& other, Backend backend)
        : config_(other.config()),
          backend_(std::move(backend)),
          params_(other.parameters(), tensor_transfer<OtherBackend, Backend>{other.backend(), backend_})
    {
    }

    const bert_config& config() const noexcept { return config_; }
    const Backend& backend() const noexcept { return backend_; }
    const parameters_type& parameters() const noexcept { return params_; }
    const nn::bert_embeddings<T, space>& embeddings() const noexcept { return params_.embeddings; }
    nn::bert_embeddings<T, space>& embeddings() noexcept { return params_.embeddings; }
    const nn::encoder<T, space>& encoder() const noexcept { return params_.encoder; }
    const nn::pooler<T, space>& pooler() const noexcept { return params_.pooler; }

    /// BERT's initialisation: weights N(0, initializer_range), biases 0, LayerNorm γ=1 β=0 (drawn on
    /// the host, then moved to the backend's memory).
    void initialize(random_generator& rng)
    {
        if constexpr (on_host) {
            params_.initialize(rng, config_.initializer_range);
        } else {
            bert_parameters<T> host(config_);
            host.initialize(rng, config_.initializer_range);
            params_ = parameters_type(host, [&](const tensor<T>& t) { return backend_.upload(t); });
        }
    }

    /// Packs the encoder's and the pooler's weights into the layout this model's backend multiplies
    /// (`linear::pack_weights`), for inference: products no longer repack them on every call, the
    /// outputs stay the same and so does the memory. Returns how many weights it packed: none where the
    /// backend multiplies plain weights (double, Eigen's products, any device), and none for bf16
    /// products unless `allowed` is `weight_rounding::bf16`. Training and checkpoints work as before:
    /// whatever needs the plain weights unpacks them.
    ///
    /// With `weight_rounding::bf16`, a backend with bf16 products packs the weights rounded to bf16
    /// once, instead of rounding them in every product: the same outputs on that backend, but the
    /// weights stay rounded (unpacking, saving and training see bf16 values). For `vdpbf16ps` and AMX
    /// tiles they are stored as bf16, in half the memory. Meant for a model that only serves bf16
    /// inference.
    std::size_t pack_weights(weight_rounding allowed = weight_rounding::none)
    {
        if constexpr (host_backend_for<Backend, T>)
            return params_.encoder.pack_weights(backend_, allowed) +
                   (params_.pooler.dense.pack_weights(backend_, allowed) ? 1 : 0);
        else return 0;
    }

    /// Puts every packed weight back into plain form.
    void unpack_weights()
    {
        params_.encoder.unpack_weights();
        params_.pooler.dense.unpack_weights();
    }

    /// Runs embeddings, encoder and pooler. `with_trace` also returns every hidden state and the
    /// attention probabilities (as HF's output_hidden_states / output_attentions). The inputs move to
    /// the backend in one upload; the outputs come back to the host.
    bert_outputs<T> forward(const bert_inputs& in, bool with_trace = false, cache_type* cache = nullptr,
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
        const auto& positions = in.position_ids.empty() ? default_positions : in.position_ids;
        nn::check_ids(in.input_ids, params_.embeddings.word_embeddings.dim(0), "word id");
        params_.embeddings.check_positions_and_types(positions, in.token_type_ids);
        std::vector<std::size_t> first_rows(layout.batch);  // row 0 of each sequence, for the pooler
        for (std::size_t b = 0; b < layout.batch; ++b) first_rows[b] = layout.first_row(b);

        host_arena arena;
        const auto words = arena.add(in.input_ids);
        const auto position_section = arena.add(positions);
        const auto type_section = arena.add(in.token_type_ids);
        const auto mask = arena.add(in.attention_mask);
        const auto first = arena.add(first_rows);
        const auto indices = upload_arena(backend_, arena);
        const auto& a = *indices;
        const row_ids<space> ids{indices, a[position_section], a[type_section], n};

        bert_outputs<T> out;
        nn::encoder_trace<T, space> trace;
        tensor<T, space> hidden({n, h}, uninitialized);  // every row gets its word vector
        params_.embeddings.embed_words(backend_, a[words], n, hidden.data());
        encode(hidden, ids, layout, a[mask], with_trace ? &trace : nullptr, cache, dropout_rng);
        if (cache != nullptr) cache->word_ids = a[words];
        tensor<T, space> first_hidden({layout.batch, h}, uninitialized), pooled({layout.batch, h}, uninitialized);
        backend_.copy_rows(std::as_const(hidden).data(), a[first], first_hidden.data(), space_pointer<const std::size_t, space>{},
                           layout.batch, h);
        params_.pooler.forward(backend_, std::as_const(first_hidden).data(), layout.batch, pooled.data());
        out.pooler_output = to_host(std::move(pooled));
        out.last_hidden_state = to_host(std::move(hidden));
        out.last_hidden_state.reshape({layout.batch, layout.length, h});
        for (auto& state : trace.hidden_states) {
            out.trace.hidden_states.push_back(to_host(std::move(state)));
            out.trace.hidden_states.back().reshape({layout.batch, layout.length, h});
        }
        for (auto& map : trace.attentions) out.trace.attentions.push_back(to_host(std::move(map)));
        return out;
    }

    /// Embedding (position, type, LayerNorm) and encoder over rows that already hold element vectors:
    /// `rows` [batch·length, H] is replaced by the last hidden state. `key_mask` (null: every key) is of
    /// the backend's space. With `cache`, keeps what `encode_backward` needs; with `dropout_rng`
    /// (training), applies dropout.
    void encode(tensor<T, space>& rows, const row_ids<space>& ids, nn::batch_layout layout,
                space_pointer<const std::uint8_t, space> key_mask, nn::encoder_trace<T, space>* trace = nullptr,
                cache_type* cache = nullptr, random_generator* dropout_rng = nullptr) const
    {
        embed(rows, ids, layout, cache, dropout_rng);
        params_.encoder.forward(backend_, rows, layout, key_mask, trace, cache ? &cache->layers : nullptr, dropout_rng);
    }

    /// `encode` on host position and type ids, checked against the tables first.
    void encode(tensor<T>& rows, std::span<const std::int64_t> positions, std::span<const std::int64_t> types,
                nn::batch_layout layout, const std::uint8_t* key_mask, nn::encoder_trace<T>* trace = nullptr,
                bert_cache<T>* cache = nullptr, random_generator* dropout_rng = nullptr) const
        requires on_host
    {
        encode(rows, host_row_ids(positions, types), layout, key_mask, trace, cache, dropout_rng);
    }

    /// The embedding part of `encode` alone (position and type embeddings, LayerNorm, dropout), for
    /// models that read embedded elements without the encoder layers.
    void embed(tensor<T, space>& rows, const row_ids<space>& ids, nn::batch_layout layout, cache_type* cache = nullptr,
               random_generator* dropout_rng = nullptr) const
    {
        if (cache != nullptr) {
            cache->layout = layout;
            cache->ids = ids;
            cache->layers.clear();
        }
        params_.embeddings.forward(backend_, rows.data(), ids.count, ids.positions, ids.types,
                                   cache ? &cache->embedding_pre_norm : nullptr, dropout_rng,
                                   cache ? &cache->embedding_dropout : nullptr, layout.offset.rows);
    }

    /// `embed` on host position and type ids, checked against the tables first.
    void embed(tensor<T>& rows, std::span<const std::int64_t> positions, std::span<const std::int64_t> types,
               nn::batch_layout layout, bert_cache<T>* cache = nullptr, random_generator* dropout_rng = nullptr) const
        requires on_host
    {
        embed(rows, host_row_ids(positions, types), layout, cache, dropout_rng);
    }

    /// Backward of `encode` (or of `embed` when the cache has no layers): `grad_rows` holds d(output) on
    /// entry and d(element rows) on return; embedding and encoder gradients accumulate into `grad`.
    void encode_backward(const cache_type& cache, tensor<T, space>& grad_rows, gradients_type& grad) const
        requires training_backend_for<Backend, T>
    {
        if (!cache.layers.empty()) params_.encoder.backward(backend_, cache.layers, cache.layout, grad_rows, grad.encoder);
        params_.embeddings.backward(backend_, cache.embedding_pre_norm, cache.embedding_dropout, cache.ids.count,
                                    cache.ids.positions, cache.ids.types, grad_rows.data(), grad.embeddings);
    }

    /// Backward of `forward` (through the last hidden state; the pooler is not differentiated here):
    /// accumulates every embedding and encoder gradient into `grad`, word rows only where used.
    void backward(const cache_type& cache, const tensor<T>& grad_last_hidden, gradients_type& grad) const
        requires training_backend_for<Backend, T>
    {
        tensor<T, space> rows = backend_.upload(grad_last_hidden);
        rows.reshape({cache.layout.rows(), config_.hidden_size});
        encode_backward(cache, rows, grad);
        params_.embeddings.backward_words(backend_, cache.word_ids, cache.ids.count, std::as_const(rows).data(), grad.embeddings);
    }

    /// Zero gradients shaped like this model's parameters.
    gradients_type zero_gradients() const
    {
        gradients_type zeros = params_;
        zeros.for_each_parameter([&](const std::string&, tensor<T, space>& t) { backend_.fill(t.data(), t.size(), T(0)); });
        return zeros;
    }

    /// Visits every parameter with its HuggingFace name.
    template <class F>
        requires parameter_visitor<F, T, space>
    void for_each_parameter(F&& visit)
    {
        params_.for_each_parameter(visit);
    }

private:
    /// Fresh parameters for the configuration, in the backend's memory.
    parameters_type host_parameters() const
    {
        if constexpr (on_host) return parameters_type(config_);
        else return parameters_type(bert_parameters<T>(config_), [&](const tensor<T>& t) { return backend_.upload(t); });
    }

    /// Host position and type ids, checked and laid out in an arena of their own.
    row_ids<space> host_row_ids(std::span<const std::int64_t> positions, std::span<const std::int64_t> types) const
    {
        params_.embeddings.check_positions_and_types(positions, types);
        host_arena arena;
        const auto p = arena.add(positions);
        const auto t = arena.add(types);
        row_ids<space> ids{upload_arena(backend_, arena), {}, {}, positions.size()};
        ids.positions = (*ids.arena)[p];
        ids.types = (*ids.arena)[t];
        return ids;
    }

    /// A tensor of the backend's memory on the host: itself, or downloaded.
    tensor<T> to_host(tensor<T, space>&& t) const
    {
        if constexpr (on_host) return std::move(t);
        else return backend_.download(t);
    }

    bert_config config_;
    Backend backend_;
    parameters_type params_;
};

}  // namespace dm2s2
