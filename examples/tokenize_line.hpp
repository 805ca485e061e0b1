#pragma once
// One input line of dm2s2_tokenize: a JSON string (or, with `pair`, an array of two strings) in, one
// JSON line of ids out. Shared by the tool and its fuzz target.

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <dm2s2/core/json.hpp>
#include <dm2s2/text/wordpiece.hpp>

namespace dm2s2::tools {

/// The output line (without its newline) for input line `line`; errors (dm2s2::input_error) start
/// with `where`.
inline std::string tokenize_line(const wordpiece_tokenizer& tokenizer, std::string_view line, bool pair, std::size_t max_length,
                                 const std::string& where)
{
    const nlohmann::json value = parse_json_text<input_error>(where + ": not JSON: ", line);
    try {
        if (pair) {
            if (!value.is_array() || value.size() != 2 || !value[0].is_string() || !value[1].is_string())
                throw input_error("expected an array of two strings");
            const auto e = tokenizer.encode_pair(value[0].get<std::string>(), value[1].get<std::string>(), max_length);
            return nlohmann::json{{"input_ids", e.ids}, {"token_type_ids", e.type_ids}}.dump();
        }
        if (!value.is_string()) throw input_error("expected a string");
        return nlohmann::json(tokenizer.encode(value.get<std::string>(), max_length).ids).dump();
    } catch (const error& e) {
        throw input_error(where + ": " + e.what());
    }
}

}  // namespace dm2s2::tools
