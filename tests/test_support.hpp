#pragma once
// Helpers shared by the test files: data paths and tensor comparisons with informative failures.

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "dm2s2/core/random.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/io/safetensors.hpp"
#include "dm2s2/model/bert_model.hpp"

namespace dm2s2::testing {

/// True in the sanitizer build (DM2S2_SANITIZE), where arithmetic runs many times slower: the products'
/// widest sweeps then pair their options instead of crossing them, still reaching every kernel, shape
/// and option value.
#ifdef DM2S2_SANITIZED
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif

inline std::filesystem::path data_dir()
{
    return DM2S2_TEST_DATA_DIR;
}
inline std::filesystem::path tiny_bert_dir()
{
    return data_dir() / "bert_tiny_a";
}
/// The project's shipped data (data/): the BERT vocabulary, the movies data set.
inline std::filesystem::path project_data_dir()
{
    return DM2S2_PROJECT_DATA_DIR;
}
inline std::filesystem::path bert_vocab()
{
    return project_data_dir() / "vocab" / "bert-base-uncased-vocab.txt";
}

/// The HuggingFace golden outputs of the tiny checkpoint (see data/bert_tiny_a and its README).
inline const safetensors_file& golden()
{
    static const safetensors_file file = safetensors_file::load(tiny_bert_dir() / "golden.safetensors");
    return file;
}

/// The golden inputs, with default position ids or the restarted ones.
inline bert_inputs golden_inputs(bool restart_positions = false)
{
    const auto ids = golden().read_integers("input_ids");
    const auto types = golden().read_integers("token_type_ids");
    const auto mask = golden().read_integers("attention_mask");
    bert_inputs in;
    in.layout = {ids.dim(0), ids.dim(1)};
    in.input_ids.assign(ids.values().begin(), ids.values().end());
    in.token_type_ids.assign(types.values().begin(), types.values().end());
    for (auto m : mask.values()) in.attention_mask.push_back(static_cast<std::uint8_t>(m));
    if (restart_positions) {
        const auto positions = golden().read_integers("position_ids_restart");
        in.position_ids.assign(positions.values().begin(), positions.values().end());
    }
    return in;
}

/// A fresh, empty scratch directory in the build tree; `name` is unique to the test that uses it.
inline std::filesystem::path scratch_dir(const std::string& name)
{
    const auto dir = std::filesystem::path(DM2S2_TEST_SCRATCH_DIR) / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

/// n standard normal deviates from `rng`, as floats.
inline std::vector<float> random_floats(std::size_t n, random_generator& rng)
{
    std::vector<float> v(n);
    for (auto& x : v) x = static_cast<float>(rng.normal());
    return v;
}

/// Whether two float ranges hold the same bits.
inline bool same_bits(const float* x, const float* y, std::size_t n)
{
    for (std::size_t i = 0; i < n; ++i)
        if (std::bit_cast<std::uint32_t>(x[i]) != std::bit_cast<std::uint32_t>(y[i])) return false;
    return true;
}

/// Largest |a - b| over two equally sized ranges (infinity when a value is NaN or sizes differ).
template <class A, class B>
double max_abs_diff(const A& a, const B& b)
{
    if (a.size() != b.size()) return INFINITY;
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
        if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
    }
    return worst;
}

/// Largest |a − b| over two equally sized ranges relative to the largest finite |b| (absolute when no b
/// is finite and nonzero). Equal values, infinities included, differ by 0; a NaN, an infinity against
/// another value, or ranges of different sizes give infinity.
template <class A, class B>
double max_relative_diff(const A& a, const B& b)
{
    if (a.size() != b.size()) return INFINITY;
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
        const double d = x == y ? 0.0 : std::abs(x - y);
        worst = std::isnan(d) ? INFINITY : std::max(worst, d);
        if (std::isfinite(y)) scale = std::max(scale, std::abs(y));
    }
    return scale > 0 ? worst / scale : worst;
}

/// Checks a BERT model holding tests/data/bert_tiny_a (on any backend) against the golden outputs of
/// HuggingFace transformers in float64, for both position-id schemes: the last hidden state, the pooler
/// output, every hidden state and every attention map within `tolerance`.
template <class Model>
void check_hf_parity(const Model& model, double tolerance)
{
    for (const std::string variant : {"default", "restart"}) {
        CAPTURE(variant);
        const auto out = model.forward(golden_inputs(variant == "restart"), true);
        const std::string prefix = "f64." + variant + ".";
        CHECK(max_abs_diff(out.last_hidden_state.values(), golden().read<double>(prefix + "last_hidden_state").values()) <=
              tolerance);
        CHECK(max_abs_diff(out.pooler_output.values(), golden().read<double>(prefix + "pooler_output").values()) <= tolerance);
        REQUIRE(out.trace.hidden_states.size() == 3);
        for (std::size_t i = 0; i < 3; ++i) {
            CAPTURE(i);
            const auto expected = golden().read<double>(prefix + "hidden_states." + std::to_string(i));
            CHECK(out.trace.hidden_states[i].shape() == expected.shape());
            CHECK(max_abs_diff(out.trace.hidden_states[i].values(), expected.values()) <= tolerance);
        }
        REQUIRE(out.trace.attentions.size() == 2);
        for (std::size_t i = 0; i < 2; ++i) {
            CAPTURE(i);
            const auto expected = golden().read<double>(prefix + "attentions." + std::to_string(i));
            CHECK(out.trace.attentions[i].shape() == expected.shape());
            CHECK(max_abs_diff(out.trace.attentions[i].values(), expected.values()) <= tolerance);
        }
    }
}

}  // namespace dm2s2::testing
