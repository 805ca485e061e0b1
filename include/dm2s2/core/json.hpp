#pragma once
/// \file
/// Strict reading of JSON values from files: a value is taken only when it is of the expected kind
/// and the C++ type holds it exactly (nlohmann_json's `get` converts 1e30 or -1 to an unsigned
/// integer without complaint, which is undefined behaviour or a wrapped value).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace dm2s2 {

/// The deepest nesting of arrays and objects the library's JSON readers accept. Every format it
/// reads nests a few levels; the limit keeps the recursive walks over a parsed value (comparison,
/// printing) within the stack.
inline constexpr int json_max_depth = 64;

/// Whether the JSON text `text` nests arrays and objects deeper than `limit` levels (brackets inside
/// strings do not count); linear in the text, whatever it holds.
inline bool json_nests_deeper_than(std::string_view text, int limit) noexcept
{
    // Most texts hold too few brackets to nest that deep at all: two vectorised counts decide.
    if (std::count(text.begin(), text.end(), '[') + std::count(text.begin(), text.end(), '{') <= limit) return false;
    int depth = 0;
    bool in_string = false, escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return true;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return false;
}

/// nlohmann_json's parse of `text` with the nesting limit, checked by a scan of the bytes first.
/// Malformed JSON throws Error(prefix + nlohmann's message); nesting past `json_max_depth` throws
/// Error(prefix + a message naming the limit).
template <class Error>
nlohmann::json parse_json_text(const std::string& prefix, std::string_view text)
{
    if (json_nests_deeper_than(text, json_max_depth))
        throw Error(prefix + "arrays and objects nested deeper than " + std::to_string(json_max_depth) + " levels (the limit)");
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(prefix + e.what());
    }
}

/// `v` as T, or nothing when it is not a JSON value of T's kind that T holds exactly: booleans for
/// bool, strings for std::string, integers in range for integral types (non-negative ones for
/// unsigned types), numbers within range for floating-point types.
template <class T>
std::optional<T> json_as(const nlohmann::json& v)
{
    if constexpr (std::is_same_v<T, bool>) {
        if (v.is_boolean()) return v.get<bool>();
    } else if constexpr (std::is_same_v<T, std::string>) {
        if (v.is_string()) return v.get<std::string>();
    } else if constexpr (std::is_floating_point_v<T>) {
        if (v.is_number()) {
            const double d = v.get<double>();
            if (d >= -static_cast<double>(std::numeric_limits<T>::max()) &&
                d <= static_cast<double>(std::numeric_limits<T>::max()))
                return static_cast<T>(d);
        }
    } else if constexpr (std::is_integral_v<T>) {
        if (v.is_number_unsigned()) {
            const std::uint64_t u = v.get<std::uint64_t>();
            if (u <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(u);
        } else if (v.is_number_integer() && std::is_signed_v<T>) {
            const std::int64_t i = v.get<std::int64_t>();
            if (i >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
                i <= static_cast<std::int64_t>(std::numeric_limits<T>::max()))
                return static_cast<T>(i);
        }
    } else {
        static_assert(std::is_same_v<T, bool>, "json_as: bool, std::string, integral or floating-point types only");
    }
    return std::nullopt;
}

/// What `json_as<T>` accepts, for error messages: "a non-negative integer", "a number", ...
template <class T>
constexpr std::string_view json_kind_name() noexcept
{
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_unsigned_v<T>) return "a non-negative integer";
    else return "an integer";
}

}  // namespace dm2s2
