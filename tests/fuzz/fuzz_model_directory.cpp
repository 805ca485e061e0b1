// Fuzz target: a model directory as dm2s2_predict reads it. Input: config.json (with its dm2s2
// section), model.safetensors and data.json, as parts; vocab.txt is the tiny vocabulary. A model and
// data pipeline that load must predict on the records the pipeline encodes.

#include "dm2s2/text/data_pipeline.hpp"
#include "fuzz_models.hpp"
#include "fuzz_support.hpp"

using namespace dm2s2;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto parts = fuzz::split_parts(data, size, 3);
    const auto dir = fuzz::fresh_directory("model");
    const char* names[] = {"config.json", "model.safetensors", "data.json"};
    for (std::size_t i = 0; i < parts.size(); ++i) fuzz::write_bytes(dir / names[i], parts[i]);
    fuzz::write_bytes(dir / "vocab.txt", fuzz::tiny_vocabulary_text());
    std::optional<model<float>> m;
    fuzz::refuses_cleanly([&] { m.emplace(load_model<float>(dir)); });
    std::optional<data_pipeline> pipeline;
    fuzz::refuses_cleanly([&] { pipeline.emplace(load_data_pipeline(dir)); });
    if (m && pipeline) {
        fuzz::write_bytes(dir / "records.jsonl", fuzz::tiny_records_jsonl);
        fuzz::refuses_cleanly([&] {
            const auto records = read_json_lines(dir / "records.jsonl");
            std::vector<sequence_set> encoded;
            for (const auto& r : records) encoded.push_back(pipeline->encoder->encode(r));
            (void)m->forward(encoded, m->config().pooling == pooling_kind::dm2s2);
        });
    }
    return 0;
}
