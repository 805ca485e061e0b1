// Loading HuggingFace checkpoints: name variants (bert. prefix, gamma/beta, cls.* heads,
// position_ids), sharded checkpoints, token-type row adaptation, and clear errors for bad ones.

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "dm2s2/io/hf_encoder.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::max_abs_diff;
namespace fs = std::filesystem;

namespace {

const safetensors_file& original()
{
    static const auto file = safetensors_file::load(dm2s2::testing::tiny_bert_dir() / "model.safetensors");
    return file;
}

/// Rewrites the tiny checkpoint into `dir`, renaming each tensor with `rename` (empty: drop it).
fs::path rewrite(const std::string& name, const std::function<std::string(const std::string&)>& rename,
                 std::function<void(safetensors_writer&)> extra = {})
{
    const auto dir = dm2s2::testing::scratch_dir(name);
    fs::copy_file(dm2s2::testing::tiny_bert_dir() / "config.json", dir / "config.json");
    safetensors_writer w;
    for (const auto& e : original().entries())
        if (const auto to = rename(e.name); !to.empty()) w.add(to, original().read<float>(e.name));
    if (extra) extra(w);
    w.write(dir / "model.safetensors");
    return dir;
}

bert_inputs small_inputs()
{
    bert_inputs in;
    in.layout = {2, 5};
    in.input_ids = {101, 7592, 2088, 102, 0, 101, 2023, 2003, 1037, 102};
    in.token_type_ids = {0, 0, 1, 1, 0, 0, 2, 2, 3, 3};
    in.attention_mask = {1, 1, 1, 1, 0, 1, 1, 1, 1, 1};
    return in;
}

const tensor<double>& reference_output()
{
    static const auto out = load_hf_bert<double>(dm2s2::testing::tiny_bert_dir()).forward(small_inputs()).last_hidden_state;
    return out;
}

}  // namespace

TEST_CASE("old and prefixed HF names load to the same model")
{
    const auto dir = rewrite(
        "legacy_names",
        [](const std::string& n) {
            std::string out = "bert." + n;
            if (const auto p = out.find("LayerNorm.weight"); p != std::string::npos) out.replace(p, 16, "LayerNorm.gamma");
            if (const auto p = out.find("LayerNorm.bias"); p != std::string::npos) out.replace(p, 14, "LayerNorm.beta");
            return out;
        },
        [](safetensors_writer& w) {
            w.add("cls.predictions.bias", tensor<float>({30522}));
            tensor<std::int64_t> positions({1, 128});
            w.add("bert.embeddings.position_ids", positions);
            w.add("classifier.weight", tensor<float>({2, 64}));
        });
    hf_load_report report;
    const auto model = load_hf_bert<double>(dir, &report);
    CHECK(max_abs_diff(model.forward(small_inputs()).last_hidden_state.values(), reference_output().values()) == 0.0);
    CHECK(report.loaded.size() == 39);
    CHECK(report.ignored.size() == 2);
    REQUIRE(report.unused.size() == 1);
    CHECK(report.unused[0] == "classifier.weight");
}

TEST_CASE("a sharded checkpoint loads to the same model")
{
    const auto dir = dm2s2::testing::scratch_dir("sharded");
    fs::copy_file(dm2s2::testing::tiny_bert_dir() / "config.json", dir / "config.json");
    safetensors_writer first, second;
    nlohmann::json map;
    for (const auto& e : original().entries()) {
        const bool in_first = e.name.rfind("embeddings.", 0) == 0;
        (in_first ? first : second).add(e.name, original().read<float>(e.name));
        map[e.name] = in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    first.write(dir / "model-00001-of-00002.safetensors");
    second.write(dir / "model-00002-of-00002.safetensors");
    std::ofstream(dir / "model.safetensors.index.json")
        << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump();
    const auto model = load_hf_bert<double>(dir);
    CHECK(max_abs_diff(model.forward(small_inputs()).last_hidden_state.values(), reference_output().values()) == 0.0);

    // Names that are not a file of the directory: a parent, the directory itself, or one that a NUL
    // would cut short to the directory's path.
    for (const char* shard : {"../evil.safetensors", ".", "\\u0000model-00002-of-00002.safetensors"}) {
        CAPTURE(shard);
        std::ofstream(dir / "model.safetensors.index.json") << R"({"weight_map": {"pooler.dense.bias": ")" << shard << R"("}})";
        CHECK_THROWS_WITH_AS(load_hf_bert<double>(dir), doctest::Contains("not a file in the checkpoint directory"),
                             format_error);
    }
    // A directory is not read as a file (its stream's end lies at the largest offset).
    CHECK_THROWS_WITH_AS(safetensors_file::load(dir), doctest::Contains("not a regular file"), error);
}

TEST_CASE("a checkpoint without a pooler loads and reports it")
{
    const auto dir = rewrite("no_pooler", [](const std::string& n) { return n.rfind("pooler.", 0) == 0 ? "" : n; });
    hf_load_report report;
    const auto model = load_hf_bert<double>(dir, &report);
    CHECK(report.left_initialized.size() == 2);
    CHECK(max_abs_diff(model.forward(small_inputs()).last_hidden_state.values(), reference_output().values()) == 0.0);
}

TEST_CASE("bad checkpoints are rejected with a message naming the tensor or file")
{
    const auto missing =
        rewrite("missing_tensor", [](const std::string& n) { return n == "encoder.layer.1.output.dense.weight" ? "" : n; });
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(missing), doctest::Contains("encoder.layer.1.output.dense.weight"), format_error);

    const auto wrong_shape = rewrite("wrong_shape", [](const std::string& n) { return n; });
    safetensors_writer w;
    for (const auto& e : original().entries())
        w.add(e.name, e.name == "encoder.layer.0.attention.self.key.bias" ? tensor<float>({63}) : original().read<float>(e.name));
    w.write(wrong_shape / "model.safetensors");
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(wrong_shape),
                         doctest::Contains("'encoder.layer.0.attention.self.key.bias' has shape [63]"), shape_error);

    const auto duplicate = rewrite(
        "duplicate", [](const std::string& n) { return n; },
        [](safetensors_writer& w) { w.add("bert.pooler.dense.bias", tensor<float>({64})); });
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(duplicate), doctest::Contains("after name mapping"), format_error);

    const auto bad_config = rewrite("bad_config", [](const std::string& n) { return n; });
    std::ofstream(bad_config / "config.json") << R"({"hidden_size": 64, "num_attention_heads": 5})";
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(bad_config), doctest::Contains("not a multiple of num_attention_heads"),
                         config_error);
    std::ofstream(bad_config / "config.json") << R"({"hidden_act": "relu"})";
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(bad_config), doctest::Contains("hidden_act 'relu'"), config_error);
    std::ofstream(bad_config / "config.json") << R"({"hidden_size": )";
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(bad_config), doctest::Contains("invalid JSON"), format_error);
    // A size the checkpoint's tensors cannot back is refused before anything of that size is allocated.
    std::ofstream(bad_config / "config.json")
        << R"({"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 1099511627776})";
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(bad_config),
                         doctest::Contains("vocab_size × hidden_size claims 70368744177664 parameters, more than"), config_error);
    std::ofstream(bad_config / "config.json")
        << R"({"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "num_hidden_layers": 100000000})";
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(bad_config), doctest::Contains("num_hidden_layers × hidden_size claims"),
                         config_error);
    std::ofstream(bad_config / "config.json") << R"({"vocab_size": 30522.5})";
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(bad_config), doctest::Contains("'vocab_size' must be a non-negative integer"),
                         config_error);

    const auto empty = dm2s2::testing::scratch_dir("empty_checkpoint");
    fs::copy_file(dm2s2::testing::tiny_bert_dir() / "config.json", empty / "config.json");
    CHECK_THROWS_WITH_AS(load_hf_bert<float>(empty), doctest::Contains("no model.safetensors"), format_error);
}

TEST_CASE("a DM²S² model takes its encoder from a checkpoint, extending the token-type rows")
{
    std::vector<modality_spec> specs;
    for (const char* name : {"m0", "m1", "m2", "m3", "m4", "m5"})
        specs.push_back({.name = name, .kind = modality_kind::tokens, .max_length = 4});
    model_config config;
    config.bert = read_hf_bert_config(dm2s2::testing::tiny_bert_dir());
    model<double> dm(schema(specs), config, 3);
    const auto report = load_encoder(dm, dm2s2::testing::tiny_bert_dir());
    REQUIRE(report.notes.size() == 1);
    CHECK(report.notes[0].find("extra rows copy the last one") != std::string::npos);
    const auto& types = dm.encoder().embeddings().token_type_embeddings;
    const auto stored = original().read<double>("embeddings.token_type_embeddings.weight");
    REQUIRE(types.shape() == shape_t{6, 64});
    for (std::size_t j = 0; j < 64; ++j) {
        CHECK(types(1, j) == stored(1, j));
        CHECK(types(4, j) == stored(3, j));
        CHECK(types(5, j) == stored(3, j));
    }
    config.bert.num_hidden_layers = 3;
    model<double> deeper(schema(specs), config, 3);
    CHECK_THROWS_AS(load_encoder(deeper, dm2s2::testing::tiny_bert_dir()), config_error);
}
