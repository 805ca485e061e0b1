#pragma once
/// \file
/// `cpu_cache_sizes`: the data caches of one core, which the CPU products' blocking is derived from
/// (`detail::blocked::derive_gemm_blocking`). Read from Linux's sysfs (`/sys/devices/system/cpu/cpu0/
/// cache`), else from `sysconf`, else taken as those of the processor the kernels were first tuned on.

#include <charconv>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#if defined(__linux__)
#include <unistd.h>
#endif

namespace dm2s2 {

/// The sizes, in bytes, of the caches one core reads its data through.
struct cpu_cache_sizes {
    std::size_t l1d = std::size_t{48} << 10;  ///< the level 1 data cache
    std::size_t l2 = std::size_t{2} << 20;    ///< the level 2 cache (data or unified)

    friend bool operator==(const cpu_cache_sizes&, const cpu_cache_sizes&) = default;
};

/// A cache size as sysfs writes it ("48K", "2048K", "1M", or bytes without a suffix, surrounding
/// whitespace allowed), in bytes; nothing for anything else, for zero, or for a size past 1 TiB.
inline std::optional<std::size_t> parse_cache_size(std::string_view text)
{
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (!text.empty() && space(text.front())) text.remove_prefix(1);
    while (!text.empty() && space(text.back())) text.remove_suffix(1);
    std::size_t shift = 0;
    if (!text.empty()) {
        switch (text.back()) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        default: break;
        }
        if (shift != 0) text.remove_suffix(1);
    }
    std::size_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    constexpr std::size_t limit = std::size_t{1} << 40;
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 || value > (limit >> shift))
        return std::nullopt;
    return value << shift;
}

/// The level 1 data and level 2 caches listed under `cache_dir` in sysfs's layout (`index*/level`,
/// `index*/type`, `index*/size`; instruction caches are skipped); each one not found (no such
/// directory, unreadable or malformed files) is nothing.
struct listed_cache_sizes {
    std::optional<std::size_t> l1d, l2;
};

/// Reads the caches listed under `cache_dir` (normally `/sys/devices/system/cpu/cpu0/cache`).
inline listed_cache_sizes read_listed_cache_sizes(const std::filesystem::path& cache_dir)
{
    listed_cache_sizes found;
    const auto first_line = [](const std::filesystem::path& file) {
        std::ifstream in(file);
        std::string line;
        std::getline(in, line);  // stays empty where the file cannot be read
        return line;
    };
    std::error_code ec;
    for (std::filesystem::directory_iterator it(cache_dir, ec), end; !ec && it != end; it.increment(ec)) {
        const auto& dir = it->path();
        if (!dir.filename().string().starts_with("index")) continue;
        const std::string level = first_line(dir / "level"), type = first_line(dir / "type");
        if (type != "Data" && type != "Unified") continue;
        const auto size = parse_cache_size(first_line(dir / "size"));
        if (!size) continue;
        if (level == "1") found.l1d = size;
        else if (level == "2") found.l2 = size;
    }
    return found;
}

/// The caches of the processor running the program, read once: sysfs, then `sysconf`, then the
/// defaults of `cpu_cache_sizes` for each one found nowhere.
inline const cpu_cache_sizes& detected_cpu_cache_sizes()
{
    static const cpu_cache_sizes sizes = [] {
        cpu_cache_sizes s;
        const auto listed = read_listed_cache_sizes("/sys/devices/system/cpu/cpu0/cache");
        auto l1d = listed.l1d, l2 = listed.l2;
#if defined(__linux__) && defined(_SC_LEVEL2_CACHE_SIZE)
        const auto from_sysconf = [](int name) -> std::optional<std::size_t> {
            const long v = ::sysconf(name);
            if (v > 0) return static_cast<std::size_t>(v);
            return std::nullopt;
        };
        if (!l1d) l1d = from_sysconf(_SC_LEVEL1_DCACHE_SIZE);
        if (!l2) l2 = from_sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        if (l1d) s.l1d = *l1d;
        if (l2) s.l2 = *l2;
        return s;
    }();
    return sizes;
}

}  // namespace dm2s2
