// Quickstart: a small random DM²S² model over four modalities, run on three records (the second
// without an image, the third with only a title and a price), printing the logits and the
// explanation: β per modality and α per element.
//
//   dm2s2_quickstart [--device cpu|cuda]
//
// --device cuda runs the same model on the GPU (a build with -DDM2S2_CUDA=ON): one upload of its
// parameters, then the forward pass there; the logits and the explanation come back to the host.

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <dm2s2/dm2s2.hpp>
#if defined(DM2S2_HAS_CUDA)
#include <dm2s2/backend/cuda/cuda_backend.hpp>
#endif

int main(int argc, char** argv)
{
    const bool on_gpu = argc == 3 && std::strcmp(argv[1], "--device") == 0 && std::strcmp(argv[2], "cuda") == 0;
    if (argc != 1 && !on_gpu && !(argc == 3 && std::strcmp(argv[1], "--device") == 0 && std::strcmp(argv[2], "cpu") == 0)) {
        std::fprintf(stderr, "usage: dm2s2_quickstart [--device cpu|cuda]\n");
        return 2;
    }
    using dm2s2::modality_kind;
    const dm2s2::schema schema({
        {.name = "title", .kind = modality_kind::tokens, .max_length = 16},
        {.name = "image", .kind = modality_kind::dense, .max_length = 4, .dim = 8},
        {.name = "category", .kind = modality_kind::categorical, .max_length = 3, .categories = 4},
        {.name = "price", .kind = modality_kind::numeric, .max_length = 1, .mean = 20.0, .stddev = 10.0},
    });

    dm2s2::model_config config;
    config.bert.vocab_size = 1000;
    config.bert.hidden_size = 32;
    config.bert.num_hidden_layers = 2;
    config.bert.num_attention_heads = 4;
    config.bert.intermediate_size = 64;
    config.bert.max_position_embeddings = 64;
    config.bert.initializer_range = 0.2;  // larger than BERT's 0.02 so that the random weights are visibly uneven
    config.num_outputs = 3;
    const dm2s2::model<float> model(schema, config, /*seed=*/42);

    dm2s2::category_table categories;
    for (const char* c : {"shoes", "books", "garden"}) categories.add(c);

    dm2s2::random_generator rng(7);
    const auto image = [&](std::size_t regions) {
        std::vector<float> rows(regions * 8);
        for (auto& v : rows) v = static_cast<float>(rng.normal());
        return rows;
    };

    std::vector<dm2s2::sequence_set> records(3, dm2s2::sequence_set(schema));
    records[0]
        .set_tokens("title", {345, 87, 912, 4})
        .set_dense("image", image(3))
        .set_categorical("category", {"shoes"}, categories)
        .set_numeric("price", {24.5});
    records[1]
        .set_tokens("title", {17, 600})
        .set_categorical("category", {"books", "gifts"}, categories)
        .set_numeric("price", {9.99});  // no image; "gifts" is an unknown category
    records[2].set_tokens("title", {250, 251, 252, 253, 254}).set_numeric("price", {120.0});

    dm2s2::model_output<float> out;
    if (on_gpu) {
#if defined(DM2S2_HAS_CUDA)
        try {
            const dm2s2::model<float, dm2s2::cuda_backend> gpu(model, dm2s2::cuda_backend{});  // one upload
            out = gpu.forward(gpu.pack(records), /*explain=*/true);
            std::printf("on %s\n", gpu.backend().device_name().c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "dm2s2_quickstart: %s\n", e.what());
            return 1;
        }
#else
        std::fprintf(stderr,
                     "dm2s2_quickstart: --device cuda: this build has no CUDA backend (configure with -DDM2S2_CUDA=ON)\n");
        return 1;
#endif
    } else {
        out = model.forward(records, /*explain=*/true);
    }
    const auto& e = out.explanation;
    for (std::size_t b = 0; b < records.size(); ++b) {
        std::printf("record %zu  logits:", b);
        for (std::size_t c = 0; c < config.num_outputs; ++c) std::printf(" %+.4f", out.logits(b, c));
        std::printf("\n");
        for (std::size_t m = 0; m < schema.size(); ++m) {
            std::printf("  %-9s beta %.3f  alpha [", schema[m].name.c_str(), e.beta_of(b, m));
            const auto alpha = e.alpha_of(b, m);
            for (std::size_t i = 0; i < alpha.size(); ++i) std::printf("%s%.3f", i ? " " : "", alpha[i]);
            std::printf("]%s\n", alpha.empty() ? "  (missing)" : "");
        }
    }
    return 0;
}
