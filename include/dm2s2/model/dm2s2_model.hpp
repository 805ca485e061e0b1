#pragma once
/// \file
/// `model<T, Backend>`: DM²S². Every present modality of a record goes through one BERT encoder as
/// one packed sequence; IntraMRA pools the elements of each modality, InterMRA the modalities, and a
/// linear head gives the logits. The attention weights are the explanation (DESIGN §5).

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <ranges>
#include <span>
#include <string>
#include <vector>

#include "dm2s2/data/packing.hpp"
#include "dm2s2/data/schema.hpp"
#include "dm2s2/io/hf_bert.hpp"
#include "dm2s2/model/bert_model.hpp"
#include "dm2s2/model/model_config.hpp"
#include "dm2s2/nn/modality_attention.hpp"
#include "dm2s2/nn/modality_embeddings.hpp"

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

/// The DM²S² model, generic over the scalar type and the backend policy.
template <scalar T, backend_for<T> Backend = cpu_backend>
class model {
public:
    using scalar_type = T;
    using backend_type = Backend;

    /// A randomly initialised model (BERT initialisation, seeded). `config.bert.type_vocab_size` is
    /// set to the number of modalities, since the packed sequence uses type m for modality m.
    model(dm2s2::schema s, model_config config, std::uint64_t seed, Backend backend = {})
        : schema_(std::move(s)), config_(with_type_rows(std::move(config), schema_)), bert_(config_.bert, backend),
          intra_(config_.mra.shared_intra ? 1 : schema_.size(), nn::modality_attention<T>(hidden(), attention_dim())),
          inter_(hidden(), attention_dim()), head_(hidden(), config_.num_outputs)
    {
        if (config_.num_outputs == 0) throw config_error("model_config: num_outputs must be positive");
        if (!(config_.mra.residual >= 0)) throw config_error("model_config: mra.residual must be non-negative");
        for (const auto id : {config_.cls_id, config_.sep_id, config_.pad_id})
            if (id < 0 || static_cast<std::uint64_t>(id) >= config_.bert.vocab_size)
                throw config_error("model_config: special token id " + std::to_string(id) + " is outside the vocabulary of " +
                                   std::to_string(config_.bert.vocab_size));
        for (const auto& spec : schema_.modalities()) modality_embeddings_.emplace_back(spec, hidden());
        random_generator rng(seed);
        bert_.initialize(rng);
        const double stddev = config_.bert.initializer_range;
        for (auto& e : modality_embeddings_) e.initialize(rng, stddev);
        for (auto& a : intra_) a.initialize(rng, stddev);
        inter_.initialize(rng, stddev);
        head_.initialize(rng, stddev);
    }

    const dm2s2::schema& schema() const noexcept { return schema_; }
    const model_config& config() const noexcept { return config_; }
    const bert_model<T, Backend>& encoder() const noexcept { return bert_; }
    bert_model<T, Backend>& encoder() noexcept { return bert_; }

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

    /// Logits for a batch of records and, when `explain`, the α, β and γ weights.
    template <std::ranges::forward_range Range>
        requires sequence_set_like<std::ranges::range_value_t<Range>>
    model_output<T> forward(Range&& samples, bool explain = false) const
    {
        return forward(pack(samples), explain);
    }

    /// Logits for a packed batch and, when `explain`, the α, β and γ weights.
    model_output<T> forward(const packed_batch& batch, bool explain = false) const
    {
        if (batch.modality_count != schema_.size())
            throw shape_error("model: packed batch has " + std::to_string(batch.modality_count) +
                              " modalities, the schema " + std::to_string(schema_.size()));
        const std::size_t h = hidden(), modalities = schema_.size(), samples = batch.layout.batch;
        const auto& backend = bert_.backend();

        tensor<T> hidden_rows({batch.layout.rows(), h});
        nn::embed_elements(backend, batch, bert_.embeddings(), modality_embeddings_, hidden_rows.data());
        bert_.encode(hidden_rows, batch.position_ids, batch.type_ids, batch.layout, batch.mask.data());

        // Each present (sample, modality) is one group of element rows, gathered contiguously.
        struct present_modality {
            std::size_t sample, modality, first_slot;
        };
        std::vector<present_modality> present;
        std::vector<nn::row_group> element_groups, modality_groups;
        std::size_t elements = 0;
        for (std::size_t b = 0; b < samples; ++b) {
            const std::size_t first_group = element_groups.size();
            for (std::size_t m = 0; m < modalities; ++m)
                if (const auto& s = batch.span(b, m); s.length > 0) {
                    present.push_back({b, m, batch.slot(b, s.begin)});
                    element_groups.push_back({elements, s.length});
                    elements += s.length;
                }
            if (element_groups.size() == first_group)
                throw input_error("model: sample " + std::to_string(b) + " has no present modality");
            modality_groups.push_back({first_group, element_groups.size() - first_group});
        }
        tensor<T> element_rows({elements, h});
        for (std::size_t g = 0; g < present.size(); ++g) {
            const T* from = hidden_rows.row(present[g].first_slot);
            std::copy(from, from + element_groups[g].length * h, element_rows.row(element_groups[g].begin));
        }

        // IntraMRA: α within each modality, z_m per present modality.
        std::vector<T> alpha(elements);
        if (config_.mra.shared_intra) {
            intra_[0].score(backend, element_rows.data(), elements, alpha.data());
        } else {
            for (std::size_t g = 0; g < element_groups.size(); ++g)
                intra_[present[g].modality].score(backend, element_rows.row(element_groups[g].begin),
                                                element_groups[g].length, alpha.data() + element_groups[g].begin);
        }
        const T residual = static_cast<T>(config_.mra.residual);
        tensor<T> modality_rows({element_groups.size(), h});
        nn::attention_pool(backend, element_rows.data(), h, std::span<const nn::row_group>(element_groups),
                           alpha.data(), residual, modality_rows.data());

        // InterMRA: β over the present modalities of each sample, o per sample; then the head.
        std::vector<T> beta(element_groups.size());
        inter_.score(backend, modality_rows.data(), element_groups.size(), beta.data());
        tensor<T> pooled({samples, h});
        nn::attention_pool(backend, modality_rows.data(), h, std::span<const nn::row_group>(modality_groups),
                           beta.data(), residual, pooled.data());
        model_output<T> out;
        head_.forward(backend, pooled, out.logits);

        if (explain) {
            auto& e = out.explanation;
            e.modality_count = modalities;
            e.layout = batch.layout;
            e.spans = batch.spans;
            e.alpha.assign(batch.layout.rows(), T(0));
            e.gamma.assign(batch.layout.rows(), T(0));
            e.beta.assign(samples * modalities, T(0));
            for (std::size_t g = 0; g < present.size(); ++g) {
                const auto [b, m, first_slot] = present[g];
                e.beta[b * modalities + m] = beta[g];
                for (std::size_t i = 0; i < element_groups[g].length; ++i) {
                    const T a = alpha[element_groups[g].begin + i];
                    e.alpha[first_slot + i] = a;
                    e.gamma[first_slot + i] = beta[g] * a;
                }
            }
        }
        return out;
    }

    /// Visits every parameter: BERT's under HuggingFace names, then `modality_embeddings.<name>.…`,
    /// `intra_mra.…` (or `intra_mra.<name>.…`), `inter_mra.…` and `head.…`.
    template <class F>
        requires parameter_visitor<F, T>
    void for_each_parameter(F&& visit)
    {
        bert_.for_each_parameter(visit);
        for (std::size_t m = 0; m < schema_.size(); ++m)
            modality_embeddings_[m].for_each_parameter("modality_embeddings." + schema_[m].name + ".", visit);
        if (config_.mra.shared_intra) {
            intra_[0].for_each_parameter("intra_mra.", visit);
        } else {
            for (std::size_t m = 0; m < schema_.size(); ++m)
                intra_[m].for_each_parameter("intra_mra." + schema_[m].name + ".", visit);
        }
        inter_.for_each_parameter("inter_mra.", visit);
        head_.for_each_parameter("head.", visit);
    }

    /// Initialises the encoder from a HuggingFace BERT checkpoint directory. Its config must match this
    /// model's encoder except type_vocab_size (token-type rows are adapted as DESIGN §8 says).
    hf_load_report load_encoder(const std::filesystem::path& dir)
    {
        const bert_config theirs = read_hf_bert_config(dir);
        const bert_config& ours = config_.bert;
        if (theirs.vocab_size != ours.vocab_size || theirs.hidden_size != ours.hidden_size ||
            theirs.num_hidden_layers != ours.num_hidden_layers || theirs.num_attention_heads != ours.num_attention_heads ||
            theirs.intermediate_size != ours.intermediate_size ||
            theirs.max_position_embeddings != ours.max_position_embeddings)
            throw config_error((dir / "config.json").string() + ": encoder sizes differ from the model's bert config");
        return load_bert_parameters<T>(bert_, hf_checkpoint(dir));
    }

private:
    static model_config with_type_rows(model_config c, const dm2s2::schema& s)
    {
        if (s.size() == 0) throw config_error("model: the schema has no modality");
        c.bert.type_vocab_size = s.size();
        return c;
    }

    std::size_t hidden() const { return config_.bert.hidden_size; }
    std::size_t attention_dim() const { return config_.mra.attention_dim ? config_.mra.attention_dim : hidden(); }

    dm2s2::schema schema_;
    model_config config_;
    bert_model<T, Backend> bert_;
    std::vector<nn::modality_embedding<T>> modality_embeddings_;
    std::vector<nn::modality_attention<T>> intra_;
    nn::modality_attention<T> inter_;
    nn::linear<T> head_;
};

}  // namespace dm2s2
