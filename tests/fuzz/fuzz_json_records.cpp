// Fuzz target: JSON Lines records against a schema, as dm2s2_train and dm2s2_predict read them.
// Input: schema.json, training records and records to encode, as parts. The encoder fitted on the
// training records must survive its own data.json round trip.

#include "dm2s2/text/json_records.hpp"
#include "fuzz_support.hpp"

using namespace dm2s2;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto parts = fuzz::split_parts(data, size, 3);
    const auto dir = fuzz::scratch();
    const char* names[] = {"schema.json", "train.jsonl", "data.jsonl"};
    for (std::size_t i = 0; i < 3; ++i) fuzz::write_bytes(dir / names[i], i < parts.size() ? parts[i] : std::string_view());
    fuzz::refuses_cleanly([&] {
        const auto spec = read_data_spec(dir / names[0]);
        const auto train = read_json_lines(dir / names[1]);
        const auto encoder = record_encoder::fit(spec, train, &fuzz::bert_tokenizer(true));
        const auto saved = record_encoder::from_json(encoder.to_json(), "data.json", &fuzz::bert_tokenizer(true));
        if (saved.to_json() != encoder.to_json()) std::abort();
        fuzz::refuses_cleanly([&] { (void)encoder.encode_dataset<float>(train); });
        fuzz::refuses_cleanly([&] { (void)saved.encode_dataset<float>(read_json_lines(dir / names[2])); });
    });
    return 0;
}
