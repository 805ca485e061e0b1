// Backward passes of the BERT encoder: gradients against HuggingFace's (golden values from
// transformers in float64) and against central finite differences.

#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "dm2s2/io/hf_bert.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::golden;
using dm2s2::testing::golden_inputs;
using dm2s2::testing::max_relative_diff;

namespace {

/// Gradients of loss = Σ last_hidden_state · R · mask, computed by the library.
template <class T>
bert_gradients<T> probe_gradients(const bert_model<T>& model, const bert_inputs& in, const tensor<double>& probe)
{
    bert_cache<T> cache;
    const auto out = model.forward(in, false, &cache);
    tensor<T> d_last(out.last_hidden_state.shape());
    const std::size_t h = d_last.dim(2);
    for (std::size_t i = 0; i < d_last.size(); ++i) d_last[i] = static_cast<T>(probe[i] * in.attention_mask[i / h]);
    auto grads = model.zero_gradients();
    model.backward(cache, d_last, grads);
    return grads;
}

template <class T>
void check_hf_gradients(double tolerance)
{
    const auto model = load_hf_bert<T>(dm2s2::testing::tiny_bert_dir());
    auto grads = probe_gradients(model, golden_inputs(), golden().read<double>("f64.grad_probe_R"));
    std::size_t compared = 0;
    grads.for_each_parameter([&](const std::string& name, tensor<T>& g) {
        CAPTURE(name);
        if (name == "embeddings.word_embeddings.weight") {
            const auto ids = golden().read_integers("f64.grad_rows_ids." + name);
            const auto rows = golden().read<double>("f64.grad_rows." + name);
            tensor<T> ours(rows.shape());
            for (std::size_t r = 0; r < ids.size(); ++r)
                std::copy_n(g.row(static_cast<std::size_t>(ids[r])), g.dim(1), ours.row(r));
            CHECK(max_relative_diff(ours.values(), rows.values()) <= tolerance);
            ++compared;
        } else if (name.ends_with("attention.self.key.bias")) {
            // Zero in exact arithmetic (softmax ignores a shift shared by all keys); HF's values are
            // rounding noise of 1e-18, so ours must be noise too.
            CHECK(dm2s2::testing::max_abs_diff(g.values(), tensor<double>(g.shape()).values()) <= tolerance);
            ++compared;
        } else if (golden().contains("f64.grad." + name)) {
            CHECK(max_relative_diff(g.values(), golden().read<double>("f64.grad." + name).values()) <= tolerance);
            ++compared;
        }
    });
    CHECK(compared == 37);  // every embedding and encoder parameter
}

/// Compares the gradients in `analytic` with central differences of `loss` at `per_tensor` entries of
/// every parameter of `params` that `pick(name, tensor, k)` chooses (nullopt: skip the tensor).
/// Returns the number of entries compared.
template <class Params, class Loss, class Pick>
std::size_t check_finite_differences(Params& params, const std::map<std::string, tensor<double>*>& analytic, Loss&& loss,
                                     std::size_t per_tensor, Pick&& pick)
{
    std::size_t checked = 0;
    params.for_each_parameter([&](const std::string& name, tensor<double>& p) {
        CAPTURE(name);
        for (std::size_t k = 0; k < per_tensor; ++k) {
            const std::optional<std::size_t> index = pick(name, p, k);
            if (!index) return;
            const std::size_t i = *index;
            const double saved = p[i], step = 1e-5;
            p[i] = saved + step;
            const double up = loss();
            p[i] = saved - step;
            const double down = loss();
            p[i] = saved;
            const double numeric = (up - down) / (2 * step);
            CAPTURE(i);
            CHECK(std::abs((*analytic.at(name))[i] - numeric) <= 1e-6 * std::max(1.0, std::abs(numeric)));
            ++checked;
        }
    });
    return checked;
}

template <class Gradients>
std::map<std::string, tensor<double>*> by_name(Gradients& grads)
{
    std::map<std::string, tensor<double>*> out;
    grads.for_each_parameter([&](const std::string& name, tensor<double>& g) { out[name] = &g; });
    return out;
}

}  // namespace

TEST_CASE("encoder gradients match HuggingFace's, double within 1e-9 relative")
{
    check_hf_gradients<double>(1e-9);
}

TEST_CASE("encoder gradients match HuggingFace's, float within 1e-5 relative")
{
    check_hf_gradients<float>(1e-5);
}

TEST_CASE("encoder gradients match central finite differences, padding and masks included")
{
    bert_config config;
    config.vocab_size = 40;
    config.hidden_size = 12;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 3;
    config.intermediate_size = 20;
    config.max_position_embeddings = 16;
    config.type_vocab_size = 3;
    config.initializer_range = 0.4;
    bert_model<double> model(config);
    random_generator rng(5);
    model.initialize(rng);
    model.for_each_parameter([&](const std::string&, tensor<double>& t) {  // non-trivial LayerNorm too
        for (auto& v : t.values()) v += rng.normal(0, 0.1);
    });

    bert_inputs in;
    in.layout = {2, 6};
    in.input_ids = {1, 7, 9, 30, 2, 0, 1, 12, 2, 0, 0, 0};
    in.token_type_ids = {0, 1, 1, 2, 2, 0, 0, 1, 1, 0, 0, 0};
    in.attention_mask = {1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0};
    tensor<double> probe({2, 6, 12});
    for (auto& v : probe.values()) v = rng.normal();
    const auto loss = [&] {
        const auto out = model.forward(in);
        double sum = 0;
        for (std::size_t i = 0; i < probe.size(); ++i) sum += out.last_hidden_state[i] * probe[i] * in.attention_mask[i / 12];
        return sum;
    };
    auto grads = probe_gradients(model, in, probe);
    const std::size_t checked = check_finite_differences(
        model, by_name(grads), loss, 6,
        [&](const std::string& name, const tensor<double>& p, std::size_t k) -> std::optional<std::size_t> {
            if (name.rfind("pooler.", 0) == 0) return std::nullopt;                    // not on the path of this loss
            if (name == "embeddings.word_embeddings.weight") return 7 * p.dim(1) + k;  // a row in use
            return static_cast<std::size_t>(rng.below(p.size()));
        });
    CHECK(checked == 37 * 6);
}

namespace {

/// Whole-model gradients of Σ logits · R against finite differences, for every parameter tensor. With
/// `dropout_seed`, every forward runs in training mode with a generator of that seed, so each one drops
/// the same elements.
void check_model_gradients(const model_config& config, std::optional<std::uint64_t> dropout_seed = std::nullopt)
{
    using namespace dm2s2::testing;
    model<double> dm(four_modalities(), config, 13);
    random_generator rng(31);
    dm.for_each_parameter([&](const std::string&, tensor<double>& t) {  // non-trivial LayerNorm and biases
        for (auto& v : t.values()) v += rng.normal(0, 0.05);
    });
    const auto batch = dm.pack(random_records(dm.schema(), 6, 12));  // with missing modalities
    tensor<double> probe({6, 3});
    for (auto& v : probe.values()) v = rng.normal();
    const auto forward = [&](model_cache<double>* cache) {
        std::optional<random_generator> dropout;
        if (dropout_seed) dropout.emplace(*dropout_seed);
        return dm.forward(batch, false, cache, dropout ? &*dropout : nullptr).logits;
    };
    const auto loss = [&] {
        const auto logits = forward(nullptr);
        double sum = 0;
        for (std::size_t i = 0; i < logits.size(); ++i) sum += logits[i] * probe[i];
        return sum;
    };
    model_cache<double> cache;
    forward(&cache);
    auto grads = dm.zero_gradients();
    dm.backward(cache, probe, grads);
    std::size_t tensors = 0;
    const std::size_t checked = check_finite_differences(
        dm, by_name(grads), loss, 4,
        [&](const std::string& name, const tensor<double>& p, std::size_t k) -> std::optional<std::size_t> {
            if (name.rfind("pooler.", 0) == 0 && config.pooling != pooling_kind::cls) return std::nullopt;  // unused
            if (k == 0) ++tensors;
            if (name == "embeddings.word_embeddings.weight") return (1 + k % 2) * p.dim(1) + k;  // [CLS], [SEP] rows
            return static_cast<std::size_t>(rng.below(p.size()));
        });
    CHECK(checked == 4 * tensors);
    CHECK(tensors == by_name(grads).size() - (config.pooling == pooling_kind::cls ? 0 : 2));
}

}  // namespace

TEST_CASE("gradients match central finite differences for DM²S² variants and the baselines")
{
    for (const auto& variant : dm2s2::testing::pooling_variants()) {
        const std::string variant_name = variant.first;
        CAPTURE(variant_name);
        check_model_gradients(variant.second);
    }
}

TEST_CASE("DM²S² gradients match finite differences with dropout in every place")
{
    auto config = dm2s2::testing::small_config();
    config.bert.hidden_dropout_prob = 0.2;
    config.bert.attention_probs_dropout_prob = 0.2;
    config.head_dropout = 0.2;
    check_model_gradients(config, 77);
}

TEST_CASE("dropout acts only in training, follows its generator, and drops about p")
{
    auto config = dm2s2::testing::small_config();
    config.bert.hidden_dropout_prob = 0.3;
    const model<double> dm(dm2s2::testing::four_modalities(), config, 2);
    const auto batch = dm.pack(dm2s2::testing::random_records(dm.schema(), 4, 6));
    random_generator a(5), b(5), c(6);
    const auto eval = dm.forward(batch).logits, eval_again = dm.forward(batch).logits;
    const auto train_a = dm.forward(batch, false, nullptr, &a).logits, train_b = dm.forward(batch, false, nullptr, &b).logits;
    const auto train_c = dm.forward(batch, false, nullptr, &c).logits;
    CHECK(dm2s2::testing::max_abs_diff(eval.values(), eval_again.values()) == 0.0);
    CHECK(dm2s2::testing::max_abs_diff(train_a.values(), train_b.values()) == 0.0);
    CHECK(dm2s2::testing::max_abs_diff(train_a.values(), eval.values()) > 1e-6);
    CHECK(dm2s2::testing::max_abs_diff(train_a.values(), train_c.values()) > 1e-6);

    std::vector<double> x(20000, 1.0);
    random_generator rng(1);
    const dropout_draw draw = nn::draw_dropout(0.3, &rng);
    CHECK(draw.active());
    CHECK_FALSE(nn::draw_dropout(0.3, nullptr).active());  // inference
    CHECK_FALSE(nn::draw_dropout(0.0, &rng).active());
    nn::apply_dropout(cpu_backend(), x.data(), x.size(), draw);
    std::size_t dropped = 0, wrong = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        wrong += !(x[i] == 0.0 || std::abs(x[i] - 1 / 0.7) < 1e-15) || x[i] != draw.factor<double>(i);
        dropped += x[i] == 0.0;
    }
    CHECK(wrong == 0);
    CHECK(std::abs(static_cast<double>(dropped) / x.size() - 0.3) < 0.02);
}
