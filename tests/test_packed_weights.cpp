// Weights packed once for inference: the layout (a permutation that unpacks exactly), products with
// packed weights against those with the plain weights (bit for bit, on every thread count), and a
// model with packed weights against the same model with plain ones, through forward, backward, its
// parameters and its checkpoints.

#include <array>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dm2s2/backend/cpu/cpu_backend.hpp"
#include "dm2s2/backend/cpu/packed_matrix.hpp"
#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/io/checkpoint.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/nn/linear.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using namespace dm2s2::testing;

namespace {

// Shapes of W [n, k] that cross the layout's blocks: partial panels, more than one block of columns,
// depths past one slice.
constexpr std::array<std::array<std::size_t, 2>, 8> weight_shapes{{{1, 1},
                                                                   {5, 7},
                                                                   {45, 19},
                                                                   {70, 600},
                                                                   {packed_layout::nc + 45, 18},
                                                                   {300, 2 * packed_layout::kc + 5},
                                                                   {33, packed_layout::kc + 1},
                                                                   {64, 64}}};

std::vector<char> read_bytes(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Three backends that read packed weights (where the processor has AVX-512 or AVX2: the widest kernels
/// on 1 and 2 threads, AVX2's), and two that multiply plain weights, where packing must leave
/// everything as it was.
std::vector<cpu_options> packing_and_plain_backends()
{
    return {{.threads = 1},
            {.threads = 2},
            {.kernels = simd_kernels::avx2},
            {.kernels = simd_kernels::portable},
            {.precision = matmul_precision::bf16}};
}

/// Whether a backend's products read packed weights, from the kernels it reports.
bool kernels_read_packed(const cpu_backend& backend)
{
    const std::string kernels = backend.float_kernels();
    return kernels == "avx512-fp32" || kernels == "avx2-fp32";
}

/// Whether a backend's products are bf16 by FMA, by `vdpbf16ps` or on AMX tiles, which round a weight
/// once as they pack it when `weight_rounding::bf16` allows, from the kernels it reports.
bool kernels_round_packed(const cpu_backend& backend)
{
    const std::string kernels = backend.float_kernels();
    return kernels == "avx512-bf16-rounded-fma" || kernels == "avx2-bf16-rounded-fma" || kernels == "avx512-bf16-dot" ||
           kernels == "amx-bf16";
}

/// How often each bfloat16 value occurs in the halves of a packed matrix's words.
std::map<std::uint16_t, std::size_t> bf16_halves(const packed_matrix& packed)
{
    std::map<std::uint16_t, std::size_t> halves;
    for (std::size_t i = 0; i < packed.size(); ++i) {
        const auto word = std::bit_cast<std::uint32_t>(packed.data()[i]);
        ++halves[static_cast<std::uint16_t>(word)];
        ++halves[static_cast<std::uint16_t>(word >> 16)];
    }
    return halves;
}

/// Every parameter of a model, by name.
std::map<std::string, std::vector<float>> parameters_of(const model<float>& m)
{
    std::map<std::string, std::vector<float>> out;
    m.for_each_parameter(
        [&](const std::string& name, const tensor<float>& t) { out[name].assign(t.values().begin(), t.values().end()); });
    return out;
}

}  // namespace

TEST_CASE("packed weights are a permutation of the weight that unpacks exactly")
{
    random_generator rng(3);
    // The widest kernels' packing, and AVX2's where AVX-512 is the widest; the same for bf16 products
    // by FMA.
    const std::array<cpu_backend, 2> backends{cpu_backend(), cpu_backend({.kernels = simd_kernels::avx2})};
    const std::array<cpu_backend, 2> bf16_backends{
        cpu_backend({.precision = matmul_precision::bf16, .bf16 = bf16_kernel::rounded_fma}),
        cpu_backend({.precision = matmul_precision::bf16, .kernels = simd_kernels::avx2})};
    for (const auto& shape : weight_shapes) {
        const std::size_t n = shape[0], k = shape[1];  // not a structured binding: CAPTURE takes it into a lambda
        CAPTURE(n);
        CAPTURE(k);
        const auto w = random_floats(n * k, rng);
        const auto reference = packed_matrix::pack(w.data(), n, k, k);
        REQUIRE(reference.size() == packed_layout::padded_columns(n) * k);
        CHECK(std::bit_cast<std::uintptr_t>(reference.data()) % 64 == 0);

        // Every value once, and zeros for the columns that round n up to whole panels.
        std::map<std::uint32_t, std::size_t> counts;
        for (std::size_t i = 0; i < reference.size(); ++i) ++counts[std::bit_cast<std::uint32_t>(reference.data()[i])];
        std::map<std::uint32_t, std::size_t> expected;
        for (const float v : w) ++expected[std::bit_cast<std::uint32_t>(v)];
        if (reference.size() > w.size()) expected[0] += reference.size() - w.size();
        CHECK(counts == expected);

        std::vector<float> back(n * k, std::numeric_limits<float>::quiet_NaN());
        reference.unpack(back.data());
        CHECK(same_bits(back.data(), w.data(), w.size()));

        // Rounded to bf16 as they are packed: the rounded values, in the same places.
        std::vector<float> rounded_w(w.size());
        for (std::size_t i = 0; i < w.size(); ++i) rounded_w[i] = round_to_bfloat16(w[i]);
        const auto rounded = packed_matrix::pack(w.data(), n, k, k, weight_rounding::bf16);
        CHECK(rounded.rounding() == weight_rounding::bf16);
        const auto rounded_reference = packed_matrix::pack(rounded_w.data(), n, k, k);
        CHECK(same_bits(rounded.data(), rounded_reference.data(), rounded_reference.size()));
        rounded.unpack(back.data());
        CHECK(same_bits(back.data(), rounded_w.data(), rounded_w.size()));
        for (const auto& backend : bf16_backends) {
            const auto packed = backend.pack_weight(w.data(), n, k, weight_rounding::bf16);
            CHECK_FALSE(backend.pack_weight(w.data(), n, k).has_value());  // never rounded unless allowed
            if (!packed) continue;
            CHECK(packed->rounding() == weight_rounding::bf16);
            REQUIRE(packed->size() == rounded.size());
            CHECK(same_bits(packed->data(), rounded.data(), rounded.size()));
        }

        // As bf16 tiles for AMX: each value's bf16 once and zeros for the padding, in half the words of
        // the float forms; unpacked, the rounded weight. The tiles' own packing (register transposes)
        // gives the same words, and only where rounding is allowed.
        const auto tiles = packed_matrix::pack(w.data(), n, k, k, weight_rounding::none, packed_form::bf16_tiles);
        CHECK(tiles.form() == packed_form::bf16_tiles);
        CHECK(tiles.rounding() == weight_rounding::bf16);
        REQUIRE(tiles.size() == tile_layout::size(n, k));
        CHECK(tiles.size() <= (n + 15) * (k + 31) / 2);
        const auto expected_halves = [&](std::size_t words) {
            std::map<std::uint16_t, std::size_t> expected_halves;
            for (const float v : w) ++expected_halves[to_bfloat16_bits(v)];
            if (2 * words > w.size()) expected_halves[0] += 2 * words - w.size();
            return expected_halves;
        };
        CHECK(bf16_halves(tiles) == expected_halves(tiles.size()));
        tiles.unpack(back.data());
        CHECK(same_bits(back.data(), rounded_w.data(), rounded_w.size()));
        // The packing of the bf16 backend on `kernel`, where it runs on `kernels`: `expected`'s words, in
        // its form, and nothing unless rounding is allowed.
        const auto check_own_packing = [&](bf16_kernel kernel, std::string_view kernels, const packed_matrix& expected) {
            const cpu_backend backend({.precision = matmul_precision::bf16, .bf16 = kernel});
            if (backend.float_kernels() != kernels) return;
            CHECK_FALSE(backend.pack_weight(w.data(), n, k).has_value());
            const auto packed = backend.pack_weight(w.data(), n, k, weight_rounding::bf16);
            REQUIRE(packed.has_value());
            CHECK(packed->form() == expected.form());
            CHECK(std::bit_cast<std::uintptr_t>(packed->data()) % 64 == 0);
            REQUIRE(packed->size() == expected.size());
            CHECK(same_bits(packed->data(), expected.data(), expected.size()));
        };
        check_own_packing(bf16_kernel::tiles, "amx-bf16", tiles);

        // As bf16 pairs for `vdpbf16ps`: the float layout over pairs of depths, half its words; the
        // products' own packing gives the same words, and only where rounding is allowed.
        const auto pairs = packed_matrix::pack(w.data(), n, k, k, weight_rounding::none, packed_form::bf16_pairs);
        CHECK(pairs.form() == packed_form::bf16_pairs);
        CHECK(pairs.rounding() == weight_rounding::bf16);
        REQUIRE(pairs.size() == packed_layout::padded_columns(n) * ((k + 1) / 2));
        CHECK(bf16_halves(pairs) == expected_halves(pairs.size()));
        std::fill(back.begin(), back.end(), std::numeric_limits<float>::quiet_NaN());
        pairs.unpack(back.data());
        CHECK(same_bits(back.data(), rounded_w.data(), rounded_w.size()));
        check_own_packing(bf16_kernel::dot_product, "avx512-bf16-dot", pairs);

        // The products' own packing (register transposes) gives the same words, exact even where
        // rounding is allowed: fp32 products do not round.
        for (const auto& backend : backends) {
            const auto packed = backend.pack_weight(w.data(), n, k);
            const auto rounding_allowed = backend.pack_weight(w.data(), n, k, weight_rounding::bf16);
            CHECK(rounding_allowed.has_value() == packed.has_value());
            if (!packed) continue;
            CHECK(rounding_allowed->rounding() == weight_rounding::none);
            CHECK(same_bits(rounding_allowed->data(), reference.data(), reference.size()));
            REQUIRE(packed->size() == reference.size());
            CHECK(same_bits(packed->data(), reference.data(), reference.size()));
            const packed_matrix copy = *packed;  // copies keep the alignment
            CHECK(std::bit_cast<std::uintptr_t>(copy.data()) % 64 == 0);
            CHECK(same_bits(copy.data(), reference.data(), reference.size()));
            // Moved into a weight-sized tensor, it is kept there; into another size, it stays where it was.
            tensor<float> storage({n, k});
            const float* own = storage.data();
            const packed_matrix moved = packed_matrix(copy).stored_in(std::move(storage));
            CHECK((moved.data() == own) == (reference.size() == n * k));
            CHECK(same_bits(moved.data(), reference.data(), reference.size()));
        }
    }
}

TEST_CASE("products with packed weights, bias and GELU give the plain weights' numbers bit for bit")
{
    random_generator rng(4);
    for (const auto& shape : weight_shapes)
        for (const std::size_t m :
             {std::size_t{1}, std::size_t{29},
              detail::blocked::derive_gemm_blocking(detail::avx512::mr, detected_cpu_cache_sizes()).mc + 23})
            for (const auto& options :
                 {cpu_options{.threads = 1}, cpu_options{.threads = 2}, cpu_options{.threads = 2, .kernels = simd_kernels::avx2},
                  cpu_options{.threads = 2, .kernels = simd_kernels::portable},
                  cpu_options{.threads = 1, .precision = matmul_precision::bf16},
                  cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::rounded_fma},
                  cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::dot_product},
                  cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::tiles}})
                for (const weight_rounding rounding : {weight_rounding::none, weight_rounding::bf16})
                    for (const float beta : {-1.5f, 0.0f})
                        for (const activation act : {activation::identity, activation::gelu}) {
                            if (sanitized && (beta == 0.0f) != (act == activation::gelu)) continue;  // each once
                            const std::size_t n = shape[0], k = shape[1];
                            const cpu_backend backend(options);
                            const std::string kernels = backend.float_kernels();
                            const std::size_t threads = options.threads;
                            const bool gelu = act == activation::gelu, rounding_allowed = rounding == weight_rounding::bf16;
                            CAPTURE(m);
                            CAPTURE(n);
                            CAPTURE(k);
                            CAPTURE(threads);
                            CAPTURE(kernels);
                            CAPTURE(rounding_allowed);
                            CAPTURE(beta);
                            CAPTURE(gelu);
                            const std::size_t lda = k + 3, ldc = n + 1;
                            const auto a = random_floats(m * lda, rng), w = random_floats(n * k, rng);
                            auto plain = random_floats(m * ldc, rng);
                            if (beta == 0.0f) std::fill(plain.begin(), plain.end(), std::numeric_limits<float>::quiet_NaN());
                            auto packed_c = plain;
                            // Packed by this backend where it reads packed weights; otherwise packed elsewhere and
                            // handed to it anyway, which must unpack and give its own plain numbers.
                            const packed_matrix weights = backend.pack_weight(w.data(), n, k, rounding)
                                                              .value_or(packed_matrix::pack(w.data(), n, k, k, rounding));
                            // The product with the weight as packed (rounded, where it was), then the bias row and the
                            // activation, as a layer without packing applies them; C's column past n must stay as it was.
                            std::vector<float> w_as_packed(n * k);
                            weights.unpack(w_as_packed.data());
                            const auto bias = random_floats(n, rng);
                            backend.gemm(transpose::no, transpose::yes, m, n, k, 0.5f, a.data(), lda, w_as_packed.data(), k, beta,
                                         plain.data(), ldc);
                            backend.add_row_vector(plain.data(), m, n, ldc, bias.data());
                            if (gelu)
                                for (std::size_t r = 0; r < m; ++r) backend.gelu(plain.data() + r * ldc, n);
                            backend.gemm_packed(m, 0.5f, a.data(), lda, weights, beta, packed_c.data(), ldc, {bias.data(), act});
                            REQUIRE(same_bits(packed_c.data(), plain.data(), plain.size()));
                        }
}

TEST_CASE("a linear layer with a packed weight computes, trains and reports the plain weight")
{
    random_generator rng(6);
    for (const auto& options : packing_and_plain_backends()) {
        const cpu_backend backend(options);
        const std::size_t threads = options.threads;
        const std::string kernels = backend.float_kernels();
        CAPTURE(threads);
        CAPTURE(kernels);
        nn::linear<float> plain(70, 45);
        plain.initialize(rng, 0.5);
        for (auto& b : plain.bias.values()) b = static_cast<float>(rng.normal());
        nn::linear<float> packed = plain;
        const bool did_pack = packed.pack_weights(backend);
        CHECK(did_pack == kernels_read_packed(backend));
        CHECK(packed.weights_packed() == did_pack);
        CHECK(packed.weight.empty() == did_pack);  // the packed form replaces the weight
        CHECK(packed.in_features() == 70);
        CHECK(packed.out_features() == 45);

        constexpr std::size_t rows = 31;
        const auto x = random_floats(rows * 70, rng), dy = random_floats(rows * 45, rng);
        std::vector<float> y_plain(rows * 45), y_packed(rows * 45), y_reference(rows * 45);
        plain.forward(backend, x.data(), rows, y_plain.data());
        packed.forward(backend, x.data(), rows, y_packed.data());
        CHECK(same_bits(y_packed.data(), y_plain.data(), y_plain.size()));
        // A backend that cannot read packed weights multiplies by the unpacked copy.
        const reference_backend reference;
        plain.forward(reference, x.data(), rows, y_plain.data());
        packed.forward(reference, x.data(), rows, y_reference.data());
        CHECK(same_bits(y_reference.data(), y_plain.data(), y_plain.size()));
        // GELU after the bias: applied tile by tile inside the packed product, after it otherwise.
        plain.forward(backend, x.data(), rows, y_plain.data(), activation::gelu);
        packed.forward(backend, x.data(), rows, y_packed.data(), activation::gelu);
        CHECK(same_bits(y_packed.data(), y_plain.data(), y_plain.size()));
        std::vector<float> y_then_gelu(rows * 45);
        plain.forward(backend, x.data(), rows, y_then_gelu.data());
        backend.gelu(y_then_gelu.data(), y_then_gelu.size());
        CHECK(same_bits(y_packed.data(), y_then_gelu.data(), y_then_gelu.size()));
        packed.forward(reference, x.data(), rows, y_reference.data(), activation::gelu);
        plain.forward(reference, x.data(), rows, y_plain.data(), activation::gelu);
        CHECK(same_bits(y_reference.data(), y_plain.data(), y_plain.size()));

        // Backward multiplies by the plain weight.
        auto grad_plain = zeros_like(plain), grad_packed = zeros_like(plain);
        std::vector<float> dx_plain(rows * 70), dx_packed(rows * 70);
        plain.backward(backend, x.data(), dy.data(), rows, dx_plain.data(), grad_plain);
        packed.backward(backend, x.data(), dy.data(), rows, dx_packed.data(), grad_packed);
        CHECK(same_bits(dx_packed.data(), dx_plain.data(), dx_plain.size()));
        CHECK(same_bits(grad_packed.weight.data(), grad_plain.weight.data(), grad_plain.weight.size()));
        CHECK(packed.weights_packed() == did_pack);

        // A mutable visit may change the weight, so it unpacks it for good, exactly.
        std::vector<float> seen;
        packed.for_each_parameter("", [&](const std::string& name, tensor<float>& t) {
            if (name == "weight") seen.assign(t.values().begin(), t.values().end());
        });
        CHECK_FALSE(packed.weights_packed());
        REQUIRE(packed.weight.shape() == plain.weight.shape());
        CHECK(same_bits(packed.weight.data(), plain.weight.data(), plain.weight.size()));
        CHECK(same_bits(seen.data(), plain.weight.data(), plain.weight.size()));
    }
}

TEST_CASE("weights packed rounded to bf16 give the bf16 products' numbers and stay rounded")
{
    random_generator rng(8);
    // bf16 products by FMA (on the widest kernels, on AVX2's, on two threads), by `vdpbf16ps` and on AMX
    // tiles round the weight once as it is packed; fp32 products pack it exactly; Eigen's products
    // leave it plain.
    for (const auto& options : {cpu_options{.precision = matmul_precision::bf16, .bf16 = bf16_kernel::rounded_fma},
                                cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::tiles},
                                cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::dot_product},
                                cpu_options{.precision = matmul_precision::bf16, .kernels = simd_kernels::avx2},
                                cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::rounded_fma},
                                cpu_options{.precision = matmul_precision::bf16, .kernels = simd_kernels::portable},
                                cpu_options{.precision = matmul_precision::bf16}, cpu_options{}}) {
        const cpu_backend backend(options);
        const std::size_t threads = options.threads;
        const std::string kernels = backend.float_kernels();
        CAPTURE(threads);
        CAPTURE(kernels);
        const bool rounds = kernels_round_packed(backend);
        nn::linear<float> plain(70, 45);
        plain.initialize(rng, 0.5);
        for (auto& b : plain.bias.values()) b = static_cast<float>(rng.normal());
        nn::linear<float> packed = plain, exact = plain;
        CHECK(exact.pack_weights(backend) == kernels_read_packed(backend));  // never rounded unless allowed
        CHECK_FALSE(exact.weights_rounded());
        const bool did_pack = packed.pack_weights(backend, weight_rounding::bf16);
        CHECK(did_pack == (rounds || kernels_read_packed(backend)));
        CHECK(did_pack == backend.reads_packed_weights(weight_rounding::bf16));
        CHECK(packed.weights_rounded() == rounds);

        // The same outputs as the plain weight on this backend, with and without GELU.
        constexpr std::size_t rows = 37;
        const auto x = random_floats(rows * 70, rng);
        std::vector<float> y_plain(rows * 45), y_packed(rows * 45);
        for (const activation act : {activation::identity, activation::gelu}) {
            plain.forward(backend, x.data(), rows, y_plain.data(), act);
            packed.forward(backend, x.data(), rows, y_packed.data(), act);
            CHECK(same_bits(y_packed.data(), y_plain.data(), y_plain.size()));
        }

        // The parameters are the rounded weight from now on, for read-only visits and after unpacking.
        std::vector<float> expected(plain.weight.values().begin(), plain.weight.values().end());
        if (rounds)
            for (auto& v : expected) v = round_to_bfloat16(v);
        std::vector<float> seen;
        auto look = [&](const std::string& name, const tensor<float>& t) {
            if (name == "weight") seen.assign(t.values().begin(), t.values().end());
        };
        packed.for_each_parameter("", read_only_visitor<decltype(look)>{look});  // a read-only visit: stays packed
        REQUIRE(seen.size() == expected.size());
        CHECK(same_bits(seen.data(), expected.data(), expected.size()));
        CHECK(packed.weights_packed() == did_pack);
        packed.unpack_weights();
        CHECK_FALSE(packed.weights_rounded());
        REQUIRE(packed.weight.size() == expected.size());
        CHECK(same_bits(packed.weight.data(), expected.data(), expected.size()));
        packed.forward(backend, x.data(), rows, y_packed.data(), activation::gelu);
        CHECK(same_bits(y_packed.data(), y_plain.data(), y_plain.size()));
    }
}

TEST_CASE("a bf16 model with weights packed rounded gives the same logits, and saves the rounded weights")
{
    const auto config = small_config();
    for (const auto& options : {cpu_options{.precision = matmul_precision::bf16, .bf16 = bf16_kernel::rounded_fma},
                                cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::rounded_fma},
                                cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::tiles},
                                cpu_options{.threads = 2, .precision = matmul_precision::bf16, .bf16 = bf16_kernel::dot_product},
                                cpu_options{.threads = 2}}) {
        const cpu_backend backend(options);
        const std::size_t threads = options.threads;
        const std::string kernels = backend.float_kernels();
        CAPTURE(threads);
        CAPTURE(kernels);
        const bool rounds = kernels_round_packed(backend);
        const model<float> plain(four_modalities(), config, 17, backend);
        model<float> packed(four_modalities(), config, 17, backend);
        const std::size_t weights = 6 * config.bert.num_hidden_layers + 1;  // each layer's six, the pooler's
        CHECK(packed.pack_weights(weight_rounding::bf16) == (backend.reads_packed_weights(weight_rounding::bf16) ? weights : 0));

        const auto batch = plain.pack(random_records(plain.schema(), 9, 21));
        const auto expected = plain.forward(batch, true);
        const auto got = packed.forward(batch, true);
        CHECK(same_bits(got.logits.data(), expected.logits.data(), expected.logits.size()));
        CHECK(got.explanation.gamma == expected.explanation.gamma);

        // Saved parameters: the packed weights rounded (where they were), everything else as it was.
        const auto before = parameters_of(plain), after = parameters_of(packed);
        REQUIRE(after.size() == before.size());
        std::size_t rounded = 0;
        for (const auto& entry : before) {  // not a structured binding: CAPTURE takes it into a lambda
            const std::string& name = entry.first;
            const std::vector<float>& values = entry.second;
            CAPTURE(name);
            const auto& now = after.at(name);
            REQUIRE(now.size() == values.size());
            if (same_bits(now.data(), values.data(), values.size())) continue;
            std::vector<float> rounded_values(values.size());
            for (std::size_t i = 0; i < values.size(); ++i) rounded_values[i] = round_to_bfloat16(values[i]);
            CHECK(same_bits(now.data(), rounded_values.data(), rounded_values.size()));
            ++rounded;
        }
        CHECK(rounded == (rounds ? weights : 0));
    }
}

TEST_CASE("a model with packed weights gives the same logits, gradients, parameters and checkpoints")
{
    const auto config = small_config();
    for (const auto& options : packing_and_plain_backends()) {
        const cpu_backend backend(options);
        const std::size_t threads = options.threads;
        const std::string kernels = backend.float_kernels();
        CAPTURE(threads);
        CAPTURE(kernels);
        const model<float> plain(four_modalities(), config, 17, backend);
        model<float> packed(four_modalities(), config, 17, backend);
        const std::size_t weights = 6 * config.bert.num_hidden_layers + 1;  // each layer's six, the pooler's
        const std::size_t expected_packed = kernels_read_packed(backend) ? weights : 0;
        CHECK(packed.pack_weights() == expected_packed);
        CHECK(packed.pack_weights() == expected_packed);  // packing twice changes nothing

        const auto batch = plain.pack(random_records(plain.schema(), 9, 21));
        model_cache<float> plain_cache, packed_cache;
        const auto expected = plain.forward(batch, true, &plain_cache);
        const auto got = packed.forward(batch, true, &packed_cache);
        CHECK(same_bits(got.logits.data(), expected.logits.data(), expected.logits.size()));
        CHECK(got.explanation.gamma == expected.explanation.gamma);

        tensor<float> d_logits({9, config.num_outputs});
        for (std::size_t i = 0; i < d_logits.size(); ++i) d_logits[i] = static_cast<float>(0.1 * double(i % 7) - 0.3);
        auto grad_plain = plain.zero_gradients(), grad_packed = packed.zero_gradients();
        plain.backward(plain_cache, d_logits, grad_plain);
        packed.backward(packed_cache, d_logits, grad_packed);
        std::vector<float> flat_plain, flat_packed;
        grad_plain.for_each_parameter([&](const std::string&, tensor<float>& t) {
            flat_plain.insert(flat_plain.end(), t.values().begin(), t.values().end());
        });
        grad_packed.for_each_parameter([&](const std::string&, tensor<float>& t) {
            flat_packed.insert(flat_packed.end(), t.values().begin(), t.values().end());
        });
        REQUIRE(flat_packed.size() == flat_plain.size());
        CHECK(same_bits(flat_packed.data(), flat_plain.data(), flat_plain.size()));

        // Read-only visits (saving) see the plain weights and leave them packed.
        const auto& query = packed.encoder().encoder().layers[0].attention.query;
        CHECK(parameters_of(packed) == parameters_of(plain));
        CHECK(query.weights_packed() == kernels_read_packed(backend));
        const auto dir = scratch_dir("packed_weights_" + std::to_string(threads) + "_" + kernels);
        save_model(plain, dir / "plain");
        save_model(packed, dir / "packed");
        CHECK(read_bytes(dir / "packed" / "model.safetensors") == read_bytes(dir / "plain" / "model.safetensors"));
        CHECK(query.weights_packed() == kernels_read_packed(backend));

        packed.unpack_weights();
        CHECK_FALSE(query.weights_packed());
        CHECK(parameters_of(packed) == parameters_of(plain));
    }
}
