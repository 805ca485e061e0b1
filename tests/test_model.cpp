// The DM²S² model: padding neutrality, the properties of α, β and γ, missing modalities, an
// independent plain-loop implementation of docs/design.md §5 to compare against, backend agreement, and the
// normal draws that initialise the weights.

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::max_abs_diff;
using namespace dm2s2::testing;

namespace {

template <class T>
constexpr double padding_tolerance = std::is_same_v<T, float> ? 1e-6 : 1e-12;

/// docs/design.md §5 and the §6 baselines that share its encoder, written out with plain loops in long double
/// from the encoder's output, independent of the model's pooling code: returns logits [B·C] and fills
/// α/β per sample.
template <class T, class Backend>
std::vector<long double> plain_dm2s2(model<T, Backend>& dm, const std::vector<sequence_set>& records,
                                     std::vector<std::vector<std::vector<long double>>>& alphas,
                                     std::vector<std::vector<long double>>& betas)
{
    std::map<std::string, const tensor<T>*> p;
    dm.for_each_parameter([&](const std::string& name, tensor<T>& t) { p[name] = &t; });
    const auto& cfg = dm.config();
    const std::size_t h = cfg.bert.hidden_size;
    // r of IntraMRA and of InterMRA: learned parameters or the configuration's.
    const auto learned = p.find("mra_residual");
    const long double r = learned != p.end() ? (*learned->second)[0] : cfg.mra.residual_at(0);
    const long double r_inter = learned != p.end() ? (*learned->second)[1] : cfg.mra.residual_at(1);
    const auto score = [&](const std::string& prefix, const T* x) {
        const auto &w = *p.at(prefix + "weight"), &b = *p.at(prefix + "bias"), &v = *p.at(prefix + "context");
        long double s = 0;
        for (std::size_t a = 0; a < w.dim(0); ++a) {
            long double u = b[a];
            for (std::size_t j = 0; j < h; ++j) u += static_cast<long double>(w(a, j)) * x[j];
            s += v[a] * std::tanh(u);
        }
        return s;
    };
    const auto softmax = [](std::vector<long double> s) {
        long double max = s[0], sum = 0;
        for (auto v : s) max = std::max(max, v);
        for (auto& v : s) sum += v = std::exp(v - max);
        for (auto& v : s) v /= sum;
        return s;
    };

    std::vector<nn::modality_embedding<T>> element_embeddings;  // rebuilt from the named parameters
    for (const auto& spec : dm.schema().modalities()) {
        nn::modality_embedding<T> m(spec, h);
        m.for_each_parameter("modality_embeddings." + spec.name + ".",
                             [&](const std::string& name, tensor<T>& t) { t = *p.at(name); });
        element_embeddings.push_back(m);
    }
    const auto encode = [&](const packed_batch& batch) {
        tensor<T> hidden({batch.layout.rows(), h});
        nn::embed_elements(dm.encoder().backend(), batch, dm.encoder().embeddings(), element_embeddings, hidden.data());
        if (cfg.pooling == pooling_kind::dm2s)  // embeddings only, no encoder layers
            dm.encoder().embed(hidden, batch.position_ids, batch.type_ids, batch.layout);
        else dm.encoder().encode(hidden, batch.position_ids, batch.type_ids, batch.layout, batch.mask.data());
        return hidden;
    };
    const auto batch = dm.pack(records);
    const tensor<T> hidden = encode(batch);
    const auto gelu = [](long double x) { return 0.5L * x * (1 + std::erf(x / std::sqrt(2.0L))); };
    const auto dense = [&](const std::string& prefix, const std::vector<long double>& x) {
        const auto &w = *p.at(prefix + "weight"), &bias = *p.at(prefix + "bias");
        std::vector<long double> y(w.dim(0));
        for (std::size_t k = 0; k < y.size(); ++k) {
            y[k] = bias[k];
            for (std::size_t j = 0; j < x.size(); ++j) y[k] += static_cast<long double>(w(k, j)) * x[j];
        }
        return y;
    };

    const auto uniform = [](std::size_t n) { return std::vector<long double>(n, 1.0L / n); };
    std::vector<long double> logits;
    alphas.assign(records.size(), {});
    betas.assign(records.size(), {});
    for (std::size_t b = 0; b < records.size(); ++b) {
        std::vector<std::vector<long double>> z;
        std::vector<long double> t, sizes;
        std::vector<long double> sum(h, 0);  // of all element rows, for the mean pooling
        for (std::size_t m = 0; m < dm.schema().size(); ++m) {
            const auto& s = batch.span(b, m);
            alphas[b].emplace_back();
            if (s.length == 0) continue;
            const std::string prefix = cfg.mra.shared_intra ? "intra_mra." : "intra_mra." + dm.schema()[m].name + ".";
            std::vector<long double> scores;
            for (std::size_t i = 0; i < s.length; ++i) {
                const T* row = hidden.row(batch.slot(b, s.begin + i));
                if (has_intra(cfg.pooling)) scores.push_back(score(prefix, row));
                for (std::size_t j = 0; j < h; ++j) sum[j] += row[j];
            }
            const auto alpha = has_intra(cfg.pooling) ? softmax(scores) : uniform(s.length);
            alphas[b][m] = alpha;
            std::vector<long double> zm(h, 0);
            for (std::size_t i = 0; i < s.length; ++i)
                for (std::size_t j = 0; j < h; ++j)
                    zm[j] += (alpha[i] + r / s.length) * hidden.row(batch.slot(b, s.begin + i))[j];
            std::vector<T> zt(zm.begin(), zm.end());
            if (has_inter(cfg.pooling)) t.push_back(score("inter_mra.", zt.data()));
            z.push_back(zm);
            sizes.push_back(static_cast<long double>(s.length));
        }
        std::vector<long double> o(h, 0);
        if (cfg.pooling == pooling_kind::mid_fusion) {
            // Each present modality packed alone as a record of its own: [CLS] x_m [SEP].
            o.assign(h * dm.schema().size(), 0);
            for (std::size_t m = 0; m < dm.schema().size(); ++m) {
                if (!records[b].present(m)) continue;
                sequence_set alone = records[b];
                for (const auto& spec : dm.schema().modalities())
                    if (spec.name != dm.schema()[m].name) alone.clear(spec.name);
                const tensor<T> encoded = encode(dm.pack(std::vector{alone}));
                std::copy_n(encoded.row(0), h, o.begin() + static_cast<std::ptrdiff_t>(m * h));
            }
        } else if (cfg.pooling == pooling_kind::dm2s) {
            o.assign(h, -std::numeric_limits<long double>::infinity());
            for (std::size_t m = 0; m < dm.schema().size(); ++m)
                for (std::size_t i = 0; i < batch.span(b, m).length; ++i) {
                    const T* row = hidden.row(batch.slot(b, batch.span(b, m).begin + i));
                    auto inner = dense("element_mlp.0.", std::vector<long double>(row, row + h));
                    for (auto& v : inner) v = gelu(v);
                    const auto out = dense("element_mlp.1.", inner);
                    for (std::size_t j = 0; j < h; ++j) o[j] = std::max(o[j], out[j]);
                }
        } else if (cfg.pooling == pooling_kind::mean) {
            const long double n = std::accumulate(sizes.begin(), sizes.end(), 0.0L);
            for (std::size_t j = 0; j < h; ++j) o[j] = sum[j] / n;
            for (auto& size : sizes) size /= n;
            betas[b] = sizes;
        } else if (cfg.pooling == pooling_kind::cls) {
            const T* first = hidden.row(batch.slot(b, 0));
            o = dense("pooler.dense.", std::vector<long double>(first, first + h));
            for (auto& v : o) v = std::tanh(v);
        } else {
            const auto beta = has_inter(cfg.pooling) ? softmax(t) : uniform(z.size());
            betas[b] = beta;
            for (std::size_t k = 0; k < z.size(); ++k)
                for (std::size_t j = 0; j < h; ++j) o[j] += (beta[k] + r_inter / z.size()) * z[k][j];
        }
        const auto y = dense("head.", o);
        logits.insert(logits.end(), y.begin(), y.end());
    }
    return logits;
}

template <class T>
void check_against_plain_loops(const model_config& config)
{
    model<T> dm(four_modalities(), config, 11);
    const auto records = random_records(dm.schema(), 7, 5);
    const bool explain = explains(config.pooling);
    const auto out = dm.forward(records, explain);
    std::vector<std::vector<std::vector<long double>>> alphas;
    std::vector<std::vector<long double>> betas;
    const auto expected = plain_dm2s2(dm, records, alphas, betas);
    const double tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    CHECK(max_abs_diff(out.logits.values(), expected) <= tolerance);
    if (!explain) {
        CHECK_THROWS_AS(dm.forward(records, true), config_error);
        return;
    }
    for (std::size_t b = 0; b < records.size(); ++b) {
        std::size_t k = 0;
        for (std::size_t m = 0; m < 4; ++m) {
            CHECK(max_abs_diff(out.explanation.alpha_of(b, m), alphas[b][m]) <= tolerance);
            if (records[b].present(m)) CHECK(std::abs(out.explanation.beta_of(b, m) - betas[b][k++]) <= tolerance);
        }
    }
}

}  // namespace

TEST_CASE_TEMPLATE("the model matches a plain-loop implementation of docs/design.md §5 and the baselines", T, float, double)
{
    for (const auto& variant : pooling_variants()) {
        const std::string variant_name = variant.first;
        CAPTURE(variant_name);
        check_against_plain_loops<T>(variant.second);
    }
}

TEST_CASE_TEMPLATE("a padded batch gives the same outputs as one record at a time", T, float, double)
{
    const model<T> dm(four_modalities(), small_config(), 21);
    const auto records = random_records(dm.schema(), 9, 8);
    const auto batched = dm.forward(records, true);
    for (std::size_t b = 0; b < records.size(); ++b) {
        CAPTURE(b);
        const auto single = dm.forward(std::vector{records[b]}, true);
        for (std::size_t c = 0; c < 3; ++c) CHECK(std::abs(batched.logits(b, c) - single.logits(0, c)) <= padding_tolerance<T>);
        for (std::size_t m = 0; m < 4; ++m) {
            CHECK(max_abs_diff(batched.explanation.alpha_of(b, m), single.explanation.alpha_of(0, m)) <= padding_tolerance<T>);
            CHECK(max_abs_diff(batched.explanation.gamma_of(b, m), single.explanation.gamma_of(0, m)) <= padding_tolerance<T>);
            CHECK(std::abs(batched.explanation.beta_of(b, m) - single.explanation.beta_of(0, m)) <= padding_tolerance<T>);
        }
    }
}

TEST_CASE_TEMPLATE("alpha, beta and gamma are distributions over what is present", T, float, double)
{
    const model<T> dm(four_modalities(), small_config(), 4);
    const auto records = random_records(dm.schema(), 12, 9);
    const auto e = dm.forward(records, true).explanation;
    const double tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    bool some_missing = false;
    for (std::size_t b = 0; b < records.size(); ++b) {
        double beta_sum = 0, gamma_sum = 0;
        for (std::size_t m = 0; m < 4; ++m) {
            const auto alpha = e.alpha_of(b, m);
            CHECK(alpha.size() == std::min(records[b].length(m), dm.schema()[m].max_length));
            if (!records[b].present(m)) {
                some_missing = true;
                CHECK(e.beta_of(b, m) == T(0));
                continue;
            }
            double alpha_sum = 0;
            for (auto a : alpha) alpha_sum += a;
            CHECK(alpha_sum == doctest::Approx(1.0).epsilon(tolerance));
            for (std::size_t i = 0; i < alpha.size(); ++i)
                CHECK(e.gamma_of(b, m)[i] == doctest::Approx(static_cast<double>(e.beta_of(b, m)) * alpha[i]).epsilon(tolerance));
            beta_sum += e.beta_of(b, m);
            for (auto g : e.gamma_of(b, m)) gamma_sum += g;
        }
        CHECK(beta_sum == doctest::Approx(1.0).epsilon(tolerance));
        CHECK(gamma_sum == doctest::Approx(1.0).epsilon(tolerance));
    }
    CHECK(some_missing);
    for (std::size_t slot = 0; slot < e.layout.rows(); ++slot)  // specials and padding carry no weight
        if (slot % e.layout.length == 0) CHECK(e.alpha[slot] == T(0));
}

TEST_CASE("a record with no present modality is rejected, never NaN")
{
    const model<float> dm(four_modalities(), small_config(), 1);
    auto records = random_records(dm.schema(), 3, 2);
    records.emplace_back(dm.schema());
    CHECK_THROWS_WITH_AS(dm.forward(records), "sample 3: has no present modality", input_error);
}

TEST_CASE("the CPU backend and the reference backend give the same model outputs")
{
    const model<double, cpu_backend> fast(four_modalities(), small_config(), 17);
    const model<double, reference_backend> slow(four_modalities(), small_config(), 17);
    const auto records = random_records(fast.schema(), 6, 3);
    const auto a = fast.forward(records, true), b = slow.forward(records, true);
    CHECK(max_abs_diff(a.logits.values(), b.logits.values()) <= 1e-12);
    CHECK(max_abs_diff(a.explanation.gamma, b.explanation.gamma) <= 1e-12);
    const auto records_f = random_records(fast.schema(), 6, 3);
    const model<float, cpu_backend> fast_f(four_modalities(), small_config(), 17);
    const model<float, reference_backend> slow_f(four_modalities(), small_config(), 17);
    CHECK(max_abs_diff(fast_f.forward(records_f).logits.values(), slow_f.forward(records_f).logits.values()) <= 1e-5);
}

TEST_CASE("model configurations that cannot work are rejected")
{
    auto config = small_config();
    config.cls_id = 500;
    CHECK_THROWS_WITH_AS(model<float>(four_modalities(), config, 1), doctest::Contains("special token id 500"), config_error);
    config = small_config();
    config.bert.num_attention_heads = 3;
    CHECK_THROWS_AS(model<float>(four_modalities(), config, 1), config_error);
    CHECK_THROWS_AS(model<float>(schema(), small_config(), 1), config_error);
}

TEST_CASE("initialisation draws normal deviates of the asked spread, the same for a seed")
{
    // 200 001 values: an odd count, so the last pair's second deviate is dropped.
    tensor<double> first({200001}), second({200001});
    random_generator a(11), b(11);
    fill_normal(first, a, 0.02);
    fill_normal(second, b, 0.02);
    CHECK(first.values().back() == second.values().back());
    CHECK(std::equal(first.values().begin(), first.values().end(), second.values().begin()));
    CHECK(a.state() == b.state());

    // Standard errors over n = 200 001: mean 0.02/√n ≈ 4.5e-5, variance 0.0004·√(2/n) ≈ 1.3e-6.
    const auto v = first.values();
    const double n = static_cast<double>(v.size());
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
    double var = 0, fourth = 0, beyond_two_sigma = 0, lag_product = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        const double d = v[i] - mean;
        var += d * d;
        fourth += d * d * d * d;
        beyond_two_sigma += std::abs(v[i]) > 0.04 ? 1 : 0;
        if (i + 1 < v.size()) lag_product += v[i] * v[i + 1];
    }
    var /= n;
    CHECK(std::abs(mean) < 5 * 4.5e-5);
    CHECK(std::abs(var - 0.0004) < 5 * 1.3e-6);
    CHECK(fourth / n / (var * var) == doctest::Approx(3.0).epsilon(0.03));  // a normal's kurtosis
    CHECK(beyond_two_sigma / n == doctest::Approx(0.0455).epsilon(0.05));   // P(|z| > 2)
    // The two deviates of a pair, and neighbouring pairs, are uncorrelated.
    CHECK(std::abs(lag_product / n / var) < 5 / std::sqrt(n));

    random_generator c(12);
    fill_normal(second, c, 0.02);
    CHECK_FALSE(std::equal(first.values().begin(), first.values().end(), second.values().begin()));
}
