// The GPU test program's entry: with no usable CUDA device it says why and exits with 77, which CTest
// reports as skipped; otherwise it runs doctest as usual. `--without-device` runs the cases that need
// no device (the construction checks), anywhere; listings and help need no device either.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "dm2s2/backend/cuda/cuda_backend.hpp"

int main(int argc, char** argv)
{
    std::vector<char*> args(argv, argv + argc);
    bool without_device = false, query = false;
    for (auto it = args.begin() + 1; it != args.end(); ++it)
        if (std::strcmp(*it, "--without-device") == 0) {
            without_device = true;
            args.erase(it);
            break;
        }
    for (const char* arg : args) {
        const std::string_view a = arg;
        query = query || a.starts_with("--list") || a.starts_with("-l") || a == "--help" || a == "-h";
    }
    doctest::Context context(static_cast<int>(args.size()), args.data());
    if (without_device) {
        context.addFilter("test-case", "*without a device*");
    } else if (!query) {
        const dm2s2::cuda_device_report devices = dm2s2::cuda_devices();
        if (devices.count == 0) {
            std::printf("GPU tests skipped: no usable CUDA device: %s\n", devices.reason.c_str());
            return 77;
        }
        std::printf("GPU tests on %s (%d device(s))\n", devices.name.c_str(), devices.count);
    }
    return context.run();
}
