#pragma once
/// \file
/// `model<T, Backend>`: DM²S². Every present modality of a record goes through one BERT encoder as
/// one packed sequence; IntraMRA pools the elements of each modality, InterMRA the modalities, and a
/// linear head gives the logits. The attention weights are the explanation (docs/design.md §5).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <ranges>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dm2s2/backend/arena.hpp"
#include "dm2s2/data/packing.hpp"
#include "dm2s2/data/schema.hpp"
#include "dm2s2/model/bert_model.hpp"
#include "dm2s2/model/model_config.hpp"
#include "dm2s2/nn/modality_attention.hpp"
#include "dm2s2/nn/modality_embeddings.hpp"
#include "dm2s2/nn/set_pooling.hpp"

namespace dm2s2 {

/// The attention weights behind a prediction. α and γ are aligned with the packed slots
/// ([batch · length], zero off elements); β is [batch · modalities], zero for missing modalities.
template <scalar T>
struct attention_explanation {
    std::size_t modality_count = 0;
    nn::batch_layout layout;
    std::vector<modality_span> spans;  ///< [batch · modalities], as in the packed batch
    std::vector<T> alpha;              ///< element weight within its modality (sums to 1 per present modality)
    std::vector<T> beta;               ///< modality weight (sums to 1 over present modalities)
    std::vector<T> gamma;              ///< element importance β_m α_{m,i} (sums to 1 per sample)

    const modality_span& span(std::size_t b, std::size_t m) const { return spans[b * modality_count + m]; }
    /// α of the elements of modality m of sample b (empty when missing).
    std::span<const T> alpha_of(std::size_t b, std::size_t m) const { return slice(alpha, b, m); }
    /// γ of the elements of modality m of sample b (empty when missing).
    std::span<const T> gamma_of(std::size_t b, std::size_t m) const { return slice(gamma, b, m); }
    T beta_of(std::size_t b, std::size_t m) const { return beta[b * modality_count + m]; }

private:
    std::span<const T> slice(const std::vector<T>& v, std::size_t b, std::size_t m) const
    {
        const auto& s = span(b, m);
        return {v.data() + b * layout.length + s.begin, s.length};
    }
};

/// Result of `model::forward`.
template <scalar T>
struct model_output {
    tensor<T> logits;                      ///< [batch, num_outputs]
    attention_explanation<T> explanation;  ///< filled when requested
};

/// The parameters DM²S² adds to its BERT encoder: the modality embeddings, IntraMRA (one shared or
/// one per modality), InterMRA, the element MLP of the `dm2s` baseline and the head, in memory space
/// `Space`. Also the shape of their gradients.
template <scalar T, memory_space Space = host_space>
struct pooling_parameters {
    std::vector<std::string> modality_names;
    std::vector<nn::modality_embedding<T, Space>> modality_embeddings;
    bool shared_intra = true;
    std::vector<nn::modality_attention<T, Space>> intra;  ///< none, one (shared) or one per modality
    std::vector<nn::modality_attention<T, Space>> inter;  ///< none or one
    std::vector<nn::element_mlp<T, Space>> element_mlp;   ///< dm2s pooling: one, otherwise none
    nn::linear<T, Space> head;
    tensor<T, Space> residual;  ///< learned residuals: r of IntraMRA and of InterMRA ([2]); empty when fixed

    pooling_parameters() = default;
    /// `other` with its tensors moved by `transfer` (see `nn::linear`).
    template <memory_space From, class Transfer>
    pooling_parameters(const pooling_parameters<T, From>& other, Transfer&& transfer)
        : modality_names(other.modality_names),
          shared_intra(other.shared_intra),
          head(other.head, transfer),
          residual(transfer(other.residual))
    {
        for (const auto& e : other.modality_embeddings) modality_embeddings.emplace_back(e, transfer);
        for (const auto& a : other.intra) intra.emplace_back(a, transfer);
        for (const auto& a : other.inter) inter.emplace_back(a, transfer);
        for (const auto& mlp : other.element_mlp) element_mlp.emplace_back(mlp, transfer);
    }

    /// Names: `modality_embeddings.<name>.…`, `intra_mra.…` (or `intra_mra.<name>.…`), `inter_mra.…`,
    /// `mra_residual` (learned residuals), `element_mlp.{0,1}.…`, `head.{weight,bias}`.
    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(const std::string& prefix, F&& visit)
    {
        for (std::size_t m = 0; m < modality_names.size(); ++m)
            modality_embeddings[m].for_each_parameter(prefix + "modality_embeddings." + modality_names[m] + ".", visit);
        for (std::size_t m = 0; m < intra.size(); ++m)
            intra[m].for_each_parameter(prefix + (shared_intra ? "intra_mra." : "intra_mra." + modality_names[m] + "."), visit);
        for (auto& a : inter) a.for_each_parameter(prefix + "inter_mra.", visit);
        if (residual.size() > 0) visit(prefix + "mra_residual", residual);
        for (auto& mlp : element_mlp) mlp.for_each_parameter(prefix + "element_mlp.", visit);
        head.for_each_parameter(prefix + "head.", visit);
    }
};

/// Gradients of every parameter of a `model`, visited under the model's parameter names, in memory
/// space `Space`.
template <scalar T, memory_space Space = host_space>
struct model_gradients {
    bert_gradients<T, Space> encoder;
    pooling_parameters<T, Space> pooling;

    template <class F>
        requires parameter_visitor<F, T, Space>
    void for_each_parameter(F&& visit)
    {
        encoder.for_each_parameter(visit);
        pooling.for_each_parameter("", visit);
    }
};

/// A present (sample, modality) of a packed batch: one group of element rows.
struct present_modality {
    std::size_t sample, modality, first_slot;
};

/// A packed batch made ready for a model's backend (`model::prepare`): every index array and input
/// value a forward and backward pass read (element sources, positions and types, the rows the encoder
/// runs on, [CLS] slots, element groups, and the training targets when given) laid out in one arena
/// and moved to the backend's memory in one upload, with what the host keeps to read the results.
template <scalar T, memory_space Space = host_space>
struct prepared_batch {
    packed_batch batch;
    modality_split split;                        ///< mid_fusion: the batch the encoder runs on
    row_compaction compaction;                   ///< padding-free execution: the real rows the encoder runs on
    std::vector<present_modality> present;       ///< pooling by elements: group g's (sample, modality)
    std::vector<nn::row_group> element_groups;   ///< the element rows of each present modality
    std::vector<nn::row_group> modality_groups;  ///< the present modalities of each sample
    std::vector<nn::row_group> sample_groups;    ///< the element rows of each sample
    std::size_t elements = 0;
    batch_offset offset;  ///< where the batch lies in the batch it is a share of

    nn::element_sections<T> sources;               ///< of the encoder's batch
    arena_section<std::int64_t> positions, types;  ///< of the rows the encoder runs on
    arena_section<std::uint8_t> key_mask;          ///< padded execution
    arena_section<std::size_t> compact_slots;      ///< padding-free execution: the slot of each encoded row
    arena_section<std::size_t> cls_slots;          ///< cls, mid_fusion: the [CLS] slot of each sequence
    arena_section<std::size_t> fused_rows;         ///< mid_fusion: the pooled row each [CLS] output fills
    arena_section<std::size_t> element_slots;      ///< the slot of each gathered element row
    arena_section<nn::row_group> element_groups_at, modality_groups_at, sample_groups_at;
    arena_section<T> targets;  ///< training targets, when given
    std::shared_ptr<const space_arena<Space>> arena;

    /// The batch the encoder runs on: the batch itself, or (mid_fusion) its split by modality.
    const packed_batch& encoded() const noexcept { return split.origin.empty() ? batch : split.batch; }
    /// The values of `section` in the backend's memory.
    template <class U>
    space_pointer<const U, Space> operator[](arena_section<U> section) const
    {
        return (*arena)[section];
    }
};

/// What `model::backward` needs from the forward pass, in the backend's memory.
template <scalar T, memory_space Space = host_space>
struct model_cache {
    prepared_batch<T, Space> batch;
    bert_cache<T, Space> encoder;
    tensor<T, Space> element_rows, modality_rows, pooled;
    tensor<T, Space> cls_rows;                        ///< cls pooling: the [CLS] rows the pooler read
    tensor<T, Space> head_input;                      ///< pooled after dropout
    dropout_draw head_dropout;                        ///< the dropout applied before the head
    tensor<T, Space> weights;                         ///< softmax weights: α of the elements, then β of the present modalities
    std::vector<tensor<T, Space>> intra_activations;  ///< one per IntraMRA call
    tensor<T, Space> inter_activation;
    nn::element_mlp_cache<T, Space> element_mlp;  ///< dm2s pooling
    tensor<T, Space> element_outputs;             ///< dm2s pooling: the MLP's output rows
    tensor<std::uint32_t, Space> max_rows;        ///< dm2s pooling: the row of each maximum
};

/// The DM²S² model, generic over the scalar type and the backend policy; its parameters live in the
/// backend's memory.
template <scalar T, backend_for<T> Backend = default_backend>
class model {
public:
    using scalar_type = T;
    using backend_type = Backend;
    using space = backend_space<Backend>;
    using pointer = space_pointer<T, space>;
    using const_pointer = space_pointer<const T, space>;
    using gradients_type = model_gradients<T, space>;
    using cache_type = model_cache<T, space>;
    using batch_type = prepared_batch<T, space>;
    static constexpr bool on_host = host_accessible_space<space>;

    /// A randomly initialised model (BERT initialisation, seeded; drawn on the host whatever the
    /// backend, so every backend starts from the same parameters). `config.bert.type_vocab_size` is
    /// set to the number of modalities, since the packed sequence uses type m for modality m.
    model(dm2s2::schema s, model_config config, std::uint64_t seed, Backend backend = {})
        : schema_(std::move(s)), config_(with_type_rows(std::move(config), schema_)), bert_(config_.bert, backend)
    {
        if (config_.num_outputs == 0) throw config_error("model_config: num_outputs must be positive");
        for (const std::size_t level : {0, 1})
            if (!(config_.mra.residual_at(level) >= 0))
                throw config_error(std::string("model_config: the ") + (level ? "InterMRA" : "IntraMRA") +
                                   " residual must be non-negative");
        if (!(config_.head_dropout >= 0 && config_.head_dropout < 1))
            throw config_error("model_config: head_dropout must lie in [0, 1)");
        for (const auto id : {config_.cls_id, config_.sep_id, config_.pad_id})
            if (id < 0 || static_cast<std::uint64_t>(id) >= config_.bert.vocab_size)
                throw config_error("model_config: special token id " + std::to_string(id) + " is outside the vocabulary of " +
                                   std::to_string(config_.bert.vocab_size));
        pooling_parameters<T> host;
        for (const auto& spec : schema_.modalities()) {
            host.modality_names.push_back(spec.name);
            host.modality_embeddings.emplace_back(spec, hidden());
        }
        const nn::modality_attention<T> attention(hidden(), attention_dim());
        host.shared_intra = config_.mra.shared_intra;
        if (has_intra(config_.pooling)) host.intra.assign(config_.mra.shared_intra ? 1 : schema_.size(), attention);
        if (has_inter(config_.pooling)) host.inter.assign(1, attention);
        if (config_.pooling == pooling_kind::dm2s) host.element_mlp.assign(1, nn::element_mlp<T>(hidden()));
        host.head = nn::linear<T>(pooled_size(), config_.num_outputs);
        if (config_.mra.learned_residual && (has_intra(config_.pooling) || has_inter(config_.pooling))) {
            host.residual = tensor<T>({2});
            for (std::size_t level = 0; level < 2; ++level) host.residual[level] = static_cast<T>(config_.mra.residual_at(level));
        }

        random_generator rng(seed);
        bert_.initialize(rng);
        const double stddev = config_.bert.initializer_range;
        for (auto& e : host.modality_embeddings) e.initialize(rng, stddev);
        for (auto& a : host.intra) a.initialize(rng, stddev);
        for (auto& a : host.inter) a.initialize(rng, stddev);
        for (auto& mlp : host.element_mlp) mlp.initialize(rng, stddev);
        host.head.initialize(rng, stddev);
        if constexpr (on_host) pooling_ = std::move(host);
        else pooling_ = pooling_parameters<T, space>(host, [&](const tensor<T>& t) { return bert_.backend().upload(t); });
        set_fixed_residuals();
    }

    /// `other` with its parameters moved to `backend`'s memory: a CPU model onto a device, or back.
    template <class OtherBackend>
    model(const model<T, OtherBackend>& other, Backend backend)
        : schema_(other.schema()),
          config_(other.config()),
          bert_(other.encoder(), std::move(backend)),
          pooling_(other.pooling(), tensor_transfer<OtherBackend, Backend>{other.encoder().backend(), bert_.backend()}),
          padding_free_(other.padding_free())
    {
        set_fixed_residuals();
    }

    const dm2s2::schema& schema() const noexcept { return schema_; }
    const model_config& config() const noexcept { return config_; }
    const bert_model<T, Backend>& encoder() const noexcept { return bert_; }
    bert_model<T, Backend>& encoder() noexcept { return bert_; }
    const Backend& backend() const noexcept { return bert_.backend(); }
    const pooling_parameters<T, space>& pooling() const noexcept { return pooling_; }

    /// Whether the encoder runs on the real rows only (the default) or on the padded batch. Both give
    /// the same outputs and gradients; without padding nothing is computed for padding slots. (With
    /// dropout the two draw their masks over different row counts, so training runs differ.)
    bool padding_free() const noexcept { return padding_free_; }
    void set_padding_free(bool on) noexcept { padding_free_ = on; }

    /// Settings the packer needs to lay out a batch for this model.
    packing_options packing() const
    {
        return {config_.positions, config_.bert.vocab_size, config_.bert.max_position_embeddings,
                config_.cls_id,    config_.sep_id,          config_.pad_id};
    }

    /// Packs records for this model (see `dm2s2::pack`).
    template <std::ranges::forward_range Range>
        requires sequence_set_like<std::ranges::range_value_t<Range>>
    packed_batch pack(Range&& samples) const
    {
        return dm2s2::pack(schema_, samples, packing());
    }

    /// Makes `batch` ready for this model's backend: checks its ids against the tables, lays out every
    /// index array the passes read (with `targets`, the training targets, when not empty) and moves them
    /// to the backend in one upload. The result is valid while the model keeps its configuration and
    /// its padding-free setting. `offset` places the batch in a larger one it is a share of (a
    /// data-parallel rank's part): dropout then draws what one pass over the whole batch would, on the
    /// padding-free path (the padded one numbers its elements from the share's own start).
    batch_type prepare(const packed_batch& batch, std::span<const T> targets = {}, batch_offset offset = {}) const
    {
        if (batch.modality_count != schema_.size())
            throw shape_error("model: packed batch has " + std::to_string(batch.modality_count) + " modalities, the schema " +
                              std::to_string(schema_.size()));
        batch_type p;
        p.batch = batch;
        p.offset = offset;
        if (config_.pooling == pooling_kind::mid_fusion) p.split = split_by_modality(batch);
        const packed_batch& encoded = p.encoded();
        host_arena arena;
        p.sources = nn::element_sections<T>(
            nn::element_sources<T>(encoded, config_.bert.vocab_size, pooling_.modality_embeddings), arena);
        bert_.embeddings().check_positions_and_types(encoded.position_ids, encoded.type_ids);
        if (padding_free_ && config_.pooling != pooling_kind::dm2s) {
            p.compaction = row_compaction(encoded);
            p.compaction.layout.offset = offset;
            p.compact_slots = arena.add(p.compaction.slots);
            p.positions = arena.add(p.compaction.gather(encoded.position_ids));
            p.types = arena.add(p.compaction.gather(encoded.type_ids));
        } else {
            p.positions = arena.add(encoded.position_ids);
            p.types = arena.add(encoded.type_ids);
            if (config_.pooling != pooling_kind::dm2s) p.key_mask = arena.add(encoded.mask);
        }
        switch (config_.pooling) {
        case pooling_kind::cls: p.cls_slots = arena.add(cls_slots(batch)); break;
        case pooling_kind::mid_fusion:
            p.cls_slots = arena.add(cls_slots(p.split.batch));
            p.fused_rows = arena.add(fused_rows(p.split));
            break;
        default: group_elements(p, arena);
        }
        if (!targets.empty()) p.targets = arena.add(targets);
        p.arena = upload_arena(backend(), arena);
        return p;
    }

    /// Where a share of a batch starts when the shares before it hold the records packed in `before`
    /// (see `batch_offset`): their sequences, and the rows and Σ length² of the sequences the
    /// padding-free encoder runs on for them.
    batch_offset offset_after(const packed_batch& before) const
    {
        const auto count = [](const packed_batch& b, batch_offset& o) {
            for (const std::size_t len : b.lengths) {
                o.rows += len;
                o.squares += len * len;
            }
        };
        batch_offset o{.samples = before.layout.batch};
        if (config_.pooling == pooling_kind::mid_fusion) count(split_by_modality(before).batch, o);
        else count(before, o);
        return o;
    }

    /// Logits for a batch of records and, when `explain`, the α, β and γ weights (poolings that
    /// `explains`; the others throw config_error when asked).
    template <std::ranges::forward_range Range>
        requires sequence_set_like<std::ranges::range_value_t<Range>>
    model_output<T> forward(Range&& samples, bool explain = false) const
    {
        return forward(pack(samples), explain);
    }

    /// Logits for a packed batch and, when `explain`, the α, β and γ weights, on the host. With `cache`,
    /// keeps what `backward` needs; with `dropout_rng` (training), applies dropout (embeddings, hidden,
    /// attention probabilities, head) with the probabilities of the configuration. `element_scale`,
    /// when not empty, holds one factor per slot of the batch the encoder runs on
    /// (`prepared_batch::encoded`): each element vector is multiplied by it before positions and types
    /// are added (the path of integrated gradients).
    model_output<T> forward(const packed_batch& batch, bool explain = false, cache_type* cache = nullptr,
                            random_generator* dropout_rng = nullptr, std::span<const T> element_scale = {}) const
    {
        return forward(prepare(batch), explain, cache, dropout_rng, element_scale);
    }

    /// `forward` on a prepared batch: one download of the logits, and one of the attention weights when
    /// explaining with learned weights.
    model_output<T> forward(const batch_type& batch, bool explain = false, cache_type* cache = nullptr,
                            random_generator* dropout_rng = nullptr, std::span<const T> element_scale = {}) const
    {
        if (explain && !explains(config_.pooling))
            throw config_error("model: " + std::string(to_string(config_.pooling)) +
                               " pooling has no attention weights to explain with");
        cache_type local;
        auto& c = cache ? *cache : local;
        tensor<T, space> logits = run(batch, c, cache != nullptr, dropout_rng, element_scale);
        model_output<T> out;
        if constexpr (on_host) out.logits = std::move(logits);
        else out.logits = backend().download(logits);
        if (explain) out.explanation = explanation(batch, c);
        return out;
    }

    /// The logits [batch, outputs] of a prepared batch, left in the backend's memory (what a training
    /// step reads); see `forward` for the arguments.
    tensor<T, space> forward_logits(const batch_type& p, cache_type* cache = nullptr, random_generator* dropout_rng = nullptr,
                                    std::span<const T> element_scale = {}) const
    {
        cache_type local;
        return run(p, cache ? *cache : local, cache != nullptr, dropout_rng, element_scale);
    }

    /// Backward of `forward` run with `cache`: from d(logits) [batch, outputs] in the backend's memory,
    /// accumulates the gradient of every parameter into `grad` (see `zero_gradients`). `d_elements`,
    /// when given, receives the gradient of the element vectors that entered the encoder ([slots of
    /// `prepared_batch::encoded`, H], after any `element_scale`), the input gradient of attribution
    /// methods.
    void backward(const cache_type& cache, const tensor<T, space>& grad_logits, gradients_type& grad,
                  tensor<T, space>* d_elements = nullptr) const
        requires training_backend_for<Backend, T>
    {
        const auto& backend = bert_.backend();
        const auto& p = cache.batch;
        const std::size_t h = hidden(), samples = p.batch.layout.batch;
        require_shape(grad_logits, {samples, config_.num_outputs}, "model::backward: grad_logits");

        tensor<T, space> d_pooled({samples, pooled_size()}, uninitialized);  // the head's backward writes it
        pooling_.head.backward(backend, cache.head_input.data(), grad_logits.data(), samples, d_pooled.data(), grad.pooling.head);
        nn::apply_dropout(backend, d_pooled.data(), d_pooled.size(), cache.head_dropout);

        const packed_batch& encoded = p.encoded();
        tensor<T, space> d_hidden = zeros<T>(backend, {encoded.layout.rows(), h});
        switch (config_.pooling) {
        case pooling_kind::cls: {
            tensor<T, space> d_cls({samples, h}, uninitialized);
            bert_.pooler().backward(backend, cache.cls_rows.data(), cache.pooled.data(), std::as_const(d_pooled).data(), samples,
                                    d_cls.data(), grad.encoder.pooler);
            backend.copy_rows(std::as_const(d_cls).data(), no_rows(), d_hidden.data(), p[p.cls_slots], samples, h);
            break;
        }
        case pooling_kind::mid_fusion:
            backend.copy_rows(std::as_const(d_pooled).data(), p[p.fused_rows], d_hidden.data(), p[p.cls_slots],
                              p.split.origin.size(), h);
            break;
        case pooling_kind::dm2s: {
            tensor<T, space> d_outputs({p.elements, h}, uninitialized), d_element_rows({p.elements, h}, uninitialized);
            nn::max_pool_backward<T>(backend, std::as_const(d_pooled).data(), h, p.elements, cache.max_rows, d_outputs.data());
            pooling_.element_mlp[0].backward(backend, cache.element_mlp, p.elements, std::as_const(d_outputs).data(),
                                             d_element_rows.data(), grad.pooling.element_mlp[0]);
            scatter_elements(p, d_element_rows, d_hidden);
            break;
        }
        default: pool_elements_backward(cache, d_pooled, d_hidden, grad);
        }
        if (p.compaction.empty()) {
            bert_.encode_backward(cache.encoder, d_hidden, grad.encoder);
        } else {
            tensor<T, space> d_rows({p.compaction.slots.size(), h}, uninitialized);
            backend.copy_rows(std::as_const(d_hidden).data(), p[p.compact_slots], d_rows.data(), no_rows(), d_rows.dim(0), h);
            bert_.encode_backward(cache.encoder, d_rows, grad.encoder);
            scatter_compact_rows(p, d_rows, d_hidden);
        }
        if (d_elements != nullptr) *d_elements = d_hidden;
        nn::embed_elements_backward(backend, p.sources, *p.arena, std::as_const(d_hidden).data(), bert_.embeddings(),
                                    pooling_.modality_embeddings, grad.encoder.embeddings, grad.pooling.modality_embeddings);
    }

    /// `backward` from host d(logits), uploaded first (for a backend with memory of its own).
    void backward(const cache_type& cache, const tensor<T>& grad_logits, gradients_type& grad) const
        requires(!on_host && training_backend_for<Backend, T>)
    {
        backward(cache, backend().upload(grad_logits), grad);
    }

    /// Zero gradients shaped like this model's parameters.
    gradients_type zero_gradients() const
    {
        gradients_type zeros{bert_.zero_gradients(), pooling_};
        zeros.pooling.for_each_parameter(
            "", [&](const std::string&, tensor<T, space>& t) { backend().fill(t.data(), t.size(), T(0)); });
        return zeros;
    }

    /// Sets gradients from `zero_gradients` back to zero, with the backend's `fill`.
    void clear_gradients(gradients_type& grads) const
    {
        grads.for_each_parameter([&](const std::string&, tensor<T, space>& t) { backend().fill(t.data(), t.size(), T(0)); });
    }

    /// Packs the encoder's weights for inference, rounded to bf16 for bf16 products where `allowed`
    /// says so (`bert_model::pack_weights`); returns how many.
    std::size_t pack_weights(weight_rounding allowed = weight_rounding::none) { return bert_.pack_weights(allowed); }

    /// Puts every packed weight back into plain form.
    void unpack_weights() { bert_.unpack_weights(); }

    /// Visits every parameter: BERT's under HuggingFace names, then those of `pooling_parameters`.
    template <class F>
        requires parameter_visitor<F, T, space>
    void for_each_parameter(F&& visit)
    {
        bert_.for_each_parameter(visit);
        pooling_.for_each_parameter("", visit);
    }

    /// Visits every parameter read-only (for saving). The visit is the mutable one: it changes nothing,
    /// since the visitor only ever sees const tensors and packed weights lend it plain copies.
    template <class F>
    void for_each_parameter(F&& visit) const
    {
        const_cast<model*>(this)->for_each_parameter(read_only_visitor<F>{visit});
    }

private:
    /// The forward pass on the backend: leaves in `c` the pooled vectors and attention weights, and with
    /// `keep` everything `backward` needs; returns the logits.
    tensor<T, space> run(const batch_type& p, cache_type& c, bool keep, random_generator* dropout_rng,
                         std::span<const T> element_scale) const
    {
        const auto& backend = bert_.backend();
        const packed_batch& encoded = p.encoded();
        const std::size_t h = hidden(), samples = p.batch.layout.batch;
        if (keep) c.batch = p;

        tensor<T, space> hidden_rows({encoded.layout.rows(), h}, uninitialized);  // every slot gets its element vector
        nn::embed_elements(backend, p.sources, *p.arena, bert_.embeddings(), pooling_.modality_embeddings, hidden_rows.data());
        if (!element_scale.empty()) scale_elements(hidden_rows, element_scale);
        bert_cache<T, space>* encoder_cache = keep ? &c.encoder : nullptr;
        const row_ids<space> ids{p.arena, p[p.positions], p[p.types], p.positions.size};
        if (config_.pooling == pooling_kind::dm2s) {
            bert_.embed(hidden_rows, ids, encoded.layout, encoder_cache, dropout_rng);
        } else if (!p.compaction.empty()) {  // the real rows only, written back to their slots
            tensor<T, space> rows({p.compaction.slots.size(), h}, uninitialized);
            backend.copy_rows(std::as_const(hidden_rows).data(), p[p.compact_slots], rows.data(), no_rows(), rows.dim(0), h);
            bert_.encode(rows, ids, p.compaction.layout, {}, nullptr, encoder_cache, dropout_rng);
            scatter_compact_rows(p, rows, hidden_rows);
        } else {
            bert_.encode(hidden_rows, ids, encoded.layout, p[p.key_mask], nullptr, encoder_cache, dropout_rng);
        }

        c.pooled.resize({samples, pooled_size()}, uninitialized);  // each pooling writes every row
        switch (config_.pooling) {
        case pooling_kind::cls:
            c.cls_rows.resize({samples, h}, uninitialized);
            backend.copy_rows(std::as_const(hidden_rows).data(), p[p.cls_slots], c.cls_rows.data(), no_rows(), samples, h);
            bert_.pooler().forward(backend, std::as_const(c.cls_rows).data(), samples, c.pooled.data());
            break;
        case pooling_kind::mid_fusion:
            backend.fill(c.pooled.data(), c.pooled.size(), T(0));  // missing modalities stay zero
            backend.copy_rows(std::as_const(hidden_rows).data(), p[p.cls_slots], c.pooled.data(), p[p.fused_rows],
                              p.split.origin.size(), h);
            break;
        case pooling_kind::dm2s:
            gather_elements(p, hidden_rows, c);
            c.element_outputs.resize({p.elements, h}, uninitialized);
            pooling_.element_mlp[0].forward(backend, std::as_const(c.element_rows).data(), p.elements, c.element_outputs.data(),
                                            keep ? &c.element_mlp : nullptr);
            nn::max_pool<T>(backend, std::as_const(c.element_outputs).data(), h, p[p.sample_groups_at], samples, c.pooled.data(),
                            c.max_rows);
            break;
        default: pool_elements(p, hidden_rows, c, keep);
        }

        c.head_input = c.pooled;
        c.head_dropout = nn::draw_dropout(config_.head_dropout, dropout_rng, p.offset.samples * pooled_size());
        nn::apply_dropout(backend, c.head_input.data(), c.head_input.size(), c.head_dropout);
        tensor<T, space> logits;
        pooling_.head.forward(backend, c.head_input, logits);
        return logits;
    }

    /// The attention weights of the last forward pass (`c`) on the host, placed at the slots of `p`'s
    /// batch. Learned weights come back in one download; the mean pooling's follow from the layout
    /// (α uniform within a modality, β = n_m / n).
    attention_explanation<T> explanation(const batch_type& p, const cache_type& c) const
    {
        const std::size_t modalities = schema_.size(), groups = p.element_groups.size();
        std::vector<T> alpha(p.elements), beta(groups);
        if (config_.pooling == pooling_kind::mean) {
            for (std::size_t g = 0; g < groups; ++g) {
                const auto& s = p.sample_groups[p.present[g].sample];
                const T n_m = static_cast<T>(p.element_groups[g].length);
                beta[g] = n_m / static_cast<T>(s.length);
                std::fill_n(alpha.begin() + static_cast<std::ptrdiff_t>(p.element_groups[g].begin), p.element_groups[g].length,
                            T(1) / n_m);
            }
        } else {
            const tensor<T> weights = backend().download(c.weights);
            std::copy_n(weights.data(), p.elements, alpha.begin());
            std::copy_n(weights.data() + p.elements, groups, beta.begin());
        }
        attention_explanation<T> e;
        const auto& batch = p.batch;
        e.modality_count = modalities;
        e.layout = batch.layout;
        e.spans = batch.spans;
        e.alpha.assign(batch.layout.rows(), T(0));
        e.gamma.assign(batch.layout.rows(), T(0));
        e.beta.assign(batch.layout.batch * modalities, T(0));
        for (std::size_t g = 0; g < groups; ++g) {
            const auto [b, m, first_slot] = p.present[g];
            e.beta[b * modalities + m] = beta[g];
            for (std::size_t i = 0; i < p.element_groups[g].length; ++i) {
                const T a = alpha[p.element_groups[g].begin + i];
                e.alpha[first_slot + i] = a;
                e.gamma[first_slot + i] = beta[g] * a;
            }
        }
        return e;
    }

    /// Multiplies each element vector of `rows` by its factor of `scale` (host values, moved to the
    /// backend first where its memory is its own).
    void scale_elements(tensor<T, space>& rows, std::span<const T> scale) const
    {
        if (scale.size() != rows.dim(0))
            throw shape_error("model::forward: element_scale has " + std::to_string(scale.size()) + " factors for " +
                              std::to_string(rows.dim(0)) + " slots");
        if constexpr (on_host) {
            backend().scale_rows(rows.data(), scale.data(), scale.size(), hidden());
        } else {
            tensor<T, space> factors({scale.size()}, uninitialized);
            backend().upload(scale.data(), scale.size(), factors.data());
            backend().scale_rows(rows.data(), std::as_const(factors).data(), scale.size(), hidden());
        }
    }

    /// Writes the compact rows back to their slots of `padded`; padding rows become zero.
    void scatter_compact_rows(const batch_type& p, const tensor<T, space>& compact, tensor<T, space>& padded) const
    {
        backend().fill(padded.data(), padded.size(), T(0));
        backend().copy_rows(compact.data(), no_rows(), padded.data(), p[p.compact_slots], p.compaction.slots.size(), hidden());
    }

    /// A null row index: row i.
    static space_pointer<const std::size_t, space> no_rows() noexcept { return {}; }

    /// The slot of each sequence's first row ([CLS]) in `batch`.
    static std::vector<std::size_t> cls_slots(const packed_batch& batch)
    {
        std::vector<std::size_t> slots(batch.layout.batch);
        for (std::size_t b = 0; b < slots.size(); ++b) slots[b] = batch.slot(b, 0);
        return slots;
    }

    /// mid_fusion: the row of the pooled matrix seen as [samples · modalities, H] that each encoded
    /// modality's [CLS] output fills.
    std::vector<std::size_t> fused_rows(const modality_split& split) const
    {
        std::vector<std::size_t> rows(split.origin.size());
        for (std::size_t r = 0; r < rows.size(); ++r) rows[r] = split.origin[r].first * schema_.size() + split.origin[r].second;
        return rows;
    }

    /// The element groups of `p`'s batch: each present (sample, modality), grouped by modality
    /// (`element_groups`), by sample (`modality_groups`) and all of a sample's elements
    /// (`sample_groups`), with the slot of every element row, laid out in `arena`.
    static void group_elements(batch_type& p, host_arena& arena)
    {
        const auto& batch = p.batch;
        std::vector<std::size_t> slots;
        for (std::size_t b = 0; b < batch.layout.batch; ++b) {
            const std::size_t first_group = p.element_groups.size(), first_element = p.elements;
            for (std::size_t m = 0; m < batch.modality_count; ++m)
                if (const auto& s = batch.span(b, m); s.length > 0) {
                    p.present.push_back({b, m, batch.slot(b, s.begin)});
                    p.element_groups.push_back({p.elements, s.length});
                    for (std::size_t i = 0; i < s.length; ++i) slots.push_back(batch.slot(b, s.begin) + i);
                    p.elements += s.length;
                }
            if (p.element_groups.size() == first_group)
                throw input_error("model: sample " + std::to_string(b) + " has no present modality");
            p.modality_groups.push_back({first_group, p.element_groups.size() - first_group});
            p.sample_groups.push_back({first_element, p.elements - first_element});
        }
        p.element_slots = arena.add(slots);
        p.element_groups_at = arena.add(p.element_groups);
        p.modality_groups_at = arena.add(p.modality_groups);
        p.sample_groups_at = arena.add(p.sample_groups);
    }

    /// Gathers the element rows of each present (sample, modality) of `hidden_rows` into
    /// `c.element_rows`, group after group.
    void gather_elements(const batch_type& p, const tensor<T, space>& hidden_rows, cache_type& c) const
    {
        c.element_rows.resize({p.elements, hidden()}, uninitialized);
        backend().copy_rows(hidden_rows.data(), p[p.element_slots], c.element_rows.data(), no_rows(), p.elements, hidden());
    }

    /// Backward of `gather_elements`: writes the element-row gradients into `d_hidden` at their slots.
    void scatter_elements(const batch_type& p, const tensor<T, space>& d_element_rows, tensor<T, space>& d_hidden) const
    {
        backend().copy_rows(d_element_rows.data(), no_rows(), d_hidden.data(), p[p.element_slots], p.elements, hidden());
    }

    /// The element pooling of the attention kinds: IntraMRA (or uniform α) per modality and InterMRA
    /// (or uniform β) per sample; the mean pooling averages all elements of a sample (its weights,
    /// uniform per sample, stay in the α part). Leaves the weights and the pooled vectors in `c`.
    void pool_elements(const batch_type& p, const tensor<T, space>& hidden_rows, cache_type& c, bool keep) const
    {
        const auto& backend = bert_.backend();
        const std::size_t h = hidden(), elements = p.elements, groups = p.element_groups.size(), samples = p.batch.layout.batch;
        gather_elements(p, hidden_rows, c);
        c.weights.resize({elements + groups}, uninitialized);
        backend.fill(c.weights.data(), c.weights.size(), T(0));  // zero scores: uniform weights where no attention is learned
        const pointer alpha = c.weights.data(), beta = alpha + elements;
        const const_pointer rows = std::as_const(c.element_rows).data();

        if (config_.pooling == pooling_kind::mean) {
            nn::attention_pool<T>(backend, rows, h, p[p.sample_groups_at], samples, alpha, const_pointer{}, c.pooled.data());
            return;
        }
        if (has_intra(config_.pooling)) {
            if (pooling_.shared_intra) {
                c.intra_activations.resize(1);
                pooling_.intra[0].score(backend, rows, elements, alpha, keep ? &c.intra_activations[0] : nullptr);
            } else {
                c.intra_activations.resize(groups);
                for (std::size_t g = 0; g < groups; ++g) {
                    const auto [begin, length] = p.element_groups[g];
                    pooling_.intra[p.present[g].modality].score(backend, rows + begin * h, length, alpha + begin,
                                                                keep ? &c.intra_activations[g] : nullptr);
                }
            }
        }
        c.modality_rows.resize({groups, h}, uninitialized);
        nn::attention_pool<T>(backend, rows, h, p[p.element_groups_at], groups, alpha, residual_at(0), c.modality_rows.data());
        if (has_inter(config_.pooling))
            pooling_.inter[0].score(backend, std::as_const(c.modality_rows).data(), groups, beta,
                                    keep ? &c.inter_activation : nullptr);
        nn::attention_pool<T>(backend, std::as_const(c.modality_rows).data(), h, p[p.modality_groups_at], samples, beta,
                              residual_at(1), c.pooled.data());
    }

    /// Backward of `pool_elements`: from d(pooled), writes d(hidden) at the element slots.
    void pool_elements_backward(const cache_type& cache, const tensor<T, space>& d_pooled, tensor<T, space>& d_hidden,
                                gradients_type& grad) const
    {
        const auto& backend = bert_.backend();
        const auto& p = cache.batch;
        const std::size_t h = hidden(), elements = p.elements, groups = p.element_groups.size(), samples = p.batch.layout.batch;
        tensor<T, space> d_element_rows = zeros<T>(backend, {elements, h});  // the pooling's backward adds to it
        tensor<T, space> d_weights({elements + groups}, uninitialized);      // and writes these
        const const_pointer alpha = cache.weights.data(), beta = alpha + elements, rows = cache.element_rows.data();
        const pointer d_alpha = d_weights.data(), d_beta = d_alpha + elements;
        if (config_.pooling == pooling_kind::mean) {
            nn::attention_pool_backward<T>(backend, rows, h, p[p.sample_groups_at], samples, alpha, const_pointer{},
                                           d_pooled.data(), d_element_rows.data(), d_alpha);
        } else {
            tensor<T, space> d_modality_rows = zeros<T>(backend, {groups, h});
            const pointer d_residual = grad.pooling.residual.size() > 0 ? grad.pooling.residual.data() : pointer{};
            nn::attention_pool_backward<T>(backend, cache.modality_rows.data(), h, p[p.modality_groups_at], samples, beta,
                                           residual_at(1), d_pooled.data(), d_modality_rows.data(), d_beta,
                                           d_residual ? d_residual + std::size_t{1} : pointer{});
            if (has_inter(config_.pooling))
                pooling_.inter[0].score_backward(backend, cache.modality_rows.data(), groups, cache.inter_activation, d_beta,
                                                 d_modality_rows.data(), grad.pooling.inter[0]);
            nn::attention_pool_backward<T>(backend, rows, h, p[p.element_groups_at], groups, alpha, residual_at(0),
                                           std::as_const(d_modality_rows).data(), d_element_rows.data(), d_alpha, d_residual);
            if (has_intra(config_.pooling) && pooling_.shared_intra) {
                pooling_.intra[0].score_backward(backend, rows, elements, cache.intra_activations[0], d_alpha,
                                                 d_element_rows.data(), grad.pooling.intra[0]);
            } else if (has_intra(config_.pooling)) {
                for (std::size_t g = 0; g < groups; ++g) {
                    const auto [begin, length] = p.element_groups[g];
                    const std::size_t m = p.present[g].modality;
                    pooling_.intra[m].score_backward(backend, rows + begin * h, length, cache.intra_activations[g],
                                                     d_alpha + begin, d_element_rows.row(begin), grad.pooling.intra[m]);
                }
            }
        }
        scatter_elements(p, d_element_rows, d_hidden);
    }

    static model_config with_type_rows(model_config c, const dm2s2::schema& s)
    {
        if (s.size() == 0) throw config_error("model: the schema has no modality");
        c.bert.type_vocab_size = s.size();
        return c;
    }

    /// The configured residuals of IntraMRA and InterMRA in the backend's memory, for when they are not
    /// learned (a learned one is a parameter, read where it lives).
    void set_fixed_residuals()
    {
        tensor<T> r({2});
        for (std::size_t level = 0; level < 2; ++level) r[level] = static_cast<T>(config_.mra.residual_at(level));
        fixed_residuals_ = backend().upload(r);
    }

    /// r of IntraMRA (level 0) or InterMRA (level 1), learned or as configured, in the backend's memory.
    const_pointer residual_at(std::size_t level) const
    {
        return (pooling_.residual.size() > 0 ? pooling_.residual.data() : fixed_residuals_.data()) + level;
    }

    std::size_t hidden() const { return config_.bert.hidden_size; }
    /// Width of the vector the head reads: H, or M·H for the concatenation of mid_fusion.
    std::size_t pooled_size() const { return config_.pooling == pooling_kind::mid_fusion ? schema_.size() * hidden() : hidden(); }
    std::size_t attention_dim() const { return config_.mra.attention_dim ? config_.mra.attention_dim : hidden(); }

    dm2s2::schema schema_;
    model_config config_;
    bert_model<T, Backend> bert_;
    pooling_parameters<T, space> pooling_;
    tensor<T, space> fixed_residuals_;
    bool padding_free_ = true;
};

}  // namespace dm2s2
