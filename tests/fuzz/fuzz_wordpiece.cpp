// Fuzz target: the WordPiece tokenizer on arbitrary bytes (invalid UTF-8 included), single texts and
// pairs, cased and uncased, with and without truncation. Every id must be in the vocabulary, the
// truncated length respected and the offsets inside the text.

#include "dm2s2/text/wordpiece.hpp"
#include "fuzz_support.hpp"

using namespace dm2s2;

namespace {
void check(const encoding& e, const wordpiece_tokenizer& t, std::size_t max_length)
{
    if (e.ids.size() != e.type_ids.size() || e.ids.size() != e.offsets.size()) std::abort();
    if (max_length != 0 && e.ids.size() > max_length) std::abort();
    for (const auto id : e.ids)
        if (id < 0 || static_cast<std::size_t>(id) >= t.vocab_size()) std::abort();
    for (const auto& [begin, end] : e.offsets)
        if (begin > end) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0) return 0;
    // The first byte picks the casing and a length limit (0: none; else 3 to 129).
    const auto& t = fuzz::bert_tokenizer((data[0] & 1) == 0);
    const std::size_t max_length = (data[0] >> 1) == 0 ? 0 : 2 + (data[0] >> 1);
    const auto parts = fuzz::split_parts(data + 1, size - 1, 2);
    fuzz::refuses_cleanly([&] { check(t.encode(parts[0], max_length), t, max_length); });
    if (parts.size() == 2) fuzz::refuses_cleanly([&] { check(t.encode_pair(parts[0], parts[1], max_length), t, max_length); });
    return 0;
}
