#pragma once
/// \file
/// `model<T, Backend>`: DM²S². Every present modality of a record goes through one BERT encoder as
/// one packed sequence; IntraMRA pools the elements of each modality, InterMRA the modalities, and a
/// linear head gives the logits. The attention weights are the explanation (docs/design.md §5).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <ranges>
#include <span>
#include <string>
#include <utility>
#include <vector>

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
    tensor<T> logits;               ///< [batch, num_outputs]
    attention_explanation<T> explanation;  ///< filled when requested
};

/// The parameters DM²S² adds to its BERT encoder: the modality embeddings, IntraMRA (one shared or
/// one per modality), InterMRA, the element MLP of the `dm2s` baseline and the head. Also the shape of
/// their gradients.
template <scalar T>
struct pooling_parameters {
    std::vector<std::string> modality_names;
    std::vector<nn::modality_embedding<T>> modality_embeddings;
    bool shared_intra = true;
    std::vector<nn::modality_attention<T>> intra;  ///< none, one (shared) or one per modality
    std::vector<nn::modality_attention<T>> inter;  ///< none or one
    std::vector<nn::element_mlp<T>> element_mlp;   ///< dm2s pooling: one, otherwise none
    nn::linear<T> head;
    tensor<T> residual;  ///< learned residuals: r of IntraMRA and of InterMRA ([2]); empty when fixed

    /// Names: `modality_embeddings.<name>.…`, `intra_mra.…` (or `intra_mra.<name>.…`), `inter_mra.…`,
    /// `mra_residual` (learned residuals), `element_mlp.{0,1}.…`, `head.{weight,bias}`.
    template <class F>
        requires parameter_visitor<F, T>
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

/// Gradients of every parameter of a `model`, visited under the model's parameter names.
template <scalar T>
struct model_gradients {
    bert_gradients<T> encoder;
    pooling_parameters<T> pooling;

    template <class F>
        requires parameter_visitor<F, T>
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

/// What `model::backward` needs from the forward pass.
template <scalar T>
struct model_cache {
    packed_batch batch;
    modality_split split;  ///< mid_fusion: the batch the encoder ran on
    bert_cache<T> encoder;
    row_compaction compaction;  ///< padding-free execution: the real rows the encoder ran on
    std::vector<present_modality> present;
    std::vector<nn::row_group> element_groups, modality_groups;
    std::vector<std::size_t> element_slots;  ///< the slot of each gathered element row
    tensor<T> element_rows, modality_rows, pooled;
    tensor<T> cls_rows;                         ///< cls pooling: the [CLS] rows the pooler read
    tensor<T> head_input;        ///< pooled after dropout
    dropout_draw head_dropout;  ///< the dropout applied before the head
    std::vector<T> alpha, beta;                 ///< softmax weights of IntraMRA and InterMRA
    std::vector<tensor<T>> intra_activations;   ///< one per IntraMRA call
    tensor<T> inter_activation;
    nn::element_mlp_cache<T> element_mlp;  ///< dm2s pooling
    tensor<T> element_outputs;             ///< dm2s pooling: the MLP's output rows
    std::vector<std::uint32_t> max_rows;   ///< dm2s pooling: the row of each maximum
};

/// The DM²S² model, generic over the scalar type and the backend policy.
template <scalar T, host_backend_for<T> Backend = default_backend>
class model {
public:
    using scalar_type = T;
    using backend_type = Backend;

    /// A randomly initialised model (BERT initialisation, seeded). `config.bert.type_vocab_size` is
    /// set to the number of modalities, since the packed sequence uses type m for modality m.
    model(dm2s2::schema s, model_config config, std::uint64_t seed, Backend backend = {})
        : schema_(std::move(s)), config_(with_type_rows(std::move(config), schema_)), bert_(config_.bert, backend)
    {
        if (config_.num_outputs == 0) throw config_error("model_config: num_outputs must be positive");
        for (const std::size_t level : {0, 1})
            if (!(config_.mra.residual_at(level) >= 0))
                throw config_error(std::string("model_config: the ") + (level ? "InterMRA" : "IntraMRA") + " residual must be non-negative");
        if (!(config_.head_dropout >= 0 && config_.head_dropout < 1))
            throw config_error("model_config: head_dropout must lie in [0, 1)");
        for (const auto id : {config_.cls_id, config_.sep_id, config_.pad_id})
            if (id < 0 || static_cast<std::uint64_t>(id) >= config_.bert.vocab_size)
                throw config_error("model_config: special token id " + std::to_string(id) + " is outside the vocabulary of " +
                                   std::to_string(config_.bert.vocab_size));
        for (const auto& spec : schema_.modalities()) {
            pooling_.modality_names.push_back(spec.name);
            pooling_.modality_embeddings.emplace_back(spec, hidden());
        }
        const nn::modality_attention<T> attention(hidden(), attention_dim());
        pooling_.shared_intra = config_.mra.shared_intra;
        if (has_intra(config_.pooling)) pooling_.intra.assign(config_.mra.shared_intra ? 1 : schema_.size(), attention);
        if (has_inter(config_.pooling)) pooling_.inter.assign(1, attention);
        if (config_.pooling == pooling_kind::dm2s) pooling_.element_mlp.assign(1, nn::element_mlp<T>(hidden()));
        pooling_.head = nn::linear<T>(pooled_size(), config_.num_outputs);
        if (config_.mra.learned_residual && (has_intra(config_.pooling) || has_inter(config_.pooling))) {
            pooling_.residual = tensor<T>({2});
            for (std::size_t level = 0; level < 2; ++level) pooling_.residual[level] = static_cast<T>(config_.mra.residual_at(level));
        }

        random_generator rng(seed);
        bert_.initialize(rng);
        const double stddev = config_.bert.initializer_range;
        for (auto& e : pooling_.modality_embeddings) e.initialize(rng, stddev);
        for (auto& a : pooling_.intra) a.initialize(rng, stddev);
        for (auto& a : pooling_.inter) a.initialize(rng, stddev);
        for (auto& mlp : pooling_.element_mlp) mlp.initialize(rng, stddev);
        pooling_.head.initialize(rng, stddev);
    }

    const dm2s2::schema& schema() const noexcept { return schema_; }
    const model_config& config() const noexcept { return config_; }
    const bert_model<T, Backend>& encoder() const noexcept { return bert_; }
    bert_model<T, Backend>& encoder() noexcept { return bert_; }
    const pooling_parameters<T>& pooling() const noexcept { return pooling_; }

    /// Whether the encoder runs on the real rows only (the default) or on the padded batch. Both give
    /// the same outputs and gradients; without padding nothing is computed for padding slots. (With
    /// dropout the two draw their masks over different row counts, so training runs differ.)
    bool padding_free() const noexcept { return padding_free_; }
    void set_padding_free(bool on) noexcept { padding_free_ = on; }

    /// Settings the packer needs to lay out a batch for this model.
    packing_options packing() const
    {
        return {config_.positions, config_.bert.vocab_size, config_.bert.max_position_embeddings,
                config_.cls_id, config_.sep_id, config_.pad_id};
    }

    /// Packs records for this model (see `dm2s2::pack`).
    template <std::ranges::forward_range Range>
        requires sequence_set_like<std::ranges::range_value_t<Range>>
    packed_batch pack(Range&& samples) const
    {
        return dm2s2::pack(schema_, samples, packing());
    }

    /// Logits for a batch of records and, when `explain`, the α, β and γ weights (poolings that
    /// `explains`; the others throw config_error when asked).
    template <std::ranges::forward_range Range>
        requires sequence_set_like<std::ranges::range_value_t<Range>>
    model_output<T> forward(Range&& samples, bool explain = false) const
    {
        return forward(pack(samples), explain);
    }

    /// Logits for a packed batch and, when `explain`, the α, β and γ weights. With `cache`, keeps what
    /// `backward` needs; with `dropout_rng` (training), applies dropout (embeddings, hidden, attention
    /// probabilities, head) with the probabilities of the configuration. `element_scale`, when not
    /// empty, holds one factor per slot of the batch the encoder runs on (`encoder_batch`): each
    /// element vector is multiplied by it before positions and types are added (the path of
    /// integrated gradients).
    model_output<T> forward(const packed_batch& batch, bool explain = false, model_cache<T>* cache = nullptr,
                            random_generator* dropout_rng = nullptr, std::span<const T> element_scale = {}) const
    {
        if (batch.modality_count != schema_.size())
            throw shape_error("model: packed batch has " + std::to_string(batch.modality_count) +
                              " modalities, the schema " + std::to_string(schema_.size()));
        if (explain && !explains(config_.pooling))
            throw config_error("model: " + std::string(to_string(config_.pooling)) +
                               " pooling has no attention weights to explain with");
        const std::size_t h = hidden(), modalities = schema_.size(), samples = batch.layout.batch;
        const auto& backend = bert_.backend();
        model_cache<T> local;
        auto& c = cache ? *cache : local;
        if (cache != nullptr) c.batch = batch;

        if (config_.pooling == pooling_kind::mid_fusion) c.split = split_by_modality(batch);
        const packed_batch& encoded = encoder_batch(batch, c);
        tensor<T> hidden_rows({encoded.layout.rows(), h});
        nn::embed_elements(backend, encoded, bert_.embeddings(), pooling_.modality_embeddings, hidden_rows.data());
        if (!element_scale.empty()) {
            if (element_scale.size() != encoded.layout.rows())
                throw shape_error("model::forward: element_scale has " + std::to_string(element_scale.size()) +
                                  " factors for " + std::to_string(encoded.layout.rows()) + " slots");
            backend.scale_rows(hidden_rows.data(), element_scale.data(), element_scale.size(), h);
        }
        bert_cache<T>* encoder_cache = cache ? &c.encoder : nullptr;
        c.compaction = {};
        if (config_.pooling == pooling_kind::dm2s)
            bert_.embed(hidden_rows, encoded.position_ids, encoded.type_ids, encoded.layout, encoder_cache, dropout_rng);
        else if (padding_free_)
            encode_without_padding(encoded, hidden_rows, c, encoder_cache, dropout_rng);
        else
            bert_.encode(hidden_rows, encoded.position_ids, encoded.type_ids, encoded.layout, encoded.mask.data(), nullptr,
                         encoder_cache, dropout_rng);

        c.pooled.resize({samples, pooled_size()});
        switch (config_.pooling) {
        case pooling_kind::cls:
            c.cls_rows.resize({samples, h}, uninitialized);
            backend.copy_rows(std::as_const(hidden_rows).data(), cls_slots(batch).data(), c.cls_rows.data(), no_rows, samples, h);
            bert_.pooler().forward(backend, c.cls_rows.data(), {samples, 1}, c.pooled.data());
            break;
        case pooling_kind::mid_fusion:
            backend.fill(c.pooled.data(), c.pooled.size(), T(0));  // missing modalities stay zero
            backend.copy_rows(std::as_const(hidden_rows).data(), cls_slots(c.split.batch).data(), c.pooled.data(),
                              fused_rows(c.split).data(), c.split.origin.size(), h);
            break;
        case pooling_kind::dm2s: {
            gather_elements(batch, hidden_rows, c);
            const std::size_t elements = c.element_rows.dim(0);
            c.element_outputs.resize({elements, h});
            pooling_.element_mlp[0].forward(backend, c.element_rows.data(), elements, c.element_outputs.data(),
                                            cache ? &c.element_mlp : nullptr);
            const auto sample_groups = element_groups_per_sample(c);
            nn::max_pool(backend, c.element_outputs.data(), h, std::span<const nn::row_group>(sample_groups), c.pooled.data(), c.max_rows);
            break;
        }
        default: pool_elements(batch, hidden_rows, c, cache != nullptr);
        }

        model_output<T> out;
        c.head_input = c.pooled;
        c.head_dropout = nn::draw_dropout(config_.head_dropout, dropout_rng);
        nn::apply_dropout(backend, c.head_input.data(), c.head_input.size(), c.head_dropout);
        pooling_.head.forward(backend, c.head_input, out.logits);

        if (explain) {
            auto& e = out.explanation;
            e.modality_count = modalities;
            e.layout = batch.layout;
            e.spans = batch.spans;
            e.alpha.assign(batch.layout.rows(), T(0));
            e.gamma.assign(batch.layout.rows(), T(0));
            e.beta.assign(samples * modalities, T(0));
            for (std::size_t g = 0; g < c.present.size(); ++g) {
                const auto [b, m, first_slot] = c.present[g];
                e.beta[b * modalities + m] = c.beta[g];
                for (std::size_t i = 0; i < c.element_groups[g].length; ++i) {
                    const T a = c.alpha[c.element_groups[g].begin + i];
                    e.alpha[first_slot + i] = a;
                    e.gamma[first_slot + i] = c.beta[g] * a;
                }
            }
        }
        return out;
    }

    /// Backward of `forward` run with `cache`: from d(logits) [batch, outputs], accumulates the
    /// gradient of every parameter into `grad` (see `zero_gradients`). `d_elements`, when given,
    /// receives the gradient of the element vectors that entered the encoder ([slots of
    /// `encoder_batch`, H], after any `element_scale`), the input gradient of attribution methods.
    void backward(const model_cache<T>& cache, const tensor<T>& grad_logits, model_gradients<T>& grad,
                  tensor<T>* d_elements = nullptr) const
        requires host_training_backend_for<Backend, T>
    {
        const auto& backend = bert_.backend();
        const auto& batch = cache.batch;
        const std::size_t h = hidden(), samples = batch.layout.batch;
        require_shape(grad_logits, {samples, config_.num_outputs}, "model::backward: grad_logits");

        tensor<T> d_pooled({samples, pooled_size()});
        pooling_.head.backward(backend, cache.head_input.data(), grad_logits.data(), samples, d_pooled.data(), grad.pooling.head);
        nn::apply_dropout(backend, d_pooled.data(), d_pooled.size(), cache.head_dropout);

        const packed_batch& encoded = encoder_batch(batch, cache);
        tensor<T> d_hidden({encoded.layout.rows(), h});
        switch (config_.pooling) {
        case pooling_kind::cls: {
            tensor<T> d_cls({samples, h});
            bert_.pooler().backward(backend, cache.cls_rows.data(), cache.pooled.data(), d_pooled.data(), samples, d_cls.data(),
                                    grad.encoder.pooler);
            backend.copy_rows(std::as_const(d_cls).data(), no_rows, d_hidden.data(), cls_slots(batch).data(), samples, h);
            break;
        }
        case pooling_kind::mid_fusion:
            backend.copy_rows(std::as_const(d_pooled).data(), fused_rows(cache.split).data(), d_hidden.data(),
                              cls_slots(encoded).data(), cache.split.origin.size(), h);
            break;
        case pooling_kind::dm2s: {
            const std::size_t elements = cache.element_rows.dim(0);
            tensor<T> d_outputs({elements, h}), d_element_rows({elements, h});
            nn::max_pool_backward(backend, d_pooled.data(), h, elements, std::span<const std::uint32_t>(cache.max_rows), d_outputs.data());
            pooling_.element_mlp[0].backward(backend, cache.element_mlp, elements, d_outputs.data(), d_element_rows.data(),
                                             grad.pooling.element_mlp[0]);
            scatter_elements(cache, d_element_rows, d_hidden);
            break;
        }
        default: pool_elements_backward(cache, d_pooled, d_hidden, grad);
        }
        if (cache.compaction.empty()) {
            bert_.encode_backward(cache.encoder, d_hidden, grad.encoder);
        } else {
            tensor<T> d_rows({cache.compaction.slots.size(), h});
            backend.copy_rows(std::as_const(d_hidden).data(), cache.compaction.slots.data(), d_rows.data(), no_rows, d_rows.dim(0), h);
            bert_.encode_backward(cache.encoder, d_rows, grad.encoder);
            scatter_compact_rows(cache.compaction, d_rows, d_hidden);
        }
        if (d_elements != nullptr) *d_elements = d_hidden;
        nn::embed_elements_backward(backend, encoded, d_hidden.data(), bert_.embeddings(), pooling_.modality_embeddings,
                                    grad.encoder.embeddings, grad.pooling.modality_embeddings);
    }

    /// Zero gradients shaped like this model's parameters.
    model_gradients<T> zero_gradients() const { return {bert_.zero_gradients(), zeros_like(pooling_)}; }

    /// Sets gradients from `zero_gradients` back to zero, with the backend's `fill`.
    void clear_gradients(model_gradients<T>& grads) const
    {
        grads.for_each_parameter([&](const std::string&, tensor<T>& t) { bert_.backend().fill(t.data(), t.size(), T(0)); });
    }

    /// Packs the encoder's weights for inference, rounded to bf16 for bf16 products where `allowed`
    /// says so (`bert_model::pack_weights`); returns how many.
    std::size_t pack_weights(weight_rounding allowed = weight_rounding::none) { return bert_.pack_weights(allowed); }

    /// Puts every packed weight back into plain form.
    void unpack_weights() { bert_.unpack_weights(); }

    /// Visits every parameter: BERT's under HuggingFace names, then those of `pooling_parameters`.
    template <class F>
        requires parameter_visitor<F, T>
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

    /// The batch the encoder runs on for `batch`: the batch itself, or (mid_fusion) its split by
    /// modality as the forward pass left it in `cache`.
    const packed_batch& encoder_batch(const packed_batch& batch, const model_cache<T>& cache) const
    {
        return config_.pooling == pooling_kind::mid_fusion ? cache.split.batch : batch;
    }

private:
    /// The encoder over the real rows of `encoded` only: they are gathered into a ragged layout, encoded,
    /// and written back to their slots (padding rows become zero; nothing downstream reads them).
    void encode_without_padding(const packed_batch& encoded, tensor<T>& hidden_rows, model_cache<T>& c,
                                bert_cache<T>* encoder_cache, random_generator* dropout_rng) const
    {
        const std::size_t h = hidden();
        c.compaction = row_compaction(encoded);
        tensor<T> rows({c.compaction.slots.size(), h}, uninitialized);
        bert_.backend().copy_rows(std::as_const(hidden_rows).data(), c.compaction.slots.data(), rows.data(), no_rows, rows.dim(0), h);
        bert_.encode(rows, c.compaction.gather(encoded.position_ids), c.compaction.gather(encoded.type_ids),
                     c.compaction.layout, nullptr, nullptr, encoder_cache, dropout_rng);
        scatter_compact_rows(c.compaction, rows, hidden_rows);
    }

    /// Writes the compact rows back to their slots of `padded`; padding rows become zero.
    void scatter_compact_rows(const row_compaction& compaction, const tensor<T>& compact, tensor<T>& padded) const
    {
        const auto& backend = bert_.backend();
        backend.fill(padded.data(), padded.size(), T(0));
        backend.copy_rows(compact.data(), no_rows, padded.data(), compaction.slots.data(), compaction.slots.size(), hidden());
    }

    /// A null row index: row i.
    static constexpr const std::size_t* no_rows = nullptr;

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

    /// Gathers the element rows of each present (sample, modality) of `hidden_rows` into
    /// `c.element_rows`, grouped by modality (`c.element_groups`) and by sample (`c.modality_groups`).
    void gather_elements(const packed_batch& batch, const tensor<T>& hidden_rows, model_cache<T>& c) const
    {
        const std::size_t h = hidden(), modalities = schema_.size(), samples = batch.layout.batch;
        c.present.clear();
        c.element_groups.clear();
        c.modality_groups.clear();
        std::size_t elements = 0;
        for (std::size_t b = 0; b < samples; ++b) {
            const std::size_t first_group = c.element_groups.size();
            for (std::size_t m = 0; m < modalities; ++m)
                if (const auto& s = batch.span(b, m); s.length > 0) {
                    c.present.push_back({b, m, batch.slot(b, s.begin)});
                    c.element_groups.push_back({elements, s.length});
                    elements += s.length;
                }
            if (c.element_groups.size() == first_group)
                throw input_error("model: sample " + std::to_string(b) + " has no present modality");
            c.modality_groups.push_back({first_group, c.element_groups.size() - first_group});
        }
        c.element_rows.resize({elements, h}, uninitialized);
        c.element_slots = element_slots(c);
        bert_.backend().copy_rows(hidden_rows.data(), c.element_slots.data(), c.element_rows.data(), no_rows, elements, h);
    }

    /// Backward of `gather_elements`: writes the element-row gradients into `d_hidden` at their slots.
    void scatter_elements(const model_cache<T>& cache, const tensor<T>& d_element_rows, tensor<T>& d_hidden) const
    {
        bert_.backend().copy_rows(d_element_rows.data(), no_rows, d_hidden.data(), cache.element_slots.data(),
                                  cache.element_slots.size(), hidden());
    }

    /// The element pooling of the attention kinds: IntraMRA (or uniform α) per modality and InterMRA
    /// (or uniform β) per sample; the mean pooling averages all elements of a sample. Leaves α, β and
    /// the pooled vectors in `c`.
    void pool_elements(const packed_batch& batch, const tensor<T>& hidden_rows, model_cache<T>& c, bool keep) const
    {
        const auto& backend = bert_.backend();
        const std::size_t h = hidden();
        gather_elements(batch, hidden_rows, c);
        const std::size_t elements = c.element_rows.dim(0), groups = c.element_groups.size();
        c.alpha.assign(elements, T(0));  // zero scores: uniform weights where no attention is learned
        c.beta.assign(groups, T(0));

        if (config_.pooling == pooling_kind::mean) {
            const auto sample_groups = element_groups_per_sample(c);
            nn::attention_pool(backend, c.element_rows.data(), h, std::span<const nn::row_group>(sample_groups),
                               c.alpha.data(), T(0), c.pooled.data());
            // The equivalent hierarchical weights: α uniform within a modality, β = n_m / n.
            for (std::size_t g = 0; g < groups; ++g) {
                const auto& s = sample_groups[c.present[g].sample];
                const T n_m = static_cast<T>(c.element_groups[g].length);
                c.beta[g] = n_m / static_cast<T>(s.length);
                for (std::size_t i = 0; i < c.element_groups[g].length; ++i) c.alpha[c.element_groups[g].begin + i] = T(1) / n_m;
            }
            return;
        }
        if (has_intra(config_.pooling)) {
            if (pooling_.shared_intra) {
                c.intra_activations.resize(1);
                pooling_.intra[0].score(backend, c.element_rows.data(), elements, c.alpha.data(),
                                        keep ? &c.intra_activations[0] : nullptr);
            } else {
                c.intra_activations.resize(groups);
                for (std::size_t g = 0; g < groups; ++g) {
                    const auto [begin, length] = c.element_groups[g];
                    pooling_.intra[c.present[g].modality].score(backend, c.element_rows.row(begin), length,
                                                                c.alpha.data() + begin, keep ? &c.intra_activations[g] : nullptr);
                }
            }
        }
        c.modality_rows.resize({groups, h});
        nn::attention_pool(backend, c.element_rows.data(), h, std::span<const nn::row_group>(c.element_groups),
                           c.alpha.data(), residual(0), c.modality_rows.data());
        if (has_inter(config_.pooling))
            pooling_.inter[0].score(backend, c.modality_rows.data(), groups, c.beta.data(), keep ? &c.inter_activation : nullptr);
        nn::attention_pool(backend, c.modality_rows.data(), h, std::span<const nn::row_group>(c.modality_groups),
                           c.beta.data(), residual(1), c.pooled.data());
    }

    /// Backward of `pool_elements`: from d(pooled), writes d(hidden) at the element slots.
    void pool_elements_backward(const model_cache<T>& cache, const tensor<T>& d_pooled, tensor<T>& d_hidden,
                                model_gradients<T>& grad) const
    {
        const auto& backend = bert_.backend();
        const std::size_t h = hidden(), groups = cache.element_groups.size();
        tensor<T> d_element_rows(cache.element_rows.shape());
        std::vector<T> d_alpha(cache.alpha.size());
        if (config_.pooling == pooling_kind::mean) {
            const auto sample_groups = element_groups_per_sample(cache);
            const std::vector<T> uniform_scores(cache.alpha.size(), T(0));
            std::vector<T> weights(uniform_scores);
            for (const auto& s : sample_groups)
                std::fill_n(weights.begin() + static_cast<std::ptrdiff_t>(s.begin), s.length, T(1) / static_cast<T>(s.length));
            nn::attention_pool_backward(backend, cache.element_rows.data(), h, std::span<const nn::row_group>(sample_groups),
                                        weights.data(), T(0), d_pooled.data(), d_element_rows.data(), d_alpha.data());
        } else {
            tensor<T> d_modality_rows({groups, h});
            std::vector<T> d_beta(groups);
            T* d_residual = grad.pooling.residual.size() > 0 ? grad.pooling.residual.data() : nullptr;
            nn::attention_pool_backward(backend, cache.modality_rows.data(), h, std::span<const nn::row_group>(cache.modality_groups),
                                        cache.beta.data(), residual(1), d_pooled.data(), d_modality_rows.data(), d_beta.data(),
                                        d_residual ? d_residual + 1 : nullptr);
            if (has_inter(config_.pooling))
                pooling_.inter[0].score_backward(backend, cache.modality_rows.data(), groups, cache.inter_activation,
                                                 d_beta.data(), d_modality_rows.data(), grad.pooling.inter[0]);
            nn::attention_pool_backward(backend, cache.element_rows.data(), h, std::span<const nn::row_group>(cache.element_groups),
                                        cache.alpha.data(), residual(0), d_modality_rows.data(), d_element_rows.data(), d_alpha.data(),
                                        d_residual);
            if (has_intra(config_.pooling) && pooling_.shared_intra) {
                pooling_.intra[0].score_backward(backend, cache.element_rows.data(), cache.alpha.size(), cache.intra_activations[0],
                                                 d_alpha.data(), d_element_rows.data(), grad.pooling.intra[0]);
            } else if (has_intra(config_.pooling)) {
                for (std::size_t g = 0; g < groups; ++g) {
                    const auto [begin, length] = cache.element_groups[g];
                    const std::size_t m = cache.present[g].modality;
                    pooling_.intra[m].score_backward(backend, cache.element_rows.row(begin), length, cache.intra_activations[g],
                                                     d_alpha.data() + begin, d_element_rows.row(begin), grad.pooling.intra[m]);
                }
            }
        }
        scatter_elements(cache, d_element_rows, d_hidden);
    }

    /// The slot of every gathered element row, group after group.
    static std::vector<std::size_t> element_slots(const model_cache<T>& c)
    {
        std::vector<std::size_t> slots;
        for (std::size_t g = 0; g < c.element_groups.size(); ++g)
            for (std::size_t i = 0; i < c.element_groups[g].length; ++i) slots.push_back(c.present[g].first_slot + i);
        return slots;
    }

    /// All element rows of each sample as one group (they are consecutive in the gathered rows).
    static std::vector<nn::row_group> element_groups_per_sample(const model_cache<T>& c)
    {
        std::vector<nn::row_group> out;
        for (const auto& [first, count] : c.modality_groups) {
            const auto& last = c.element_groups[first + count - 1];
            out.push_back({c.element_groups[first].begin, last.begin + last.length - c.element_groups[first].begin});
        }
        return out;
    }

    static model_config with_type_rows(model_config c, const dm2s2::schema& s)
    {
        if (s.size() == 0) throw config_error("model: the schema has no modality");
        c.bert.type_vocab_size = s.size();
        return c;
    }

    /// r of IntraMRA (level 0) or InterMRA (level 1): learned or as configured.
    T residual(std::size_t level) const
    {
        return pooling_.residual.size() > 0 ? pooling_.residual[level] : static_cast<T>(config_.mra.residual_at(level));
    }

    std::size_t hidden() const { return config_.bert.hidden_size; }
    /// Width of the vector the head reads: H, or M·H for the concatenation of mid_fusion.
    std::size_t pooled_size() const { return config_.pooling == pooling_kind::mid_fusion ? schema_.size() * hidden() : hidden(); }
    std::size_t attention_dim() const { return config_.mra.attention_dim ? config_.mra.attention_dim : hidden(); }

    dm2s2::schema schema_;
    model_config config_;
    bert_model<T, Backend> bert_;
    pooling_parameters<T> pooling_;
    bool padding_free_ = true;
};

}  // namespace dm2s2
