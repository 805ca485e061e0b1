// Fuzz target: a safetensors file (header and data), read as the library reads model files; every
// tensor it accepts is read in each dtype family and written back, and the copy must read the same.

#include <cstring>

#include "dm2s2/io/safetensors.hpp"
#include "fuzz_support.hpp"

using namespace dm2s2;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::vector<std::byte> bytes(size);
    if (size != 0) std::memcpy(bytes.data(), data, size);
    fuzz::refuses_cleanly([&] {
        const auto file = safetensors_file::parse(std::move(bytes), "fuzz.safetensors");
        safetensors_writer copy;
        for (const auto& [key, value] : file.metadata()) copy.set_metadata(key, value);
        for (const auto& e : file.entries()) {
            fuzz::refuses_cleanly([&] { copy.add(e.name, file.read<double>(e.name)); });
            fuzz::refuses_cleanly([&] { (void)file.read<float>(e.name); });
            fuzz::refuses_cleanly([&] { (void)file.read_integers(e.name); });
        }
        const auto again = safetensors_file::parse(copy.serialize(), "copy.safetensors");
        if (again.metadata() != file.metadata()) std::abort();
    });
    return 0;
}
