// Fuzz target: a HuggingFace BERT checkpoint directory, as `--init-bert` and dm2s2_hf_forward read it.
// Input parts: config.json, then model.safetensors (two parts), or model.safetensors.index.json and
// its shards, written as shard-1.safetensors, shard-2.safetensors, ... (more parts).

#include "fuzz_support.hpp"
#include "dm2s2/dm2s2.hpp"

using namespace dm2s2;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto parts = fuzz::split_parts(data, size, 5);
    const auto dir = fuzz::fresh_directory("hf");
    fuzz::write_bytes(dir / "config.json", parts[0]);
    if (parts.size() == 2) fuzz::write_bytes(dir / "model.safetensors", parts[1]);
    if (parts.size() > 2) {
        fuzz::write_bytes(dir / "model.safetensors.index.json", parts[1]);
        for (std::size_t i = 2; i < parts.size(); ++i)
            fuzz::write_bytes(dir / ("shard-" + std::to_string(i - 1) + ".safetensors"), parts[i]);
    }
    fuzz::refuses_cleanly([&] { (void)load_hf_bert<float>(dir); });
    return 0;
}
