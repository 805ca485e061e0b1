#pragma once
// What the benchmark programs share.

#include <cstdlib>
#include <string_view>

namespace dm2s2_bench {

/// DM2S2_BENCH_SCALE=tiny: every size shrunk, so that CI can run each benchmark once as a smoke test.
inline bool tiny()
{
    const char* scale = std::getenv("DM2S2_BENCH_SCALE");
    return scale != nullptr && std::string_view(scale) == "tiny";
}

}  // namespace dm2s2_bench
