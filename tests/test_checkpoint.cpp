// Saving and loading DM²S² models: exact round trips for every pooling, the directory reads as a BERT
// checkpoint too, and damaged directories are rejected naming the file and the tensor or field.

#include <fstream>

#include "dm2s2/io/checkpoint.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using namespace dm2s2::testing;

TEST_CASE_TEMPLATE("a saved model loads back to identical outputs, for every pooling", T, float, double)
{
    const auto dir = scratch_dir(std::string("checkpoint_") + std::string(scalar_name<T>()));
    for (const auto& variant : pooling_variants()) {
        const std::string variant_name = variant.first;
        CAPTURE(variant_name);
        const model<T> original(four_modalities(), variant.second, 8);
        save_model(original, dir);
        const auto loaded = load_model<T>(dir);
        CHECK(loaded.schema() == original.schema());
        CHECK(loaded.config().pooling == original.config().pooling);
        const auto records = random_records(original.schema(), 5, 4);
        CHECK(max_abs_diff(loaded.forward(records).logits.values(), original.forward(records).logits.values()) == 0.0);
    }
}

TEST_CASE("a saved model's encoder loads as a HuggingFace BERT checkpoint")
{
    const auto dir = scratch_dir("checkpoint_as_bert");
    const model<float> m(four_modalities(), small_config(), 2);
    save_model(m, dir);
    hf_load_report report;
    const auto bert = load_hf_bert<float>(dir, &report);
    CHECK(report.left_initialized.empty());
    CHECK_FALSE(report.unused.empty());  // the DM²S² parameters
    bert_inputs in;
    in.layout = {1, 4};
    in.input_ids = {1, 7, 8, 2};
    in.token_type_ids = {0, 0, 0, 0};
    in.attention_mask = {1, 1, 1, 1};
    CHECK(max_abs_diff(bert.forward(in).last_hidden_state.values(), m.encoder().forward(in).last_hidden_state.values()) == 0.0);
}

TEST_CASE("damaged model directories are rejected naming the file and the tensor or field")
{
    const auto dir = scratch_dir("checkpoint_damaged");
    const model<float> m(four_modalities(), small_config(), 2);
    save_model(m, dir);
    const auto config_text = [&] {
        std::ifstream in(dir / "config.json");
        return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    const auto write_config = [&](const std::string& from, const std::string& to) {
        std::string text = config_text;
        REQUIRE(text.find(from) != std::string::npos);
        text.replace(text.find(from), from.size(), to);
        std::ofstream(dir / "config.json") << text;
    };
    write_config("\"pooling\": \"dm2s2\"", "\"pooling\": \"max\"");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("unknown pooling 'max'"), config_error);
    write_config("\"kind\": \"dense\"", "\"kind\": \"image\"");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("modalities[1]: unknown kind 'image'"), config_error);
    write_config("\"num_outputs\": 3", "\"num_outputs\": \"three\"");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("field 'num_outputs'"), config_error);
    write_config("\"num_outputs\": 3", "\"num_outputs\": 4");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("'head.weight' has shape [3, 16]"), shape_error);
    // Numbers that a loose conversion would wrap or truncate, and sizes the tensors cannot back: refused
    // before the model is built (nothing the size of the claim is allocated).
    write_config("\"num_outputs\": 3", "\"num_outputs\": -1");
    CHECK_THROWS_WITH_AS(load_model<float>(dir),
                         doctest::Contains("field 'num_outputs' must be a non-negative integer (it is -1)"), config_error);
    write_config("\"num_outputs\": 3", "\"num_outputs\": 1e30");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("field 'num_outputs' must be a non-negative integer"),
                         config_error);
    write_config("\"num_outputs\": 3", "\"num_outputs\": 1000000000000");
    CHECK_THROWS_WITH_AS(load_model<float>(dir),
                         doctest::Contains("num_outputs × modalities × hidden_size claims 64000000000000 parameters, more than"),
                         config_error);
    write_config("\"vocab_size\": 120", "\"vocab_size\": 18446744073709551615");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("vocab_size × hidden_size claims more than 2^64 parameters"),
                         config_error);
    write_config("\"num_outputs\": 3", "\"num_outputs\": " + std::string(100, '[') + std::string(100, ']'));
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("nested deeper than 64 levels (the limit)"), format_error);
    std::ofstream(dir / "config.json") << config_text;

    safetensors_writer extra;
    m.for_each_parameter([&](const std::string& name, const tensor<float>& t) {
        if (name != "inter_mra.context") extra.add(name, t);
    });
    extra.write(dir / "model.safetensors");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("no tensor named 'inter_mra.context'"), format_error);
    extra.add("inter_mra.context", tensor<float>({16}));
    extra.add("stray", tensor<float>({1}));
    extra.write(dir / "model.safetensors");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("unexpected tensor 'stray'"), format_error);
    std::filesystem::remove(dir / "config.json");
    CHECK_THROWS_WITH_AS(load_model<float>(dir), doctest::Contains("config.json: cannot open"), format_error);
}
