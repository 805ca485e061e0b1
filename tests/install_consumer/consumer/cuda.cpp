// A consumer of the installed dm2s2::cuda: makes the backend and prints the device's name, or where
// there is no device, the reason the backend gives.
#include <cstdio>

#include <dm2s2/backend/cuda/cuda_backend.hpp>
#include <dm2s2/dm2s2.hpp>

int main()
{
    const auto devices = dm2s2::cuda_devices();
    try {
        const dm2s2::cuda_backend gpu;
        std::printf("device: %s\n", gpu.device_name().c_str());
    } catch (const dm2s2::error& e) {
        std::printf("%s\n", e.what());
        return devices.count == 0 ? 0 : 1;  // refused only where there is no device
    }
    return 0;
}
