// Explanations that point at the evidence: models trained on the planted-cue task (a binary task
// decided by one word in a text or one value among categorical tags, with a dense and a numeric
// modality beside them) must predict it and, where they are right about a positive, point at the cue:
// the default model's own explanation (its attention weights) and occlusion on every pooling that
// learns the task.

#include <chrono>
#include <map>

#include "dm2s2/train/planted_cue_task.hpp"
#include "dm2s2/explain/faithfulness.hpp"
#include "dm2s2/text/json_records.hpp"
#include "dm2s2/train/trainer.hpp"
#include "test_support.hpp"

using namespace dm2s2;

namespace {

/// The records of a planted-cue data set as the tools read them.
std::vector<json_record> as_json_records(const planted_cue_task& task)
{
    std::vector<json_record> out;
    for (std::size_t i = 0; i < task.records.size(); ++i) out.push_back({"planted:" + std::to_string(i + 1), task.records[i]});
    return out;
}

struct cue_result {
    double accuracy = 0;
    std::map<attribution_method, double> hits;  ///< share of correctly predicted positives explained by the cue
    std::size_t positives = 0;
};

/// Trains `config` (pooling, residual) on 1000 planted-cue records and measures accuracy and the hit
/// rate of `methods` on 300 test records.
cue_result train_on_cues(model_config config, const std::vector<attribution_method>& methods)
{
    const wordpiece_tokenizer tokenizer(planted_cue_task::vocabulary(), true);
    const auto train_records = as_json_records(planted_cue_task(1000, 1));
    const auto test_records = as_json_records(planted_cue_task(300, 2));
    const auto encoder = record_encoder::fit(parse_data_spec(planted_cue_task::schema(), "schema"), train_records, &tokenizer);
    const auto train = encoder.encode_dataset<float>(train_records), test = encoder.encode_dataset<float>(test_records);

    config.bert.vocab_size = tokenizer.vocab_size();
    config.bert.hidden_size = 32;
    config.bert.num_hidden_layers = 2;
    config.bert.num_attention_heads = 2;
    config.bert.intermediate_size = 64;
    config.bert.max_position_embeddings = 64;
    config.cls_id = tokenizer.cls_id();
    config.sep_id = tokenizer.sep_id();
    config.pad_id = tokenizer.pad_id();
    config.num_outputs = 1;
    model<float> m(encoder.schema(), config, 7);
    const auto start = std::chrono::steady_clock::now();
    trainer<float, cpu_backend>(m, task_type::binary,
                                {.epochs = 4, .batch_size = 32, .learning_rate = 2e-3, .seed = 3, .log = nullptr})
        .fit(train);

    cue_result r;
    const auto out = m.forward(test.records);
    std::vector<std::size_t> explained;  // correctly predicted positives
    std::size_t correct = 0;
    for (std::size_t b = 0; b < test.records.size(); ++b) {
        const bool predicted = out.logits(b, 0) >= 0, truth = test.targets(b, 0) == 1;
        correct += predicted == truth;
        if (predicted && truth) explained.push_back(b);
    }
    r.accuracy = double(correct) / double(test.records.size());
    r.positives = explained.size();
    std::vector<record_view> positives;
    for (const auto b : explained) positives.push_back(test.records[b]);
    for (const auto method : methods) {
        if (!supports(method, config.pooling) || positives.empty()) continue;
        const auto a = attribute(m, positives, method, {.task = task_type::binary});
        std::size_t hits = 0;
        for (std::size_t i = 0; i < positives.size(); ++i) {
            const auto& cue = test_records[explained[i]].value["cue"];
            hits +=
                points_at(a, i, encoder.schema().index_of(cue["modality"].get<std::string>()), cue["element"].get<std::size_t>());
        }
        r.hits[method] = double(hits) / double(positives.size());
    }
    std::string report = std::string(to_string(config.pooling)) + " (residual " + std::to_string(config.mra.residual) +
                         "): accuracy " + std::to_string(r.accuracy);
    for (const auto& [method, rate] : r.hits) report += ", " + std::string(to_string(method)) + " hits " + std::to_string(rate);
    report += ", " + std::to_string(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()) + " s";
    MESSAGE(report);
    return r;
}

}  // namespace

TEST_CASE("the default model learns the planted cues and its own explanation points at them")
{
    const auto r = train_on_cues(model_config{}, {attribution_method::attention, attribution_method::occlusion});
    CHECK(r.positives >= 100);
    CHECK(r.accuracy >= 0.95);
    CHECK(r.hits.at(attribution_method::attention) >= 0.90);
    CHECK(r.hits.at(attribution_method::occlusion) >= 0.90);
}

TEST_CASE("occlusion points at the planted cues for every pooling that learns them")
{
    std::size_t learned = 0;
    for (const auto pooling : all_pooling_kinds) {
        if (pooling == pooling_kind::dm2s2) continue;  // the default, above
        model_config config;
        config.pooling = pooling;
        const auto r = train_on_cues(config, {attribution_method::occlusion});
        if (r.accuracy < 0.95) continue;
        ++learned;
        const std::string name(to_string(pooling));
        CAPTURE(name);
        CHECK(r.hits.at(attribution_method::occlusion) >= 0.90);
    }
    CHECK(learned > 0);  // the check above ran (every baseline learned the task in our runs)
}
