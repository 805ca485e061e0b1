// Fuzz target: dm2s2_tokenize's input lines (a JSON string, or an array of two strings with --pair).
// Every output line must be JSON.

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "tokenize_line.hpp"

using namespace dm2s2;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    for (const bool pair : {false, true})
        for (const std::size_t max_length : {std::size_t{0}, std::size_t{8}})
            fuzz::refuses_cleanly([&] {
                const auto out = tools::tokenize_line(fuzz::bert_tokenizer(true), input, pair, max_length, "stdin line 1");
                if (!nlohmann::json::accept(out)) std::abort();
            });
    return 0;
}
