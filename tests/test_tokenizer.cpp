// The WordPiece tokenizer against HuggingFace's BertTokenizer/BertTokenizerFast outputs (ids, word
// pieces, offsets, pairs with truncation) for the cased and the uncased pipeline, and its errors.

#include <fstream>

#include <nlohmann/json.hpp>

#include "dm2s2/text/wordpiece.hpp"
#include "test_support.hpp"

using namespace dm2s2;

namespace {

std::filesystem::path vocab_file()
{
    return dm2s2::testing::bert_vocab();
}

const nlohmann::json& tokenizer_reference()
{
    static const nlohmann::json j = [] {
        std::ifstream in(dm2s2::testing::data_dir() / "tokenizer" / "tokenizer_a.json");
        return nlohmann::json::parse(in);
    }();
    return j;
}

const wordpiece_tokenizer& tokenizer(bool lower_case)
{
    static const auto uncased = wordpiece_tokenizer::from_file(vocab_file(), true);
    static const auto cased = wordpiece_tokenizer::from_file(vocab_file(), false);
    return lower_case ? uncased : cased;
}

}  // namespace

TEST_CASE("single texts give HuggingFace's ids, word pieces and offsets, cased and uncased")
{
    std::size_t cases = 0;
    for (const nlohmann::json& c : tokenizer_reference()["cases"]) {
        if (!c.contains("text")) continue;
        const std::string text = c["text"].get<std::string>();
        const bool lower = c["do_lower_case"].get<bool>();
        CAPTURE(text);
        CAPTURE(lower);
        const auto& t = tokenizer(lower);
        const auto e = t.encode(text);
        CHECK(e.ids == c["ids_fast"].get<std::vector<std::int64_t>>());
        CHECK(e.ids == c["ids_slow"].get<std::vector<std::int64_t>>());
        CHECK(e.offsets == c["offsets_fast"].get<std::vector<std::pair<std::size_t, std::size_t>>>());
        std::vector<std::string> pieces;
        for (const auto id : e.ids) pieces.push_back(t.token(id));
        CHECK(pieces == c["tokens_fast"].get<std::vector<std::string>>());
        CHECK(std::all_of(e.type_ids.begin(), e.type_ids.end(), [](auto v) { return v == 0; }));
        ++cases;
    }
    CHECK(cases == 58);
}

TEST_CASE("pairs give HuggingFace's ids and token types with longest_first truncation")
{
    std::size_t cases = 0;
    for (const nlohmann::json& c : tokenizer_reference()["cases"]) {
        if (!c.contains("pair")) continue;
        const std::string first = c["pair"][0].get<std::string>(), second = c["pair"][1].get<std::string>();
        CAPTURE(first);
        CAPTURE(second);
        const auto e = tokenizer(c["do_lower_case"].get<bool>()).encode_pair(first, second, c["max_length"].get<std::size_t>());
        CHECK(e.ids == c["ids_fast"].get<std::vector<std::int64_t>>());
        CHECK(e.type_ids == c["token_type_ids"].get<std::vector<std::int64_t>>());
        ++cases;
    }
    CHECK(cases == 12);
}

TEST_CASE("truncation keeps the room for the special tokens and shares it as HuggingFace does")
{
    const wordpiece_tokenizer t({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"}, true);
    CHECK(t.encode("a a a a", 4).ids == std::vector<std::int64_t>{2, 4, 4, 3});
    // Shorter side keeps what it has when it fits in half the room; the longer gets the rest.
    CHECK(t.encode_pair("a", "b b b b b b", 6).ids == std::vector<std::int64_t>{2, 4, 3, 5, 5, 3});
    // Both long: the first gets floor(room / 2), the second the rest.
    CHECK(t.encode_pair("a a a a a", "b b b b b", 8).ids == std::vector<std::int64_t>{2, 4, 4, 3, 5, 5, 5, 3});
    CHECK(t.encode_pair("a a a a a", "b b b", 8).ids == std::vector<std::int64_t>{2, 4, 4, 4, 3, 5, 5, 3});
}

TEST_CASE("the vocabulary loads with BERT's special ids, and bad input is refused clearly")
{
    CHECK(tokenizer(true).vocab_size() == 30522);
    CHECK(tokenizer(true).cls_id() == 101);
    CHECK(tokenizer(true).sep_id() == 102);
    CHECK(tokenizer(true).unk_id() == 100);
    CHECK_THROWS_WITH_AS(tokenizer(true).encode("ok \xff\xfe bad"), "text: invalid UTF-8 at byte 3", input_error);
    CHECK_THROWS_WITH_AS(wordpiece_tokenizer({"[PAD]", "[CLS]", "[SEP]"}, true, "v.txt"), "v.txt: no [UNK] token", format_error);
    CHECK_THROWS_WITH_AS(wordpiece_tokenizer::from_file("/nonexistent/vocab.txt", true),
                         "/nonexistent/vocab.txt: cannot open the vocabulary", error);
    CHECK_THROWS_AS(tokenizer(true).token(30522), input_error);
}
