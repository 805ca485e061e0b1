// A downstream program of dm2s2::text: WordPiece over a small in-memory vocabulary.
#include <dm2s2/text/wordpiece.hpp>

#include <iostream>

int main()
{
    const dm2s2::wordpiece_tokenizer tokenizer({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "cafe", "un", "##aff", "##able", "!"}, true);
    const auto e = tokenizer.encode("Café unaffable!");
    const std::vector<std::int64_t> expected{2, 4, 5, 6, 7, 8, 3};
    const bool ok = e.ids == expected;
    std::cout << "text consumer:" << (ok ? " ok" : " FAILED") << "\n";
    return ok ? 0 : 1;
}
