// Fuzz target: schema.json, the description of a record's modalities and target that dm2s2_train reads.

#include "dm2s2/text/json_records.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const auto path = dm2s2::fuzz::scratch() / "schema.json";
    dm2s2::fuzz::write_bytes(path, {reinterpret_cast<const char*>(data), size});
    dm2s2::fuzz::refuses_cleanly([&] { (void)dm2s2::read_data_spec(path); });
    return 0;
}
