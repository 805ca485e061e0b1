// safetensors: round trips for every dtype, half/bfloat16 conversions, atomic writes, and a table of
// malformed files that must each be rejected with a message naming the file and the defect.

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "dm2s2/io/safetensors.hpp"
#include "test_support.hpp"

using namespace dm2s2;

namespace {

std::vector<std::byte> make_file(const std::string& header, std::size_t data_bytes, std::uint64_t declared_size)
{
    std::vector<std::byte> bytes(8 + header.size() + data_bytes, std::byte{0});
    std::memcpy(bytes.data(), &declared_size, 8);
    std::memcpy(bytes.data() + 8, header.data(), header.size());
    return bytes;
}

std::vector<std::byte> make_file(const std::string& header, std::size_t data_bytes)
{
    return make_file(header, data_bytes, header.size());
}

}  // namespace

TEST_CASE("float tensors round-trip through every floating-point dtype")
{
    // Values exactly representable in every dtype, plus each format's special values.
    tensor<double> t({2, 3});
    const double values[] = {0.0, -1.5, 3.25, 1024.0, -0.0078125, 49152.0};
    for (std::size_t i = 0; i < 6; ++i) t[i] = values[i];
    safetensors_writer w;
    for (auto type : {dtype::f64, dtype::f32, dtype::f16, dtype::bf16}) w.add("t_" + std::string(dtype_name(type)), t, type);
    w.set_metadata("format", "pt");
    const auto file = safetensors_file::parse(w.serialize(), "memory");
    CHECK(file.metadata().at("format") == "pt");
    for (auto type : {dtype::f64, dtype::f32, dtype::f16, dtype::bf16}) {
        const std::string name = "t_" + std::string(dtype_name(type));
        CAPTURE(name);
        CHECK(file.entry(name).type == type);
        const auto d = file.read<double>(name);
        const auto f = file.read<float>(name);
        CHECK(d.shape() == shape_t{2, 3});
        for (std::size_t i = 0; i < 6; ++i) {
            CHECK(d[i] == values[i]);
            CHECK(f[i] == static_cast<float>(values[i]));
        }
    }
}

TEST_CASE("integer tensors round-trip through every integer dtype and reject values that do not fit")
{
    tensor<std::int64_t> t({4});
    t[0] = 0, t[1] = 1, t[2] = 100, t[3] = 7;
    safetensors_writer w;
    for (auto type : {dtype::i64, dtype::i32, dtype::i16, dtype::i8, dtype::u64, dtype::u32, dtype::u16, dtype::u8})
        w.add(std::string(dtype_name(type)), t, type);
    tensor<std::int64_t> flags({2});
    flags[1] = 1;
    w.add("BOOL", flags, dtype::boolean);
    const auto file = safetensors_file::parse(w.serialize(), "memory");
    for (auto type : {dtype::i64, dtype::i32, dtype::i16, dtype::i8, dtype::u64, dtype::u32, dtype::u16, dtype::u8}) {
        const auto back = file.read_integers(std::string(dtype_name(type)));
        CHECK(std::vector<std::int64_t>(back.values().begin(), back.values().end()) == std::vector<std::int64_t>{0, 1, 100, 7});
    }
    CHECK(file.read_integers("BOOL")[1] == 1);
    CHECK_THROWS_WITH_AS(file.read<float>("I64"), doctest::Contains("expected a floating-point dtype"), format_error);

    safetensors_writer narrow;
    tensor<std::int64_t> big({1});
    big[0] = 300;
    CHECK_THROWS_WITH_AS(narrow.add("x", big, dtype::i8), doctest::Contains("does not fit I8"), error);
    big[0] = -1;
    CHECK_THROWS_AS(narrow.add("x", big, dtype::u32), error);
}

TEST_CASE("half and bfloat16 conversions round to nearest even and keep special values")
{
    CHECK(half_to_float(float_to_half(1.0f)) == 1.0f);
    CHECK(float_to_half(65504.0f) == 0x7bff);
    CHECK(float_to_half(65520.0f) == 0x7c00);                      // rounds to infinity
    CHECK(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);         // smallest subnormal
    CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);         // tie to even (zero)
    CHECK(float_to_half(std::ldexp(3.0f, -25)) == 0x0002);         // tie to even (two)
    CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie between 1 and 1+2^-10 → 1
    CHECK(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
    CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));
    CHECK(std::isinf(half_to_float(0xfc00)));
    CHECK(std::isnan(half_to_float(float_to_half(std::numeric_limits<float>::quiet_NaN()))));
    for (std::uint32_t h = 0; h < 0x7c00; ++h) REQUIRE(float_to_half(half_to_float(static_cast<std::uint16_t>(h))) == h);
    CHECK(float_to_bf16(1.0f) == 0x3f80);
    CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);  // tie → even
    CHECK(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
    CHECK(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("writes are atomic and leave no temporary file")
{
    const auto dir = dm2s2::testing::scratch_dir("atomic");
    const auto path = dir / "x.safetensors";
    tensor<float> a({2}, 1.0f), b({3}, 2.0f);
    safetensors_writer first, second;
    first.add("a", a);
    second.add("b", b);
    first.write(path);
    second.write(path);
    const auto file = safetensors_file::load(path);
    CHECK_FALSE(file.contains("a"));
    CHECK(file.read<float>("b")[2] == 2.0f);
    CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()) == 1);
    CHECK_THROWS_AS(first.write(dir / "no_such_dir" / "y.safetensors"), error);
    CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()) == 1);
    CHECK_THROWS_WITH_AS(safetensors_file::load(dir / "missing.safetensors"), doctest::Contains("missing.safetensors"), error);
}

TEST_CASE("malformed files are rejected with a message naming the file and the defect")
{
    const std::string good = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    REQUIRE_NOTHROW(safetensors_file::parse(make_file(good, 8), "ok"));

    struct bad_case {
        const char* what;
        std::vector<std::byte> bytes;
        const char* message;
    };
    const bad_case cases[] = {
        {"shorter than the length prefix", std::vector<std::byte>(5), "truncated"},
        {"header longer than the file", make_file(good, 8, good.size() + 100), "truncated"},
        {"truncated data", make_file(good, 4), "past the data section"},
        {"oversized header length", make_file(good, 8, 200'000'000), "exceeds the limit"},
        {"bad JSON", make_file(R"({"a":{"dtype":"F32",)", 0), "not valid JSON"},
        {"header not an object", make_file("[1,2]", 0), "not a JSON object"},
        {"header nested too deep", make_file(R"({"__metadata__":)" + std::string(70, '[') + std::string(70, ']') + "}", 0),
         "deeper than 64 levels (the limit)"},
        {"unknown dtype", make_file(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype 'F33'"},
        {"missing field", make_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), "missing field 'shape'"},
        {"negative extent", make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative integer"},
        {"shape/size mismatch", make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12 bytes"},
        {"shape overflow", make_file(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
         "overflows"},
        {"offsets out of range", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8),
         "past the data section"},
        {"offsets reversed", make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8), "begin 8 > end 0"},
        {"offsets overlapping",
         make_file(
             R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
         "overlap"},
        {"gap between tensors",
         make_file(
             R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
             12),
         "gap"},
        {"trailing bytes", make_file(good, 12), "trailing bytes"},
        {"duplicate key",
         make_file(
             R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
         "duplicate tensor name 'a'"},
        {"metadata not strings", make_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        CHECK_THROWS_WITH_AS(safetensors_file::parse(c.bytes, "bad.safetensors"), doctest::Contains("bad.safetensors: "),
                             format_error);
        CHECK_THROWS_WITH_AS(safetensors_file::parse(c.bytes, "bad.safetensors"), doctest::Contains(c.message), format_error);
    }
}

TEST_CASE("the writer rejects duplicate and reserved names")
{
    safetensors_writer w;
    w.add("x", tensor<float>({1}));
    CHECK_THROWS_WITH_AS(w.add("x", tensor<float>({1})), doctest::Contains("duplicate"), error);
    CHECK_THROWS_AS(w.add("__metadata__", tensor<float>({1})), error);
    CHECK_THROWS_AS(w.add("y", tensor<float>({1}), dtype::i32), error);
}
