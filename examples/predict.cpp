// dm2s2_predict: predictions with their explanation for records in the JSON Lines format of the README,
// from a model directory written by dm2s2_train.
//
//   dm2s2_predict --model DIR --data D.jsonl --out P.jsonl [--metrics M.json] [--explain R.html] [--show N] [--threads T]
//                 [--precision fp32|tf32|bf16] [--explain-method attention|occlusion|gradient|integrated-gradients]
//                 [--faithfulness F.json] [--faithfulness-records N] [--device cpu|cuda]
//
// P has one JSON line per record: "id", "prediction", "scores" (label → probability), "beta" (modality
// → weight), "alpha" (modality → weights of its elements), "elements" (modality → printable elements:
// word pieces, category values, #k for dense rows, numbers). Baselines without attention weights write
// null for beta and alpha. With --explain-method, each line also has "attribution": {"method",
// "modalities": {name: score}, "elements": {name: [score per element]}}, larger meaning more evidence
// for the predicted output (0 and [] for a missing modality). M holds the task's metrics (every record
// needs its target). R is one self-contained HTML page showing each record's modality weights and its
// elements shaded by γ, or by the attribution when a method is given. --show N prints the explanation
// of the first N records: their three heaviest modalities and element weights. Records stream through
// in batches, so memory does not grow with the file (except for the page of --explain, which holds
// every record, and the scores and targets --metrics keeps); P appears, whole, when every record is done.
// --precision bf16 multiplies matrices in bf16 with fp32 sums, on the CPU with the encoder's weights
// rounded to bf16 once as they are packed (`weight_rounding::bf16`); scores then differ slightly from
// fp32 ones. --precision tf32 (the GPU's tensor-core mode) needs --device cuda.
// --faithfulness F.json measures every attribution method the model supports and a random ranking on
// the first N records (default 500): ERASER comprehensiveness and sufficiency, and, for records that
// carry a "cue": {"modality", "element"} and are predicted correctly, how often the method's top
// modality and top element are the cue.
// --device cuda runs the model on the GPU (a build with -DDM2S2_CUDA=ON): predictions and the
// attention explanation, in any precision; the attribution methods and faithfulness stay on the CPU.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <dm2s2/dm2s2.hpp>
#include <dm2s2/explain/faithfulness.hpp>
#include <dm2s2/text/data_pipeline.hpp>
#if defined(DM2S2_HAS_CUDA)
#include <dm2s2/backend/cuda/cuda_backend.hpp>
#endif

#include "tool_arguments.hpp"

namespace {

/// JSON that keeps the order of its keys: id first, modalities in schema order.
using ordered_json = nlohmann::ordered_json;

/// One record's prediction, as written to P.
struct prediction {
    ordered_json line;
    std::string truth;  ///< the target as written in the record (for the page), empty when absent
};

std::string html_escape(const std::string& s)
{
    std::string out;
    for (const char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

/// Probabilities by label and the predicted value, from one row of logits.
void score(const dm2s2::task_spec& task, const float* logits, std::size_t outputs, ordered_json& line)
{
    const auto sigmoid = [](double x) { return 1 / (1 + std::exp(-x)); };
    ordered_json scores = ordered_json::object();
    switch (task.type) {
    case dm2s2::task_type::multiclass: {
        double max = logits[0], sum = 0;
        for (std::size_t k = 0; k < outputs; ++k) max = std::max(max, double(logits[k]));
        for (std::size_t k = 0; k < outputs; ++k) sum += std::exp(logits[k] - max);
        std::size_t best = 0;
        for (std::size_t k = 0; k < outputs; ++k) {
            scores[task.labels[k]] = std::exp(logits[k] - max) / sum;
            if (logits[k] > logits[best]) best = k;
        }
        line["prediction"] = task.labels[best];
        break;
    }
    case dm2s2::task_type::binary: {
        const double p = sigmoid(logits[0]);
        scores[task.labels[0]] = 1 - p;
        scores[task.labels[1]] = p;
        line["prediction"] = task.labels[p >= 0.5 ? 1 : 0];
        break;
    }
    case dm2s2::task_type::multilabel: {
        ordered_json predicted = ordered_json::array();
        for (std::size_t k = 0; k < outputs; ++k) {
            scores[task.labels[k]] = sigmoid(logits[k]);
            if (logits[k] >= 0) predicted.push_back(task.labels[k]);
        }
        line["prediction"] = predicted;
        break;
    }
    case dm2s2::task_type::regression: line["prediction"] = logits[0]; break;
    }
    line["scores"] = scores;
}

/// The explanation page: per record its prediction, each modality's β as a bar and its elements
/// shaded by their importance γ = β·α relative to the record's most important element; α and γ in
/// the tooltip.
std::string explanation_page(const std::vector<prediction>& predictions, const dm2s2::schema& schema, const std::string& title)
{
    std::ostringstream html;
    html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << html_escape(title)
         << "</title>\n<style>\n"
         << "body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}\n"
         << ".record{border:1px solid #ccc;border-radius:6px;padding:0.8em 1em;margin:0 0 1em 0}\n"
         << ".head{font-weight:600;margin-bottom:0.4em}.truth{color:#666;font-weight:400}\n"
         << ".modality{display:flex;align-items:flex-start;gap:0.8em;margin:0.3em 0}\n"
         << "h1{font-size:1.4em;word-break:break-all}.name{width:14em;flex:none;overflow-wrap:anywhere}.bar{width:8em;height:0."
            "9em;background:#eee;flex:none;margin-top:0.2em}\n"
         << ".fill{height:100%;background:#1f77b4}.weight{width:3.5em;flex:none;font-variant-numeric:tabular-nums}\n"
         << ".elements{line-height:1.9}.e{padding:0.1em 0.25em;margin:0 0.1em;border-radius:3px;border:1px solid #ddd}\n"
         << ".missing{color:#999;font-style:italic}\n</style></head><body>\n<h1>" << html_escape(title) << "</h1>\n";
    for (const auto& p : predictions) {
        const auto& l = p.line;
        html << "<div class=\"record\"><div class=\"head\">" << html_escape(l["id"].get<std::string>()) << ": "
             << html_escape(l["prediction"].is_string() ? l["prediction"].get<std::string>() : l["prediction"].dump());
        if (!p.truth.empty()) html << " <span class=\"truth\">(true: " << html_escape(p.truth) << ")</span>";
        html << "</div>\n";
        // With an attribution: its modality scores as bars (relative to the largest magnitude) and its
        // element scores as shades, red for evidence for the prediction and blue against. Otherwise β
        // and γ = β·α.
        const bool attributed = l.contains("attribution"), weighted = attributed || !l["beta"].is_null();
        const auto modality_score = [&](const std::string& name) {
            return attributed ? l["attribution"]["modalities"][name].get<double>() : l["beta"][name].get<double>();
        };
        const auto element_score = [&](const std::string& name, std::size_t i) {
            return attributed ? l["attribution"]["elements"][name][i].get<double>()
                              : l["alpha"][name][i].get<double>() * l["beta"][name].get<double>();
        };
        double top = 0, top_modality = 0;  // the largest magnitudes of the record's scores
        if (weighted)
            for (const auto& m : schema.modalities()) {
                top_modality = std::max(top_modality, std::abs(modality_score(m.name)));
                for (std::size_t i = 0; i < l["elements"][m.name].size(); ++i)
                    top = std::max(top, std::abs(element_score(m.name, i)));
            }
        for (const auto& m : schema.modalities()) {
            const auto& elements = l["elements"][m.name];
            const double weight = weighted ? modality_score(m.name) : 0.0;
            html << "<div class=\"modality\"><div class=\"name\">" << html_escape(m.name) << "</div>";
            if (weighted) {
                const double width = attributed ? (top_modality > 0 ? std::abs(weight) / top_modality : 0.0) : weight;
                html << "<div class=\"bar\"><div class=\"fill\" style=\"width:" << std::round(1000 * width) / 10 << "%"
                     << (weight < 0 ? ";background:#888" : "") << "\"></div></div><div class=\"weight\">"
                     << std::round(weight * 1000) / 1000 << "</div>";
            }
            html << "<div class=\"elements\">";
            if (elements.empty()) html << "<span class=\"missing\">missing</span>";
            for (std::size_t i = 0; i < elements.size(); ++i) {
                const double score = weighted ? element_score(m.name, i) : 0.0;
                const double shade = top > 0 ? 0.8 * std::abs(score) / top : 0.0;
                html << "<span class=\"e\" style=\"background:rgba(" << (score < 0 ? "31,119,180," : "214,39,40,")
                     << std::round(shade * 100) / 100 << ")\" title=\"";
                if (attributed) html << html_escape(l["attribution"]["method"].get<std::string>()) << " " << score;
                else if (weighted) html << "α " << l["alpha"][m.name][i].get<double>() << ", γ " << score;
                html << "\">" << html_escape(elements[i].get<std::string>()) << "</span>";
            }
            html << "</div></div>\n";
        }
        html << "</div>\n";
    }
    html << "</body></html>\n";
    return html.str();
}

/// A short text explanation: the prediction, then the three modalities with the largest β and the
/// α of their elements.
void show(const prediction& p, const dm2s2::schema& schema, std::ostream& out)
{
    const auto& l = p.line;
    out << l["id"].get<std::string>() << ": predicted "
        << (l["prediction"].is_string() ? l["prediction"].get<std::string>() : l["prediction"].dump());
    if (!p.truth.empty()) out << " (true " << p.truth << ")";
    out << "\n";
    // The attribution when there is one, else β and α.
    const bool attributed = l.contains("attribution");
    if (!attributed && l["beta"].is_null()) return;
    const auto& modality_scores = attributed ? l["attribution"]["modalities"] : l["beta"];
    const auto& element_scores = attributed ? l["attribution"]["elements"] : l["alpha"];
    std::vector<std::pair<double, std::string>> modalities;
    for (const auto& m : schema.modalities())
        if (!l["elements"][m.name].empty()) modalities.emplace_back(modality_scores[m.name].get<double>(), m.name);
    std::sort(modalities.rbegin(), modalities.rend());
    char text[64];
    for (std::size_t k = 0; k < std::min<std::size_t>(3, modalities.size()); ++k) {
        const auto& [weight, name] = modalities[k];
        std::snprintf(text, sizeof text, "%.3f", weight);
        out << "  " << name << (attributed ? " " + l["attribution"]["method"].get<std::string>() + " " : " β ") << text << ":";
        for (std::size_t i = 0; i < l["elements"][name].size(); ++i) {
            std::snprintf(text, sizeof text, "%.2f", element_scores[name][i].get<double>());
            out << ' ' << l["elements"][name][i].get<std::string>() << '(' << text << ')';
        }
        out << "\n";
    }
}

/// Every attribution method the model supports and a random ranking, measured on `records`
/// (see the file comment).
template <class Model>
nlohmann::json measure_faithfulness(const Model& model, const dm2s2::record_encoder& encoder,
                                    const std::vector<dm2s2::json_record>& records)
{
    const auto task = encoder.task().type;
    std::vector<dm2s2::sequence_set> encoded;
    for (const auto& r : records) encoded.push_back(encoder.encode(r));
    // Records whose cue is known and whose prediction is right, with the cue's modality and element.
    struct cue {
        std::size_t record, modality, element;
    };
    std::vector<cue> cues;
    const auto logits = model.forward(encoded).logits;
    for (std::size_t b = 0; b < records.size(); ++b) {
        const auto& r = records[b];
        if (!r.value.contains("cue") || !encoder.has_target(r)) continue;
        const auto& c = r.value["cue"];
        if (!c.is_object() || !c.contains("modality") || !c["modality"].is_string() || !c.contains("element") ||
            !c["element"].is_number_unsigned())
            throw dm2s2::input_error(r.where + ": field 'cue' must be {\"modality\": name, \"element\": index}");
        std::vector<float> target(encoder.num_outputs());
        encoder.encode_target(r, target.data());
        const std::size_t predicted = dm2s2::predicted_output(task, logits.row(b), logits.dim(1));
        bool right = true;  // regression: every record counts
        if (task == dm2s2::task_type::multiclass || task == dm2s2::task_type::binary)
            right = predicted == static_cast<std::size_t>(target[0]);
        if (task == dm2s2::task_type::multilabel) right = target[predicted] == 1;
        if (right)
            cues.push_back({b, encoder.schema().index_of(c["modality"].get<std::string>()), c["element"].get<std::size_t>()});
    }
    nlohmann::json out = {{"records", records.size()}, {"cue_records", cues.size()}, {"methods", nlohmann::json::object()}};
    const dm2s2::faithfulness_options options{.task = task};
    const auto report = [&](const std::string& name, const dm2s2::attribution<float>& a, double seconds) {
        const auto f = dm2s2::evaluate_faithfulness(model, encoded, a, options);
        nlohmann::json j = {{"comprehensiveness", f.comprehensiveness},
                            {"sufficiency", f.sufficiency},
                            {"comprehensiveness_top1", f.comprehensiveness_top1},
                            {"sufficiency_top1", f.sufficiency_top1},
                            {"seconds", seconds}};
        if (!cues.empty()) {
            std::size_t hits = 0;
            for (const auto& c : cues) hits += dm2s2::points_at(a, c.record, c.modality, c.element);
            j["cue_hits"] = double(hits) / double(cues.size());
        }
        out["methods"][name] = j;
    };
    std::optional<dm2s2::attribution<float>> any;
    for (const auto method : dm2s2::all_attribution_methods) {
        if (!dm2s2::supports(method, model.config().pooling)) continue;
        const auto start = std::chrono::steady_clock::now();
        auto a = dm2s2::attribute(model, encoded, method, {.task = task});
        report(std::string(dm2s2::to_string(method)), a,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        any = std::move(a);
    }
    report("random", dm2s2::random_attribution(*any, 1), 0.0);
    return out;
}

}  // namespace

int main(int argc, char** argv)
{
    dm2s2::tools::fail_writes_past_file_size_limit();
    std::string model_dir, data, out, metrics_path, explain_path, threads = "1", shown = "0", precision = "fp32", method_name,
                                                                  faithfulness_path, faithfulness_records = "500", device = "cpu";
    dm2s2::tools::arguments args;
    args.option("--model", model_dir, true).option("--data", data, true).option("--out", out, true);
    args.option("--metrics", metrics_path).option("--explain", explain_path).option("--threads", threads).option("--show", shown);
    args.option("--precision", precision).option("--explain-method", method_name).option("--faithfulness", faithfulness_path);
    args.option("--faithfulness-records", faithfulness_records).option("--device", device);
    std::size_t show_count = 0, thread_count = 1, faithfulness_count = 0;
    std::optional<dm2s2::attribution_method> method;
    try {
        args.parse(argc, argv);
        thread_count = static_cast<std::size_t>(dm2s2::tools::parse_integer("--threads", threads, 1, 1024));
        show_count = static_cast<std::size_t>(dm2s2::tools::parse_integer("--show", shown, 0, 1 << 30));
        faithfulness_count =
            static_cast<std::size_t>(dm2s2::tools::parse_integer("--faithfulness-records", faithfulness_records, 1, 1 << 30));
        if (!dm2s2::parse_matmul_precision(precision))
            throw std::invalid_argument("--precision must be fp32, tf32 or bf16, not '" + precision + "'");
        if (device != "cpu" && device != "cuda")
            throw std::invalid_argument("--device must be cpu or cuda, not '" + device + "'");
        if (device == "cpu" && precision == "tf32")
            throw std::invalid_argument("--precision tf32 is the GPU's tensor-core mode: use it with --device cuda");
        if (device == "cuda" && (!method_name.empty() || !faithfulness_path.empty()))
            throw std::invalid_argument(
                "--device cuda runs predictions and attention explanations; --explain-method and --faithfulness run on the "
                "CPU only");
        if (!method_name.empty() && !(method = dm2s2::parse_attribution_method(method_name)))
            throw std::invalid_argument("--explain-method must be attention, occlusion, gradient or integrated-gradients, not '" +
                                        method_name + "'");
    } catch (const std::invalid_argument& e) {
        std::cerr
            << "dm2s2_predict: " << e.what()
            << " (usage: --model DIR --data D.jsonl --out P.jsonl [--metrics M.json] [--explain R.html] [--show N] [--threads T]"
               " [--precision fp32|tf32|bf16] [--explain-method attention|occlusion|gradient|integrated-gradients]"
               " [--faithfulness F.json] [--faithfulness-records N] [--device cpu|cuda])\n";
        return 2;
    }
    try {
        const auto pipeline = dm2s2::load_data_pipeline(model_dir);
        const auto& encoder = *pipeline.encoder;
        const auto products = *dm2s2::parse_matmul_precision(precision);
        const bool bf16 = device == "cpu" && products == dm2s2::matmul_precision::bf16;
        auto model = dm2s2::load_model<float>(
            model_dir, dm2s2::cpu_backend({.threads = thread_count,
                                           .precision = bf16 ? dm2s2::matmul_precision::bf16 : dm2s2::matmul_precision::fp32}));
#if defined(DM2S2_HAS_CUDA)
        std::optional<dm2s2::model<float, dm2s2::cuda_backend>> gpu;  // one upload of the parameters
        if (device == "cuda") gpu.emplace(model, dm2s2::cuda_backend(dm2s2::cuda_options{.precision = products}));
#else
        if (device == "cuda")
            throw dm2s2::error("--device cuda: this build has no CUDA backend (configure with -DDM2S2_CUDA=ON)");
#endif
        // Inference only: the encoder's weights in the products' layout, packed once (for bf16, rounded once).
        // The gradient methods run backward passes, which would unpack a copy of every weight each time.
        const bool backward_passes = !faithfulness_path.empty() || method == dm2s2::attribution_method::gradient ||
                                     method == dm2s2::attribution_method::integrated_gradients;
        if (device == "cpu" && (!backward_passes || bf16))
            model.pack_weights(bf16 ? dm2s2::weight_rounding::bf16 : dm2s2::weight_rounding::none);
        if (!(model.schema() == encoder.schema()))
            throw dm2s2::format_error(model_dir + ": data.json and config.json describe different schemas");
        const auto& task = encoder.task();
        const bool explained = dm2s2::explains(model.config().pooling);
        if (method && !dm2s2::supports(*method, model.config().pooling))
            throw dm2s2::config_error("--explain-method attention: " + std::string(dm2s2::to_string(model.config().pooling)) +
                                      " pooling has no attention weights; use occlusion, gradient or integrated-gradients");
        const std::size_t outputs = model.config().num_outputs;
        // Records stream through in batches: memory holds one batch, the output's lines go to a
        // temporary file put in place at the end, and only what the options need is kept: each
        // record's logits and target for --metrics, the first records for --faithfulness, the
        // predictions for the page (--explain) or the first N for --show.
        dm2s2::json_lines_reader reader(data);
        dm2s2::atomic_file_writer lines(out);
        std::vector<float> kept_logits, kept_targets;
        const std::size_t target_width = task.type == dm2s2::task_type::multiclass ? 1 : encoder.num_outputs();
        std::vector<dm2s2::json_record> measured;
        std::vector<prediction> predictions;
        constexpr std::size_t batch_size = 64;
        std::string text;
        for (bool more = true; more;) {
            std::vector<dm2s2::json_record> records;
            while (records.size() < batch_size) {
                auto r = reader.next();
                if (!r) break;
                records.push_back(std::move(*r));
            }
            more = records.size() == batch_size;
            if (records.empty()) break;
            std::vector<dm2s2::sequence_set> batch;
            for (const auto& r : records) batch.push_back(encoder.encode(r));
#if defined(DM2S2_HAS_CUDA)
            const auto result = gpu ? gpu->forward(batch, explained) : model.forward(batch, explained);
#else
            const auto result = model.forward(batch, explained);
#endif
            std::optional<dm2s2::attribution<float>> attribution;
            if (method) attribution = dm2s2::attribute(model, batch, *method, {.task = task.type});
            text.clear();
            for (std::size_t b = 0; b < batch.size(); ++b) {
                const auto& r = records[b];
                if (!metrics_path.empty()) {
                    kept_logits.insert(kept_logits.end(), result.logits.row(b), result.logits.row(b) + outputs);
                    kept_targets.resize(kept_targets.size() + target_width);
                    encoder.encode_target(r, kept_targets.data() + kept_targets.size() - target_width);
                }
                prediction p;
                p.line = {{"id", dm2s2::record_encoder::id_of(r)}};
                score(task, result.logits.row(b), outputs, p.line);
                ordered_json beta = ordered_json::object(), alpha = ordered_json::object(), elements = ordered_json::object();
                for (std::size_t m = 0; m < model.schema().size(); ++m) {
                    const auto& spec = model.schema()[m];
                    elements[spec.name] = encoder.element_strings(batch[b], m, std::min(batch[b].length(m), spec.max_length));
                    if (!explained) continue;
                    beta[spec.name] = result.explanation.beta_of(b, m);
                    const auto a = result.explanation.alpha_of(b, m);
                    alpha[spec.name] = std::vector<float>(a.begin(), a.end());
                }
                p.line["beta"] = explained ? beta : ordered_json();
                p.line["alpha"] = explained ? alpha : ordered_json();
                p.line["elements"] = elements;
                if (attribution) {
                    ordered_json by_modality = ordered_json::object(), by_element = ordered_json::object();
                    for (std::size_t m = 0; m < model.schema().size(); ++m) {
                        const auto& name = model.schema()[m].name;
                        by_modality[name] = attribution->modality_of(b, m);
                        const auto e = attribution->elements_of(b, m);
                        by_element[name] = std::vector<float>(e.begin(), e.end());
                    }
                    p.line["attribution"] = {{"method", method_name}, {"modalities", by_modality}, {"elements", by_element}};
                }
                if (encoder.has_target(r)) {
                    const auto& t = r.value[task.target];
                    p.truth = t.is_string() ? t.get<std::string>() : t.dump();
                }
                (text += p.line.dump()) += '\n';
                if (!explain_path.empty() || predictions.size() < show_count) predictions.push_back(std::move(p));
            }
            lines.write(text);
            if (!faithfulness_path.empty())
                for (auto& r : records)
                    if (measured.size() < faithfulness_count) measured.push_back(std::move(r));
        }
        if (reader.records() == 0) throw dm2s2::input_error(data + ": no records");
        const std::size_t count = reader.records();
        nlohmann::json metrics, faithfulness;  // computed before any file is put in place: a failure leaves none
        if (!metrics_path.empty()) {
            dm2s2::tensor<float> logits({count, outputs}), targets;
            std::copy(kept_logits.begin(), kept_logits.end(), logits.data());
            targets = task.type == dm2s2::task_type::multiclass ? dm2s2::tensor<float>({count})
                                                                : dm2s2::tensor<float>({count, target_width});
            std::copy(kept_targets.begin(), kept_targets.end(), targets.data());
            metrics = dm2s2::evaluate_metrics(task.type, logits, targets);
            metrics["records"] = count;
        }
        if (!faithfulness_path.empty()) faithfulness = measure_faithfulness(model, encoder, measured);
        lines.commit();
        if (!metrics_path.empty()) dm2s2::write_file_atomically(metrics_path, metrics.dump(2) + "\n");
        if (!faithfulness_path.empty()) dm2s2::write_file_atomically(faithfulness_path, faithfulness.dump(2) + "\n");
        if (!explain_path.empty())
            dm2s2::write_file_atomically(
                explain_path, explanation_page(predictions, model.schema(),
                                               "dm2s2 explanations" + (method ? " (" + method_name + ")" : std::string()) + ": " +
                                                   std::filesystem::path(data).filename().string()));
        std::cout << "dm2s2_predict: " << count << " records → " << out << "\n";
        if (!metrics_path.empty())
            for (const auto& [name, value] : metrics.items())
                if (name != "records") std::cout << "  " << name << " " << value.get<double>() << "\n";
        for (std::size_t i = 0; i < std::min(show_count, predictions.size()); ++i)
            show(predictions[i], model.schema(), std::cout);
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "dm2s2_predict: " << e.what() << "\n";
        return 1;
    }
}
