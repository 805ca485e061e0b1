#pragma once
// What the fuzz targets share: the input cut into files, written into a scratch directory of the
// process, and the rule every target checks. A reader given hostile bytes either succeeds or throws
// dm2s2::error (whose message names the file and field); any other exception, a crash, a sanitizer
// report, a leak or a hang is a finding. libFuzzer turns an escaping exception into a crash.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "dm2s2/core/error.hpp"
#include "dm2s2/text/wordpiece.hpp"

namespace dm2s2::fuzz {

/// Separates the files of one input ("\n--8<--\n"; in every target's dictionary).
inline constexpr std::string_view part_separator = "\n--8<--\n";

/// The input cut at each `part_separator` into at most `max_parts` parts (the last takes the rest).
inline std::vector<std::string_view> split_parts(const std::uint8_t* data, std::size_t size, std::size_t max_parts)
{
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> parts;
    while (parts.size() + 1 < max_parts) {
        const auto at = rest.find(part_separator);
        if (at == std::string_view::npos) break;
        parts.push_back(rest.substr(0, at));
        rest.remove_prefix(at + part_separator.size());
    }
    parts.push_back(rest);
    return parts;
}

/// The process's scratch directory (removed at exit).
inline const std::filesystem::path& scratch()
{
    static const std::filesystem::path dir = [] {
        const char* base = std::getenv("TMPDIR");
        auto d = std::filesystem::path(base != nullptr && *base != '\0' ? base : "/tmp") /
                 ("dm2s2_fuzz_" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(scratch(), ec);
        });
        return d;
    }();
    return dir;
}

/// A fresh, empty subdirectory `name` of the scratch directory.
inline std::filesystem::path fresh_directory(const std::string& name)
{
    const auto dir = scratch() / name;
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::create_directories(dir);
    return dir;
}

/// Writes `bytes` to `path` (a plain write: the reader under test is what matters).
inline void write_bytes(const std::filesystem::path& path, std::string_view bytes)
{
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Joins files into one input with `part_separator` (seeds).
inline std::string join_parts(const std::vector<std::string>& parts)
{
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) out += part_separator;
        out += parts[i];
    }
    return out;
}

inline std::string read_text(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The BERT vocabulary's tokenizer (read once, for the life of the process).
inline const wordpiece_tokenizer& bert_tokenizer(bool lower_case)
{
    static const wordpiece_tokenizer uncased = wordpiece_tokenizer::from_file(DM2S2_FUZZ_VOCAB, true);
    static const wordpiece_tokenizer cased = wordpiece_tokenizer::from_file(DM2S2_FUZZ_VOCAB, false);
    return lower_case ? uncased : cased;
}

/// Calls `f`, which may throw dm2s2::error (a clean refusal) and nothing else.
template <class F>
void refuses_cleanly(F&& f)
{
    try {
        f();
    } catch (const dm2s2::error&) {
    }
}

}  // namespace dm2s2::fuzz
