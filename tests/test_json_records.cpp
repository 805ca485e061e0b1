// The tools' data format: schema.json and JSON Lines records into sequence sets and targets, what is
// learned from the training file, its round trip, and errors that name the file, line and field.

#include <fstream>

#include "dm2s2/text/json_records.hpp"
#include "test_support.hpp"

using namespace dm2s2;
namespace fs = std::filesystem;

namespace {

const wordpiece_tokenizer& small_vocabulary()
{
    static const wordpiece_tokenizer t({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "film", "bad", "##s", "!"}, true);
    return t;
}

nlohmann::json film_schema(const std::string& task = "multiclass")
{
    return nlohmann::json::parse(R"({"modalities": [
        {"name": "title", "kind": "text", "max_length": 8},
        {"name": "poster", "kind": "dense", "max_length": 4, "dim": 2},
        {"name": "genre_tags", "kind": "categorical", "max_length": 3},
        {"name": "year", "kind": "numeric", "max_length": 1},
        {"name": "codes", "kind": "tokens", "max_length": 4}],
      "task": {"type": ")" + task +
                                 R"(", "target": "label"}})");
}

/// Writes `lines` as a JSON Lines file and reads it back.
std::vector<json_record> records(const std::string& name, const std::vector<std::string>& lines)
{
    const auto path = fs::path(DM2S2_TEST_SCRATCH_DIR) / "json_records" / name;
    fs::create_directories(path.parent_path());
    std::ofstream out(path);
    for (const auto& l : lines) out << l << '\n';
    out.close();
    return read_json_lines(path);
}

const std::vector<std::string> train_lines = {
    R"({"id": "a", "title": "Good films!", "poster": [[1, 2], [3, 4]], "genre_tags": ["drama", "war"], "year": 1990, "label": "drama"})",
    R"({"id": 7, "title": "bad film", "genre_tags": "comedy", "year": [2000, null], "label": "comedy"})", "",
    R"({"title": null, "poster": [], "year": 2010, "codes": [5, 6], "label": "drama"})"};

}  // namespace

TEST_CASE("the training file sets category tables, numeric statistics and labels; records encode as written")
{
    const auto train = records("train.jsonl", train_lines);
    REQUIRE(train.size() == 3);
    CHECK(train[2].where.ends_with("train.jsonl:4"));  // blank lines are skipped but counted
    const auto e = record_encoder::fit(parse_data_spec(film_schema(), "schema.json"), train, &small_vocabulary());
    CHECK(e.task().labels == std::vector<std::string>{"comedy", "drama"});
    CHECK(e.num_outputs() == 2);
    const auto& s = e.schema();
    CHECK(s[2].categories == 4);  // unknown, drama, war, comedy
    CHECK(s[3].mean == doctest::Approx(2000));
    CHECK(s[3].stddev == doctest::Approx(std::sqrt(200.0 / 3.0)));  // population deviation of 1990, 2000, 2010
    CHECK(record_encoder::id_of(train[0]) == "a");
    CHECK(record_encoder::id_of(train[1]) == "7");
    CHECK(record_encoder::id_of(train[2]).ends_with(":4"));

    const auto x = e.encode(train[0]);
    CHECK(std::vector<std::int64_t>(x.ids(0).begin(), x.ids(0).end()) == std::vector<std::int64_t>{4, 5, 7, 8});
    CHECK(e.element_strings(x, 0, 4) == std::vector<std::string>{"good", "film", "##s", "!"});
    CHECK(std::vector<float>(x.dense(1).begin(), x.dense(1).end()) == std::vector<float>{1, 2, 3, 4});
    CHECK(e.element_strings(x, 2, 2) == std::vector<std::string>{"drama", "war"});
    CHECK(!x.present(4));
    const auto y = e.encode(train[1]);  // null numbers are dropped; absent fields are missing
    CHECK(y.length(3) == 1);
    CHECK(!y.present(1));
    const auto z = e.encode(train[2]);  // null and empty are missing too
    CHECK(!z.present(0));
    CHECK(!z.present(1));
    CHECK(e.element_strings(z, 4, 2) == std::vector<std::string>{"film", "bad"});  // token ids 5, 6

    const auto data = e.encode_dataset<float>(train);
    CHECK(data.targets.shape() == shape_t{3});
    CHECK(std::vector<float>(data.targets.values().begin(), data.targets.values().end()) == std::vector<float>{1, 0, 1});

    // Saved and restored, the encoder gives the same records.
    const auto restored = record_encoder::from_json(e.to_json(), "data.json", &small_vocabulary());
    CHECK(restored.schema() == e.schema());
    CHECK(restored.task().labels == e.task().labels);
    const auto unseen = records("unseen.jsonl", {R"({"genre_tags": ["war", "western"], "label": "drama"})"});
    const auto w = restored.encode(unseen[0]);
    CHECK(e.element_strings(w, 2, 2) == std::vector<std::string>{"war", "[UNK]"});
}

TEST_CASE("targets of every task type")
{
    const auto binary = records("binary.jsonl", {R"({"year": 1, "label": true})", R"({"year": 2, "label": 0})"});
    auto e = record_encoder::fit(parse_data_spec(film_schema("binary"), "s"), binary, &small_vocabulary());
    CHECK(e.num_outputs() == 1);
    const auto b = e.encode_dataset<double>(binary);
    CHECK(b.targets.shape() == shape_t{2, 1});
    CHECK(b.targets[0] == 1.0);
    CHECK(b.targets[1] == 0.0);

    const auto spam = records("spam.jsonl", {R"({"year": 1, "label": "spam"})", R"({"year": 2, "label": "ham"})"});
    e = record_encoder::fit(parse_data_spec(film_schema("binary"), "s"), spam, &small_vocabulary());
    CHECK(e.task().labels == std::vector<std::string>{"ham", "spam"});  // the second is the positive class
    CHECK(e.encode_dataset<double>(spam).targets[0] == 1.0);

    const auto multi = records("multi.jsonl", {R"({"year": 1, "label": ["b", "a"]})", R"({"year": 2, "label": []})"});
    e = record_encoder::fit(parse_data_spec(film_schema("multilabel"), "s"), multi, &small_vocabulary());
    const auto m = e.encode_dataset<float>(multi);
    CHECK(m.targets.shape() == shape_t{2, 2});
    CHECK(std::vector<float>(m.targets.values().begin(), m.targets.values().end()) == std::vector<float>{1, 1, 0, 0});

    const auto reg = records("reg.jsonl", {R"({"year": 1, "label": 2.5})"});
    e = record_encoder::fit(parse_data_spec(film_schema("regression"), "s"), reg, &small_vocabulary());
    CHECK(e.encode_dataset<float>(reg).targets[0] == 2.5f);
    // A target beyond float's range is refused when fitting and when encoding.
    const auto huge = records("huge.jsonl", {R"({"year": 1, "label": 2.5})", R"({"year": 2, "label": -1e300})"});
    CHECK_THROWS_WITH_AS(record_encoder::fit(parse_data_spec(film_schema("regression"), "s"), huge, &small_vocabulary()),
                         doctest::Contains("huge.jsonl:2: target 'label': -1e+300 is beyond float's range"), input_error);
    CHECK_THROWS_WITH_AS(e.encode_dataset<double>(huge),
                         doctest::Contains("huge.jsonl:2: target 'label': -1e+300 is beyond float's range"), input_error);
}

TEST_CASE("bad schemas and records are refused, naming the file, line and field")
{
    auto bad = film_schema();
    bad["modalities"][1].erase("dim");
    CHECK_THROWS_WITH_AS(parse_data_spec(bad, "schema.json"),
                         "schema.json: modalities[1] ('poster'): a dense modality needs 'dim'", format_error);
    bad = film_schema();
    bad["modalities"][0]["kind"] = "image";
    CHECK_THROWS_WITH_AS(parse_data_spec(bad, "schema.json"), "schema.json: modalities[0] ('title'): unknown kind 'image'",
                         format_error);
    bad = film_schema("ranking");
    CHECK_THROWS_WITH_AS(parse_data_spec(bad, "s.json"), doctest::Contains("task.type must be"), format_error);
    CHECK_THROWS_WITH_AS(record_encoder::fit(parse_data_spec(film_schema(), "s"), records("ok.jsonl", train_lines), nullptr),
                         doctest::Contains("modality 'title' is text: a WordPiece vocabulary is needed"), config_error);

    const auto spec = parse_data_spec(film_schema(), "s");
    const auto fails = [&](const std::string& line, const std::string& message) {
        CAPTURE(line);
        const auto file = records("bad.jsonl", {train_lines[0], line});
        CHECK_THROWS_WITH_AS(record_encoder::fit(spec, file, &small_vocabulary()).encode(file[1]),
                             doctest::Contains(("bad.jsonl:2: " + message).c_str()), input_error);
    };
    fails(R"({"title": 5, "label": "drama"})", "field 'title': a text modality cannot hold number");
    fails(R"({"poster": [[1, 2, 3]], "label": "drama"})", "field 'poster': row 0 must be an array of 2 numbers");
    fails(R"({"genre_tags": [1], "label": "drama"})", "field 'genre_tags': categorical values must be strings");
    fails(R"({"year": ["x"], "label": "drama"})", "field 'year': numeric values must be numbers or null");
    fails(R"({"codes": [1.5], "label": "drama"})", "field 'codes': token ids must be integers");
    // Numbers beyond float's range, which would become infinities (JSON has no NaN or infinity).
    fails(R"({"poster": [[1, 2], [3, -4e38]], "label": "drama"})", "field 'poster': row 1: -4e+38 is beyond float's range");
    fails(R"({"year": 1e39, "label": "drama"})", "field 'year': 1e+39 is beyond float's range");
    fails(R"({"year": [1, null, 5e200], "label": "drama"})", "field 'year': 5e+200 is beyond float's range");
    // A number within float's range that standardising takes beyond it: training years 0 and 1e-30
    // have a standard deviation of 5e-31.
    const auto tiny = records("tiny.jsonl", {R"({"year": 0, "label": "drama"})", R"({"year": 1e-30, "label": "war"})",
                                             R"({"year": 1e10, "label": "war"})"});
    const auto tiny_encoder = record_encoder::fit(spec, {tiny[0], tiny[1]}, &small_vocabulary());
    CHECK_THROWS_WITH_AS(tiny_encoder.encode(tiny[2]),
                         doctest::Contains("tiny.jsonl:3: field 'year': 10000000000.0 standardised with the training data's "
                                           "mean and standard deviation is "),
                         input_error);
    CHECK_THROWS_WITH_AS(tiny_encoder.encode(tiny[2]), doctest::Contains("e+40, beyond float's range (±3.4e38)"), input_error);
    fails(R"({"year": 3})", "target 'label': missing (every training record needs one)");
    fails(R"({"year": 3, "label": ["drama"]})", "target 'label': must be a label string");
    fails(R"({"poster": null, "label": "drama"})", "no modality is present");
    CHECK_THROWS_WITH_AS(records("json.jsonl", {train_lines[0], "{\"title\": "}),
                         doctest::Contains("json.jsonl:2: not valid JSON"), input_error);
    CHECK_THROWS_WITH_AS(records("deep.jsonl", {R"({"title": )" + std::string(100, '[') + std::string(100, ']') + "}"}),
                         doctest::Contains("deep.jsonl:1: not valid JSON: arrays and objects nested deeper than 64 levels"),
                         input_error);
    // A line past the limit is refused before it is all in memory; the lines before it are read.
    CHECK_THROWS_WITH_AS(
        records("long.jsonl", {train_lines[0], "{\"title\": \"" + std::string(json_lines_reader::max_line_bytes, 'x')}),
        doctest::Contains("long.jsonl:2: longer than 64 MiB (the limit for one record)"), input_error);
    CHECK(records("crlf.jsonl", {train_lines[0] + "\r", "", train_lines[1] + "\r"}).size() == 2);
    CHECK(records("crlf.jsonl", {train_lines[0] + "\r", "", train_lines[1] + "\r"})[1].where ==
          (fs::path(DM2S2_TEST_SCRATCH_DIR) / "json_records" / "crlf.jsonl").string() + ":3");
    CHECK_THROWS_WITH_AS(records("array.jsonl", {"[1, 2]"}), doctest::Contains("array.jsonl:1: a record must be a JSON object"),
                         input_error);
    const auto e = record_encoder::fit(spec, records("ok.jsonl", train_lines), &small_vocabulary());
    CHECK_THROWS_WITH_AS(e.encode_dataset<float>(records("unknown.jsonl", {R"({"year": 1, "label": "horror"})"})),
                         doctest::Contains("unknown.jsonl:1: target 'label': unknown label 'horror'"), input_error);
}
