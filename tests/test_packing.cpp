// Packing records into the encoder layout of docs/design.md §3, checked slot by slot, and the errors for
// records that cannot be packed.

#include <vector>

#include "dm2s2/data/packing.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "test_support.hpp"

using namespace dm2s2;

namespace {

schema three_modalities()
{
    return schema({{.name = "text", .kind = modality_kind::tokens, .max_length = 3},
                   {.name = "image", .kind = modality_kind::dense, .max_length = 4, .dim = 2},
                   {.name = "tags", .kind = modality_kind::categorical, .max_length = 5, .categories = 4},
                   {.name = "price", .kind = modality_kind::numeric, .max_length = 2, .mean = 10, .stddev = 2}});
}

packing_options options(position_mode mode = position_mode::global)
{
    return {.positions = mode, .vocab_size = 200, .max_positions = 32, .cls_id = 101, .sep_id = 102, .pad_id = 0};
}

std::vector<std::int64_t> row(const std::vector<std::int64_t>& v, const packed_batch& p, std::size_t b)
{
    return {v.begin() + static_cast<std::ptrdiff_t>(b * p.layout.length),
            v.begin() + static_cast<std::ptrdiff_t>((b + 1) * p.layout.length)};
}

}  // namespace

TEST_CASE("records pack to [CLS] x(m)… [SEP] … with types, positions, mask and spans")
{
    const auto s = three_modalities();
    sequence_set a(s), b(s);
    a.set_tokens("text", {5, 6, 7, 8}).set_dense("image", {1, 2, 3, 4}).set_numeric("price", {12.0});  // text truncated to 3
    b.set_categorical("tags", {3, 0});
    const auto p = pack(s, std::vector{a, b}, options());

    CHECK(p.layout.batch == 2);
    CHECK(p.layout.length == 10);  // 1 + (3+1) + (2+1) + (1+1)
    CHECK(p.lengths == std::vector<std::size_t>{10, 4});
    CHECK(row(p.ids, p, 0) == std::vector<std::int64_t>{101, 5, 6, 7, 102, 0, 0, 102, 0, 102});
    CHECK(row(p.type_ids, p, 0) == std::vector<std::int64_t>{0, 0, 0, 0, 0, 1, 1, 1, 3, 3});
    CHECK(row(p.position_ids, p, 0) == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(row(p.ids, p, 1) == std::vector<std::int64_t>{101, 3, 0, 102, 0, 0, 0, 0, 0, 0});
    CHECK(row(p.type_ids, p, 1) == std::vector<std::int64_t>{0, 2, 2, 2, 0, 0, 0, 0, 0, 0});
    CHECK(std::vector<std::uint8_t>(p.mask.begin() + 10, p.mask.end()) ==
          std::vector<std::uint8_t>{1, 1, 1, 1, 0, 0, 0, 0, 0, 0});
    CHECK(p.sources[5] == element_source::dense);
    CHECK(p.sources[8] == element_source::numeric);
    CHECK(p.numbers[8] == doctest::Approx(1.0));  // (12 - 10) / 2
    CHECK(p.sources[11] == element_source::categorical);
    CHECK(p.sources[4] == element_source::special);
    CHECK(p.sources[14] == element_source::padding);
    CHECK(p.dense_rows[1] == std::vector<float>{1, 2, 3, 4});
    CHECK(p.dense_slots[1] == std::vector<std::size_t>{5, 6});
    CHECK(p.span(0, 0).begin == 1);
    CHECK(p.span(0, 0).length == 3);
    CHECK(p.span(0, 1).begin == 5);
    CHECK(p.span(0, 2).length == 0);
    CHECK(p.span(0, 3).begin == 8);
    CHECK(p.span(1, 2).begin == 1);
    CHECK(p.span(1, 2).length == 2);
}

TEST_CASE("per-modality positions restart in every modality")
{
    const auto s = three_modalities();
    sequence_set a(s);
    a.set_tokens("text", {5, 6}).set_categorical("tags", {1, 2, 3}).set_numeric("price", {1.0});
    const auto p = pack(s, std::vector{a}, options(position_mode::per_modality));
    CHECK(p.position_ids == std::vector<std::int64_t>{0, 1, 2, 3, 1, 2, 3, 4, 1, 2});
    CHECK(p.type_ids == std::vector<std::int64_t>{0, 0, 0, 0, 2, 2, 2, 2, 3, 3});
}

TEST_CASE("records that cannot be packed are rejected naming the sample and modality")
{
    const auto s = three_modalities();
    sequence_set empty(s), ok(s), bad_id(s), bad_category(s);
    ok.set_tokens("text", {1});
    CHECK_THROWS_WITH_AS(pack(s, std::vector{ok, empty}, options()), "sample 1: has no present modality", input_error);
    bad_id.set_tokens("text", {1, 200});
    CHECK_THROWS_WITH_AS(pack(s, std::vector{bad_id}, options()),
                         "sample 0: modality 'text': id 200 at element 1 is outside [0, 200)", input_error);
    bad_category.set_categorical("tags", {4});
    CHECK_THROWS_WITH_AS(pack(s, std::vector{ok, bad_category}, options()), doctest::Contains("sample 1: modality 'tags'"),
                         input_error);
    CHECK_THROWS_AS(pack(s, std::vector<sequence_set>{}, options()), input_error);

    auto small = options();
    small.max_positions = 4;
    sequence_set longer(s);
    longer.set_tokens("text", {1, 2}).set_numeric("price", {1.0});  // 6 slots, positions up to 5
    CHECK_THROWS_WITH_AS(pack(s, std::vector{longer}, small), doctest::Contains("exceeds max_position_embeddings"), input_error);
    small.positions = position_mode::per_modality;  // positions up to 3 only
    CHECK_NOTHROW(pack(s, std::vector{longer}, small));

    CHECK_THROWS_WITH_AS(ok.set_dense("image", {1, 2, 3}), doctest::Contains("not a whole number of rows"), shape_error);
    CHECK_THROWS_WITH_AS(ok.set_dense("image", {1, NAN}), doctest::Contains("modality 'image': row 0 column 1 is not finite"),
                         input_error);
    CHECK_THROWS_WITH_AS(ok.set_numeric("price", {INFINITY}), doctest::Contains("not finite"), input_error);
    CHECK_THROWS_WITH_AS(ok.set_tokens("image", {1}), doctest::Contains("is a dense modality"), input_error);
    CHECK_THROWS_WITH_AS(ok.set_tokens("text", {-1}), doctest::Contains("negative"), input_error);
    CHECK_THROWS_WITH_AS(ok.set_tokens("title", {1}), "schema has no modality named 'title'", input_error);
}

TEST_CASE("numeric nulls are dropped and an all-null or empty sequence is missing")
{
    const auto s = three_modalities();
    sequence_set a(s);
    a.set_numeric_with_nulls("price", {std::nullopt, 4.0, std::nullopt});
    CHECK(a.length(3) == 1);
    a.set_numeric_with_nulls("price", {std::nullopt});
    CHECK_FALSE(a.present(3));
    a.set_tokens("text", {});
    CHECK_FALSE(a.present(0));
}

TEST_CASE("schemas reject unusable modality definitions")
{
    CHECK_THROWS_AS(schema({{.name = "a"}, {.name = "a"}}), config_error);
    CHECK_THROWS_AS(schema({{.name = "a b"}}), config_error);
    CHECK_THROWS_AS(schema({{.name = "x", .kind = modality_kind::dense}}), config_error);
    CHECK_THROWS_AS(schema({{.name = "x", .kind = modality_kind::categorical}}), config_error);
    CHECK_THROWS_AS(schema({{.name = "x", .kind = modality_kind::numeric, .stddev = 0}}), config_error);
}
