// Packing records into the encoder layout of docs/design.md §3, checked slot by slot, and the errors for
// records that cannot be packed.

#include <algorithm>
#include <span>
#include <vector>

#include "dm2s2/core/random.hpp"
#include "dm2s2/data/encoded_records.hpp"
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

/// `count` records of `three_modalities()` with random lengths (0 to beyond max_length) and values;
/// every third record has only its numbers.
std::vector<sequence_set> random_three_modality_records(std::size_t count, std::uint64_t seed)
{
    const auto s = three_modalities();
    random_generator rng(seed);
    std::vector<sequence_set> out;
    for (std::size_t r = 0; r < count; ++r) {
        sequence_set x(s);
        const auto length = [&](std::size_t max) { return static_cast<std::size_t>(rng.below(max + 1)); };
        std::vector<double> price(1 + length(3));
        for (auto& v : price) v = rng.normal(10, 3);
        x.set_numeric("price", price);
        if (r % 3 != 0) {
            std::vector<std::int64_t> text(length(6)), tags(length(7));
            for (auto& t : text) t = static_cast<std::int64_t>(1 + rng.below(199));
            for (auto& t : tags) t = static_cast<std::int64_t>(rng.below(4));
            std::vector<float> image(length(6) * 2);
            for (auto& v : image) v = static_cast<float>(rng.normal());
            x.set_tokens("text", text).set_dense("image", image).set_categorical("tags", tags);
        }
        out.push_back(std::move(x));
    }
    return out;
}

bool same_values(const auto& a, const auto& b)
{
    return std::ranges::equal(a, b);
}

/// A record type of a user's own: ids in one vector for every id modality, read through the concept.
struct user_record {
    std::size_t modalities = 4;
    std::vector<std::size_t> lengths;
    std::vector<std::vector<std::int64_t>> id_values;
    std::vector<std::vector<float>> dense_values;
    std::vector<std::vector<double>> number_values;

    std::size_t modality_count() const { return modalities; }
    std::size_t length(std::size_t m) const { return lengths[m]; }
    std::span<const std::int64_t> ids(std::size_t m) const { return id_values[m]; }
    std::span<const float> dense(std::size_t m) const { return dense_values[m]; }
    std::span<const double> numbers(std::size_t m) const { return number_values[m]; }
};

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

TEST_CASE("encoded records give back every record's values, and pack as the sequence_sets they came from")
{
    const auto s = three_modalities();
    const auto records = random_three_modality_records(300, 17);
    const encoded_records store(records);
    REQUIRE(store.size() == records.size());
    CHECK(store.schema() == s);
    CHECK(std::ranges::distance(store.begin(), store.end()) == 300);
    for (std::size_t i = 0; i < records.size(); ++i) {
        const record_view v = store[i];
        CHECK(v.index() == i);
        REQUIRE(v.modality_count() == 4);
        for (std::size_t m = 0; m < 4; ++m) {
            CHECK(v.length(m) == records[i].length(m));
            CHECK(v.present(m) == records[i].present(m));
            CHECK(same_values(v.ids(m), records[i].ids(m)));
            CHECK(same_values(v.dense(m), records[i].dense(m)));
            CHECK(same_values(v.numbers(m), records[i].numbers(m)));
        }
        const auto copy = store.to_sequence_set(i);
        for (std::size_t m = 0; m < 4; ++m) {
            CHECK(copy.length(m) == records[i].length(m));
            CHECK(same_values(copy.ids(m), records[i].ids(m)));
            CHECK(same_values(copy.dense(m), records[i].dense(m)));
            CHECK(same_values(copy.numbers(m), records[i].numbers(m)));
        }
    }
    for (const auto mode : {position_mode::global, position_mode::per_modality}) {
        const auto a = pack(s, records, options(mode));
        const auto b = pack(s, store, options(mode));
        CHECK(a.lengths == b.lengths);
        CHECK(a.mask == b.mask);
        CHECK(a.type_ids == b.type_ids);
        CHECK(a.position_ids == b.position_ids);
        CHECK(a.sources == b.sources);
        CHECK(a.modality == b.modality);
        CHECK(a.ids == b.ids);
        CHECK(a.numbers == b.numbers);
        CHECK(a.dense_rows == b.dense_rows);
        CHECK(a.dense_slots == b.dense_slots);
        REQUIRE(a.spans.size() == b.spans.size());
        for (std::size_t k = 0; k < a.spans.size(); ++k)
            CHECK((a.spans[k].begin == b.spans[k].begin && a.spans[k].length == b.spans[k].length));
    }
    // Views of some records, in another order, pack as those records do.
    std::vector<record_view> chosen;
    std::vector<sequence_set> same;
    for (std::size_t i = records.size(); i-- > 0;)
        if (i % 7 == 2) chosen.push_back(store.begin()[static_cast<std::ptrdiff_t>(i)]), same.push_back(records[i]);
    CHECK(pack(s, chosen, options()).ids == pack(s, same, options()).ids);
    for (std::size_t i = 0; i < records.size(); ++i) CHECK(packed_length(s, store[i]) == packed_length(s, records[i]));

    // The store holds the values and one offset per record and modality (plus one per column), no more
    // than twice over (the vectors' growth).
    std::size_t values = 0;
    for (const auto& r : records)
        for (std::size_t m = 0; m < 4; ++m) values += r.ids(m).size_bytes() + r.dense(m).size_bytes() + r.numbers(m).size_bytes();
    const std::size_t needed = values + (records.size() * 4 + 3) * sizeof(std::uint64_t);
    CHECK(store.allocated_bytes() >= needed);
    CHECK(store.allocated_bytes() <= 2 * needed + 4 * sizeof(std::size_t));
}

TEST_CASE("encoded records refuse a record that disagrees with their schema, keeping none of it")
{
    const auto s = three_modalities();
    encoded_records store(s);
    sequence_set good(s);
    good.set_tokens("text", {4, 5}).set_dense("image", {1, 2}).set_numeric("price", {3.0});
    store.push_back(good);

    sequence_set other(schema({{.name = "text", .kind = modality_kind::tokens}}));
    other.set_tokens("text", {1});
    CHECK_THROWS_WITH_AS(store.push_back(other), "record 1: its schema is not that of the records before it", shape_error);

    user_record r{.lengths = {2, 2, 0, 1},
                  .id_values = {{7, 8}, {}, {}, {}},
                  .dense_values = {{}, {1, 2, 3}, {}, {}},
                  .number_values = {{}, {}, {}, {4.0}}};
    CHECK_THROWS_WITH_AS(store.push_back(r), "record 1: modality 'image': 3 values for 2 rows of dim 2", shape_error);
    r.dense_values[1] = {1, 2, 3, 4};
    r.lengths[3] = 2;
    CHECK_THROWS_WITH_AS(store.push_back(r), "record 1: modality 'price': 1 numbers for a length of 2", shape_error);
    r.lengths[3] = 1;
    r.lengths[0] = 3;
    CHECK_THROWS_WITH_AS(store.push_back(r), "record 1: modality 'text': 2 ids for a length of 3", shape_error);
    r.modalities = 3;
    CHECK_THROWS_WITH_AS(store.push_back(r), "record 1: has 3 modalities, the schema 4", shape_error);
    REQUIRE(store.size() == 1);

    r.modalities = 4;
    r.lengths[0] = 1;  // a user's record may hold more ids than its length: only the first are kept
    store.push_back(r);
    REQUIRE(store.size() == 2);
    CHECK(same_values(store[0].ids(0), good.ids(0)));
    CHECK(same_values(store[0].dense(1), good.dense(1)));
    CHECK(same_values(store[0].numbers(3), good.numbers(3)));
    CHECK(same_values(store[1].ids(0), std::vector<std::int64_t>{7}));
    CHECK(store[1].length(1) == 2);
    CHECK(same_values(store[1].dense(1), std::vector<float>{1, 2, 3, 4}));
    CHECK(same_values(store[1].numbers(3), std::vector<double>{4.0}));
    CHECK_FALSE(store[1].present(2));
    CHECK(store[1].ids(1).empty());  // the columns a modality's kind does not use are empty

    CHECK_THROWS_WITH_AS(store.at(2), "record 2 of 2 encoded records does not exist", input_error);
    CHECK_THROWS_WITH_AS(store[1].length(4), "modality index 4 is outside the schema of 4 modalities", input_error);
    CHECK_THROWS_WITH_AS(store.to_sequence_set(5), "record 5 of 2 encoded records does not exist", input_error);
    const encoded_records none(std::vector<sequence_set>{});
    CHECK(none.empty());
    CHECK_THROWS_AS(none.front(), input_error);
}
