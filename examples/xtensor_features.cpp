// xtensor features in, explanations out: image-region features held in one xtensor array (as a
// feature extractor would hand them over) become the dense modality of each record through views,
// class labels come from an xtensor array, a small DM²S² learns which records show a marked region,
// and the explanation is read back as xtensor adaptors: β per modality and α over each record's
// regions, without copying. Built with the CMake target dm2s2::xtensor.

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <vector>

#include <dm2s2/dm2s2.hpp>
#include <dm2s2/interop/xtensor.hpp>

#if __has_include(<xtensor/containers/xarray.hpp>)  // xtensor 0.26 and later
#include <xtensor/containers/xarray.hpp>
#include <xtensor/core/xmath.hpp>
#include <xtensor/views/xview.hpp>
#else
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>
#endif

int main()
{
    using dm2s2::modality_kind;
    constexpr std::size_t records = 192, regions = 6, dim = 8;
    const dm2s2::schema schema({
        {.name = "image", .kind = modality_kind::dense, .max_length = regions, .dim = dim},
        {.name = "price", .kind = modality_kind::numeric, .max_length = 1, .mean = 20.0, .stddev = 10.0},
    });

    // [records, regions, dim] region features and each record's region count; class 1 when one
    // region carries the marker (a large first feature).
    dm2s2::random_generator rng(3);
    xt::xarray<float> features = xt::zeros<float>({records, regions, dim});
    for (auto& v : features) v = static_cast<float>(rng.normal());
    std::vector<std::size_t> region_count(records), marked(records, regions);
    xt::xarray<int> labels = xt::zeros<int>({records});
    for (std::size_t r = 0; r < records; ++r) {
        region_count[r] = 2 + rng.below(regions - 1);
        if (r % 2 == 0) {
            marked[r] = rng.below(region_count[r]);
            features(r, marked[r], 0) = 4.0f;
            labels(r) = 1;
        }
    }

    std::vector<dm2s2::sequence_set> sets;
    for (std::size_t r = 0; r < records; ++r) {
        dm2s2::sequence_set record(schema);
        dm2s2::set_dense(record, "image", xt::view(features, r, xt::range(0, region_count[r]), xt::all()));
        record.set_numeric("price", {10.0 + double(r % 20)});
        sets.push_back(std::move(record));
    }

    dm2s2::model_config config;
    config.bert = {.vocab_size = 8,
                   .hidden_size = 16,
                   .num_hidden_layers = 1,
                   .num_attention_heads = 2,
                   .intermediate_size = 32,
                   .max_position_embeddings = 16};
    config.cls_id = 1;
    config.sep_id = 2;
    config.num_outputs = 2;
    dm2s2::model<float> model(schema, config, /*seed=*/1);
    std::ostringstream progress;
    dm2s2::trainer<float, dm2s2::cpu_backend> trainer(model, dm2s2::task_type::multiclass,
                                                      {.epochs = 12,
                                                       .batch_size = 16,
                                                       .learning_rate = 3e-3,
                                                       .seed = 1,
                                                       .progress = dm2s2::progress_style::lines,
                                                       .log = &progress});
    trainer.fit({sets, dm2s2::tensor_from<float>(labels)});

    const auto out = model.forward(sets, /*explain=*/true);
    const auto logits = dm2s2::logits_array(out);          // [records, 2], viewing the model's output
    const auto beta = dm2s2::beta_array(out.explanation);  // [records, modalities]
    std::size_t correct = 0, marked_positive = 0, alpha_on_marker = 0;
    for (std::size_t r = 0; r < records; ++r) {
        const int predicted = logits(r, 1) > logits(r, 0) ? 1 : 0;
        correct += predicted == labels(r);
        if (labels(r) != 1 || predicted != 1) continue;
        ++marked_positive;
        const auto alpha = dm2s2::as_xtensor(out.explanation.alpha_of(r, 0));  // α over this record's regions
        alpha_on_marker += std::size_t(std::max_element(alpha.begin(), alpha.end()) - alpha.begin()) == marked[r];
    }
    std::printf("accuracy %.3f; mean beta: image %.3f, price %.3f\n", double(correct) / records,
                double(xt::mean(xt::view(beta, xt::all(), 0))()), double(xt::mean(xt::view(beta, xt::all(), 1))()));
    std::printf("correct positives whose largest image alpha is the marked region: %zu of %zu\n", alpha_on_marker,
                marked_positive);
    std::printf("record 0: regions %zu, marked %zu, alpha", region_count[0], marked[0]);
    for (const float a : dm2s2::as_xtensor(out.explanation.alpha_of(0, 0))) std::printf(" %.3f", a);
    std::printf("\n");
    return 0;
}
