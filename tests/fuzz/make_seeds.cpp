// Writes the seed corpora of the fuzz targets into corpus/<target>/ under the directory given as the
// argument (the repository's tests/fuzz): valid files of each format, made by the library itself,
// and a few hand-made edge cases. Run it again when a format changes.

#include <iostream>

#include "dm2s2/text/data_pipeline.hpp"
#include "fuzz_models.hpp"
#include "fuzz_support.hpp"

using namespace dm2s2;
namespace fs = std::filesystem;

namespace {

fs::path root;

void seed(const std::string& target, const std::string& name, const std::string& bytes)
{
    const auto dir = root / "corpus" / target;
    fs::create_directories(dir);
    fuzz::write_bytes(dir / name, bytes);
}

std::string bytes_of(const std::vector<std::byte>& b)
{
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::cerr << "usage: dm2s2_fuzz_seeds TESTS_FUZZ_DIR\n";
        return 2;
    }
    root = argv[1];
    const auto work = fuzz::fresh_directory("seeds");

    // The tiny records, their encoder and model, trained for a step, and their files.
    fuzz::write_bytes(work / "schema.json", fuzz::tiny_schema_json);
    fuzz::write_bytes(work / "train.jsonl", fuzz::tiny_records_jsonl);
    auto tokenizer = std::make_unique<wordpiece_tokenizer>(fuzz::tiny_vocabulary(), true);
    const auto records = read_json_lines(work / "train.jsonl");
    const auto encoder = record_encoder::fit(read_data_spec(work / "schema.json"), records, tokenizer.get());
    const auto train = encoder.encode_dataset<float>(records);
    model<float> m(encoder.schema(), fuzz::tiny_model_config(encoder.num_outputs()), 1);
    auto options = fuzz::tiny_trainer_options();
    options.output_dir = work / "run";
    options.stop_after_steps = 1;
    trainer<float, cpu_backend>(m, encoder.task().type, options).fit(train);
    const auto checkpoint = fuzz::read_text(work / "run" / "training_state.safetensors");
    seed("training_checkpoint", "after_one_step", checkpoint);
    options.stop_after_steps = 0;
    model<float> whole(encoder.schema(), fuzz::tiny_model_config(encoder.num_outputs()), 1);
    trainer<float, cpu_backend>(whole, encoder.task().type, options).fit(train);
    seed("training_checkpoint", "finished", fuzz::read_text(work / "run" / "training_state.safetensors"));

    save_model(m, work / "model");
    save_data_pipeline(work / "model", encoder);
    const auto config = fuzz::read_text(work / "model" / "config.json"),
               weights = fuzz::read_text(work / "model" / "model.safetensors"),
               data = fuzz::read_text(work / "model" / "data.json");
    seed("model_directory", "trained", fuzz::join_parts({config, weights, data}));
    save_model(m, work / "bf16", dtype::bf16);
    seed("model_directory", "bf16_weights",
         fuzz::join_parts({config, fuzz::read_text(work / "bf16" / "model.safetensors"), data}));
    seed("safetensors", "model_f32", weights);
    seed("safetensors", "checkpoint", checkpoint);
    {
        safetensors_writer w;
        w.set_metadata("format", "pt");
        tensor<std::int64_t> ids({2, 3});
        for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>(i) - 2;
        w.add("ids", ids);
        w.add("half", tensor<float>({4}, 1.5f), dtype::bf16);
        w.add("empty", tensor<double>({0, 5}));
        w.add("scalar", tensor<double>({}, 3.0));
        seed("safetensors", "mixed", bytes_of(w.serialize()));
    }

    // A HuggingFace BERT directory of the tiny BERT, whole and in two shards.
    const auto bert = fuzz::tiny_bert_config();
    bert_parameters<float> p(bert);
    random_generator rng(3);
    p.initialize(rng, 0.02);
    safetensors_writer single, first, second;
    nlohmann::json weight_map = nlohmann::json::object();
    std::size_t k = 0;
    p.for_each_parameter([&](const std::string& name, tensor<float>& t) {
        single.add(name, t);
        const bool in_first = k++ % 2 == 0;
        (in_first ? first : second).add("bert." + name, t);
        weight_map["bert." + name] = in_first ? "shard-1.safetensors" : "shard-2.safetensors";
    });
    const std::string hf_config = bert.to_json().dump(2);
    seed("hf_checkpoint", "single", fuzz::join_parts({hf_config, bytes_of(single.serialize())}));
    seed("hf_checkpoint", "sharded",
         fuzz::join_parts({hf_config, nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(),
                           bytes_of(first.serialize()), bytes_of(second.serialize())}));

    // Schemas and records: the tiny ones, and the movies data's schema with a few of its records.
    seed("schema", "tiny", fuzz::tiny_schema_json);
    const auto movies = fs::path(DM2S2_FUZZ_PROJECT_DATA) / "movies";
    seed("schema", "movies", fuzz::read_text(movies / "schema.json"));
    seed("json_records", "tiny", fuzz::join_parts({fuzz::tiny_schema_json, fuzz::tiny_records_jsonl, fuzz::tiny_records_jsonl}));
    std::string lines;
    {
        std::ifstream in(movies / "train.jsonl");
        std::string line;
        for (int i = 0; i < 6 && std::getline(in, line); ++i) lines += line + "\n";
    }
    seed("json_records", "movies", fuzz::join_parts({fuzz::read_text(movies / "schema.json"), lines, lines}));

    // Texts: ASCII, accents and CJK, control characters, invalid UTF-8, pairs.
    seed("wordpiece", "plain", std::string(1, '\0') + "The movie's opening, re-released in 1999!");
    seed("wordpiece", "unicode",
         "\x07"
         "Caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 \xcc\x81");
    seed("wordpiece", "invalid", std::string("\x01\xff\xfe\xc3(\xed\xa0\x80 ok \x00 tab\there", 28));
    seed("wordpiece", "pair",
         "\x10"
         "first text here" +
             std::string(fuzz::part_separator) + "and the second one, longer");
    seed("tokenize_lines", "string", R"("Hello, World! caf\u00e9")");
    seed("tokenize_lines", "pair", R"(["first", "second \ud83d\ude00"])");
    seed("tokenize_lines", "escapes", R"("\u0000\t\n\ud800 lone surrogate")");
    std::cout << "seeds written under " << (root / "corpus").string() << "\n";
    return 0;
}
