// Fuzz target: a training checkpoint (training_state.safetensors) resumed by the trainer of the tiny
// model, as `dm2s2_train --resume` does: tensors, optimizer moments and the trainer's metadata.

#include "dm2s2/text/data_pipeline.hpp"
#include "fuzz_models.hpp"
#include "fuzz_support.hpp"

using namespace dm2s2;

namespace {
struct fixture {
    data_pipeline pipeline;
    dataset<float> train;
    std::optional<model<float>> initial;
};
fixture* f = nullptr;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    f = new fixture;
    const auto dir = fuzz::fresh_directory("fixture");
    fuzz::write_bytes(dir / "schema.json", fuzz::tiny_schema_json);
    fuzz::write_bytes(dir / "train.jsonl", fuzz::tiny_records_jsonl);
    f->pipeline.tokenizer = std::make_unique<wordpiece_tokenizer>(fuzz::tiny_vocabulary(), true);
    const auto records = read_json_lines(dir / "train.jsonl");
    const auto& encoder = f->pipeline.encoder.emplace(
        record_encoder::fit(read_data_spec(dir / "schema.json"), records, f->pipeline.tokenizer.get()));
    f->train = encoder.encode_dataset<float>(records);
    f->initial.emplace(encoder.schema(), fuzz::tiny_model_config(encoder.num_outputs()), 1);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto path = fuzz::scratch() / "training_state.safetensors";
    fuzz::write_bytes(path, {reinterpret_cast<const char*>(data), size});
    model<float> m = *f->initial;
    fuzz::refuses_cleanly([&] {
        trainer<float, cpu_backend> t(m, f->pipeline.encoder->task().type, fuzz::tiny_trainer_options());
        (void)t.fit(f->train, nullptr, path);
    });
    return 0;
}
