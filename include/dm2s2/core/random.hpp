#pragma once
/// \file
/// A small seeded generator (xoshiro256**) with its own uniform and normal transforms, so that a
/// seed gives the same numbers under every compiler and standard library; and the counter-based
/// uniforms that dropout's factors come from.

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <utility>

namespace dm2s2 {

/// Deterministic pseudo-random generator; the state is explicit, copyable and serialisable.
class random_generator {
public:
    explicit random_generator(std::uint64_t seed = 0) noexcept
    {
        // splitmix64 spreads any seed, including 0, over the whole state.
        for (auto& word : state_) {
            seed += 0x9e3779b97f4a7c15ULL;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            word = z ^ (z >> 31);
        }
    }

    /// Next 64 random bits.
    std::uint64_t next() noexcept
    {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    /// Uniform double in [0, 1) with 53 random bits.
    double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

    /// Uniform integer in [0, n); n must be positive.
    std::uint64_t below(std::uint64_t n) noexcept { return static_cast<std::uint64_t>(uniform() * static_cast<double>(n)); }

    /// Normal deviate with the given mean and standard deviation (Box–Muller).
    double normal(double mean = 0.0, double stddev = 1.0) noexcept
    {
        const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
        const double u2 = uniform();
        return mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    }

    /// Two independent standard normal deviates (Marsaglia's polar method): one logarithm per pair
    /// and no trigonometry, where `normal` takes a logarithm and a cosine per value. Initialising
    /// BERT-base's 110 M weights from pairs takes under half the time.
    std::pair<double, double> normal_pair() noexcept
    {
        for (;;) {
            const double x = 2.0 * uniform() - 1.0, y = 2.0 * uniform() - 1.0;
            const double s = x * x + y * y;
            // Points of the square outside the unit disc (about 21 %), and its centre, are drawn again.
            if (s < 1.0 && s > 0.0) {
                const double scale = std::sqrt(-2.0 * std::log(s) / s);
                return {x * scale, y * scale};
            }
        }
    }

    const std::array<std::uint64_t, 4>& state() const noexcept { return state_; }
    void set_state(const std::array<std::uint64_t, 4>& s) noexcept { state_ = s; }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
    std::array<std::uint64_t, 4> state_{};
};

/// Uniform double in [0, 1) for element `index` of the stream `seed`: a pure function of both
/// (splitmix64 of the counter), so any element can be drawn again, in any order, on any device.
constexpr double counter_uniform(std::uint64_t seed, std::uint64_t index) noexcept
{
    std::uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;
}

/// One application of dropout: probability `p` (0: none) and the `seed` of its counter-based
/// factors. Element i is dropped when `counter_uniform(seed, i) < p` and scaled by 1 / (1 − p)
/// otherwise, so the backward pass regenerates the same factors from these two numbers.
struct dropout_draw {
    double p = 0;
    std::uint64_t seed = 0;
    /// The number of element 0: a share of a larger batch numbers its elements after those of the
    /// shares before it, so that data-parallel ranks draw the factors one process would.
    std::uint64_t first = 0;

    bool active() const noexcept { return p > 0; }

    /// The factor of element i: 0 or 1 / (1 − p) (1 when inactive).
    template <class T>
    T factor(std::uint64_t i) const noexcept
    {
        if (!active()) return T(1);
        return counter_uniform(seed, first + i) < p ? T(0) : static_cast<T>(1.0 / (1.0 - p));
    }
};

}  // namespace dm2s2
