// The command-line tools as a user runs them: dm2s2_hf_forward against the HF golden outputs and
// its failures on bad input, dm2s2_tokenize against HuggingFace's tokenizers, and the examples.

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <sstream>
#include <set>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "dm2s2/io/safetensors.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::golden;
using dm2s2::testing::max_abs_diff;
namespace fs = std::filesystem;

namespace {

struct run_result {
    int status;
    std::string output;  // stdout and stderr
};

run_result run(const std::string& command)
{
    // One log per process and call: CTest runs the test cases of this file in parallel processes.
    static int calls = 0;
    const auto log =
        fs::path(DM2S2_TEST_SCRATCH_DIR) / ("tool_" + std::to_string(::getpid()) + "_" + std::to_string(calls++) + ".log");
    fs::create_directories(log.parent_path());
    const int raw = std::system((command + " > " + log.string() + " 2>&1").c_str());
    std::ifstream in(log);
    std::stringstream text;
    text << in.rdbuf();
    in.close();
    fs::remove(log);
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, text.str()};
}

/// Writes the golden inputs, optionally with the restart position ids and one tensor replaced.
fs::path write_inputs(const fs::path& dir, bool restart, const std::string& replace = "", tensor<std::int64_t> with = {})
{
    safetensors_writer w;
    for (const char* name : {"input_ids", "attention_mask", "token_type_ids"})
        w.add(name, name == replace ? with : golden().read_integers(name));
    if (restart) w.add("position_ids", golden().read_integers("position_ids_restart"));
    const auto path = dir / "inputs.safetensors";
    w.write(path);
    return path;
}

std::string hf_forward(const fs::path& inputs, const fs::path& output, const std::string& dtype)
{
    return std::string(DM2S2_HF_FORWARD) + " --model " + dm2s2::testing::tiny_bert_dir().string() + " --inputs " +
           inputs.string() + " --output " + output.string() + " --dtype " + dtype;
}

/// What a tool run with --device cuda does where there is no usable GPU (or in a build without the CUDA
/// backend): status 1, one line saying why, and no `output` written.
void check_refused_without_gpu(const run_result& r, const fs::path& output)
{
    CAPTURE(r.output);
    CHECK(r.status == 1);
#if defined(DM2S2_TOOLS_HAVE_CUDA)
    CHECK(r.output.find("cuda_backend: no usable CUDA device") != std::string::npos);
#else
    CHECK(r.output.find("this build has no CUDA backend") != std::string::npos);
#endif
    CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
    CHECK_FALSE(fs::exists(output));
}

}  // namespace

TEST_CASE("dm2s2_hf_forward reproduces the HF golden outputs in both precisions")
{
    const auto dir = dm2s2::testing::scratch_dir("hf_forward");
    for (const bool restart : {false, true})
        for (const std::string dtype : {"f64", "f32"}) {
            CAPTURE(restart);
            CAPTURE(dtype);
            const auto out_path = dir / ("out_" + dtype + ".safetensors");
            const auto r = run(hf_forward(write_inputs(dir, restart), out_path, dtype));
            REQUIRE_MESSAGE(r.status == 0, r.output);
            const auto out = safetensors_file::load(out_path);
            const double tolerance = dtype == "f64" ? 1e-10 : 2e-5;
            const std::string prefix = std::string("f64.") + (restart ? "restart." : "default.");
            CHECK(out.entry("last_hidden_state").type == (dtype == "f64" ? dtype::f64 : dtype::f32));
            for (const std::string name :
                 {"last_hidden_state", "pooler_output", "hidden_states.0", "hidden_states.1", "hidden_states.2"}) {
                CAPTURE(name);
                const auto got = out.read<double>(name);
                const auto expected = golden().read<double>(prefix + name);
                CHECK(got.shape() == expected.shape());
                CHECK(max_abs_diff(got.values(), expected.values()) <= tolerance);
            }
            CHECK_FALSE(out.contains("attentions.0"));
        }
}

TEST_CASE("dm2s2_hf_forward fails with one line and no output on bad input")
{
    const auto dir = dm2s2::testing::scratch_dir("hf_forward_bad");
    const auto out_path = dir / "out.safetensors";
    const auto expect_failure = [&](const std::string& command, const std::string& fragment) {
        CAPTURE(command);
        const auto r = run(command);
        CHECK(r.status != 0);
        CHECK(r.output.find(fragment) != std::string::npos);
        CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
        CHECK_FALSE(fs::exists(out_path));
    };
    tensor<std::int64_t> mask = golden().read_integers("attention_mask");
    mask[3] = 2;
    expect_failure(hf_forward(write_inputs(dir, false, "attention_mask", mask), out_path, "f32"), "attention_mask holds 2");
    tensor<std::int64_t> ids = golden().read_integers("input_ids");
    ids[5] = 30522;
    expect_failure(hf_forward(write_inputs(dir, false, "input_ids", ids), out_path, "f32"), "word id 30522");
    expect_failure(hf_forward(write_inputs(dir, false, "token_type_ids", tensor<std::int64_t>({3, 15})), out_path, "f64"),
                   "'token_type_ids' has shape [3, 15]");
    expect_failure(hf_forward(dir / "missing.safetensors", out_path, "f32"), "missing.safetensors: cannot open");
    expect_failure(hf_forward(write_inputs(dir, false), out_path, "f16"), "--dtype must be f32 or f64");
    std::ofstream(dir / "garbage.safetensors") << "not a safetensors file";
    expect_failure(hf_forward(dir / "garbage.safetensors", out_path, "f32"), "garbage.safetensors: header length");
    expect_failure(std::string(DM2S2_HF_FORWARD) + " --model x --bogus", "unknown argument '--bogus'");
    expect_failure(hf_forward(write_inputs(dir, false), out_path, "f32") + " --device tpu", "--device must be cpu or cuda");
}

TEST_CASE("dm2s2_hf_forward --device cuda gives the golden outputs on a GPU, or one line saying why it cannot")
{
    const auto dir = dm2s2::testing::scratch_dir("hf_forward_cuda");
    for (const std::string dtype : {"f64", "f32"}) {
        CAPTURE(dtype);
        const auto out_path = dir / ("out_" + dtype + ".safetensors");
        fs::remove(out_path);
        const auto r = run(hf_forward(write_inputs(dir, false), out_path, dtype) + " --device cuda");
        if (r.status != 0) {
            check_refused_without_gpu(r, out_path);
            continue;
        }
        const auto out = safetensors_file::load(out_path);
        for (const std::string name : {"last_hidden_state", "pooler_output", "hidden_states.2"}) {
            CAPTURE(name);
            CHECK(max_abs_diff(out.read<double>(name).values(), golden().read<double>("f64.default." + name).values()) <=
                  (dtype == "f64" ? 1e-10 : 2e-5));
        }
    }
}

TEST_CASE("the quickstart runs and prints an explanation for every record")
{
    const auto r = run(DM2S2_QUICKSTART);
    REQUIRE_MESSAGE(r.status == 0, r.output);
    CHECK(r.output.find("record 2  logits:") != std::string::npos);
    CHECK(r.output.find("(missing)") != std::string::npos);
    // On the GPU: the same lines after the device's name, each number within a unit of its last printed
    // digit (the GPU's sums round differently), or without a GPU, one line saying why.
    const auto gpu = run(std::string(DM2S2_QUICKSTART) + " --device cuda");
    if (gpu.status == 0) {
        CAPTURE(gpu.output);
        CHECK(gpu.output.starts_with("on "));
        const auto numbers = [](const std::string& text) {
            std::vector<double> out;
            const std::regex number("[-+]?[0-9]+\\.[0-9]+");
            for (auto it = std::sregex_iterator(text.begin(), text.end(), number); it != std::sregex_iterator(); ++it)
                out.push_back(std::stod(it->str()));
            return out;
        };
        const std::string lines = gpu.output.substr(gpu.output.find('\n') + 1);
        const auto on_cpu = numbers(r.output), on_device = numbers(lines);
        REQUIRE(on_device.size() == on_cpu.size());
        for (std::size_t i = 0; i < on_cpu.size(); ++i) CHECK(std::abs(on_device[i] - on_cpu[i]) <= 1.01e-3);
        const std::regex digits("[-+0-9]");  // signs too: a logit near 0 may print as -0.0000 on one side
        CHECK(std::regex_replace(lines, digits, "#") == std::regex_replace(r.output, digits, "#"));
    } else {
        check_refused_without_gpu(gpu, dm2s2::testing::scratch_dir("quickstart_gpu") / "none");
    }
    CHECK(run(std::string(DM2S2_QUICKSTART) + " --device tpu").status == 2);
}

TEST_CASE("the training example trains, saves, reloads and explains")
{
    const auto dir = dm2s2::testing::scratch_dir("train_planted");
    const auto r = run(std::string(DM2S2_TRAIN_PLANTED) + " " + (dir / "model").string());
    REQUIRE_MESSAGE(r.status == 0, r.output);
    // Not a terminal: progress comes as plain lines, never carriage returns.
    CHECK(r.output.find("epoch 1/6 step 37/38") == std::string::npos);
    CHECK(r.output.find("epoch 1/6 step 38/38  loss") != std::string::npos);
    CHECK(r.output.find('\r') == std::string::npos);
    CHECK(r.output.find("(best)") != std::string::npos);
    const auto at = r.output.find("test accuracy ");
    REQUIRE(at != std::string::npos);
    CHECK(std::stod(r.output.substr(at + 14)) >= 0.9);
    CHECK(r.output.find("record 2: class") != std::string::npos);
    CHECK(fs::exists(dir / "model" / "model.safetensors"));
    CHECK(fs::exists(dir / "model" / "config.json"));
    CHECK(fs::exists(dir / "model" / "training_state.safetensors"));
}

#ifdef DM2S2_TOKENIZE
TEST_CASE("dm2s2_tokenize reproduces HuggingFace's ids for every reference case, single and pair")
{
    std::ifstream reference_file(dm2s2::testing::data_dir() / "tokenizer" / "tokenizer_a.json");
    const auto reference = nlohmann::json::parse(reference_file);
    const auto vocab = dm2s2::testing::bert_vocab().string();
    const auto dir = dm2s2::testing::scratch_dir("tokenize");
    for (const bool pair : {false, true})
        for (const bool lower : {true, false}) {
            CAPTURE(pair);
            CAPTURE(lower);
            std::ofstream input(dir / "in.jsonl");
            std::vector<nlohmann::json> expected;
            for (const nlohmann::json& c : reference["cases"]) {
                if (c.contains("pair") != pair || c["do_lower_case"].get<bool>() != lower) continue;
                input << (pair ? c["pair"] : c["text"]).dump() << '\n';
                expected.push_back(pair ? nlohmann::json{{"input_ids", c["ids_fast"]}, {"token_type_ids", c["token_type_ids"]}}
                                        : c["ids_fast"]);
            }
            input.close();
            const auto r = run(std::string(DM2S2_TOKENIZE) + " --vocab " + vocab + (lower ? "" : " --cased") +
                               (pair ? " --pair --max-length 16" : "") + " < " + (dir / "in.jsonl").string());
            REQUIRE_MESSAGE(r.status == 0, r.output);
            std::istringstream lines(r.output);
            std::size_t k = 0;
            for (std::string line; std::getline(lines, line); ++k) {
                REQUIRE(k < expected.size());
                CHECK(nlohmann::json::parse(line) == expected[k]);
            }
            CHECK(k == expected.size());
        }
}

TEST_CASE("dm2s2_tokenize names the line of bad input")
{
    const auto vocab = dm2s2::testing::bert_vocab().string();
    const auto dir = dm2s2::testing::scratch_dir("tokenize_errors");
    std::ofstream(dir / "bad.jsonl") << "\"fine\"\n{not json\n";
    auto r = run(std::string(DM2S2_TOKENIZE) + " --vocab " + vocab + " < " + (dir / "bad.jsonl").string());
    CHECK(r.status == 1);
    CHECK(r.output.find("[101,2986,102]") != std::string::npos);
    CHECK(r.output.find("dm2s2_tokenize: stdin line 2: not JSON") != std::string::npos);
    std::ofstream(dir / "pair.jsonl") << "[\"only one\"]\n";
    r = run(std::string(DM2S2_TOKENIZE) + " --vocab " + vocab + " --pair < " + (dir / "pair.jsonl").string());
    CHECK(r.status == 1);
    CHECK(r.output.find("stdin line 1: expected an array of two strings") != std::string::npos);
    r = run(std::string(DM2S2_TOKENIZE) + " --vocab /nonexistent.txt < " + (dir / "pair.jsonl").string());
    CHECK(r.status == 1);
    CHECK(r.output.find("/nonexistent.txt: cannot open the vocabulary") != std::string::npos);
    r = run(std::string(DM2S2_TOKENIZE) + " --vocab " + vocab + " --bogus");
    CHECK(r.status == 2);
    // Output cut short by the file size limit (8 KB, far below the ids of 4000 lines), as by a full
    // disk, is an error rather than a shorter result.
    {
        std::ofstream many(dir / "many.jsonl");
        for (int i = 0; i < 4000; ++i) many << "\"a line of text to tokenize\"\n";
    }
    r = run("(prlimit --fsize=8000 " + std::string(DM2S2_TOKENIZE) + " --vocab " + vocab + " < " + (dir / "many.jsonl").string() +
            " 2> " + (dir / "error.txt").string() + ")");
    CHECK(r.status == 1);
    std::ifstream error_file(dir / "error.txt");
    const std::string error_text((std::istreambuf_iterator<char>(error_file)), std::istreambuf_iterator<char>());
    CHECK_MESSAGE(error_text.find("dm2s2_tokenize: standard output: write failed") != std::string::npos, error_text);
}
#endif

#ifdef DM2S2_TRAIN_TOOL
namespace {

/// The first `count` lines of a shipped movies split, as a scratch file.
fs::path movies_subset(const fs::path& dir, const std::string& split, std::size_t count)
{
    std::ifstream in(dm2s2::testing::project_data_dir() / "movies" / (split + ".jsonl"));
    const auto path = dir / (split + ".jsonl");
    std::ofstream out(path);
    std::string line;
    for (std::size_t i = 0; i < count && std::getline(in, line); ++i) out << line << '\n';
    return path;
}

nlohmann::json read_json(const fs::path& path)
{
    std::ifstream in(path);
    return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("dm2s2_train and dm2s2_predict run the JSON Lines workflow on the movies data")
{
    const auto dir = dm2s2::testing::scratch_dir("movies_tools");
    const auto schema = (dm2s2::testing::project_data_dir() / "movies" / "schema.json").string();
    std::ofstream(dir / "small.json") << R"({"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64})";
    const auto train = movies_subset(dir, "train", 240), valid = movies_subset(dir, "valid", 60),
               test = movies_subset(dir, "test", 40);
    const auto model = dir / "model";
    auto r = run(std::string(DM2S2_TRAIN_TOOL) + " --schema " + schema + " --train " + train.string() + " --valid " +
                 valid.string() + " --out " + model.string() + " --vocab " + dm2s2::testing::bert_vocab().string() +
                 " --epochs 2 --config " + (dir / "small.json").string());
    REQUIRE_MESSAGE(r.status == 0, r.output);
    CHECK(r.output.find("epoch 2/2: train loss") != std::string::npos);
    for (const char* file :
         {"config.json", "model.safetensors", "data.json", "vocab.txt", "metrics.json", "training_state.safetensors"})
        CHECK_MESSAGE(fs::exists(model / file), file);
    const auto trained = read_json(model / "metrics.json");
    CHECK(trained["history"].size() == 2);
    CHECK(trained["validation"].contains("accuracy"));

    r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + model.string() + " --data " + test.string() + " --out " +
            (dir / "p.jsonl").string() + " --metrics " + (dir / "m.json").string() + " --explain " + (dir / "r.html").string());
    REQUIRE_MESSAGE(r.status == 0, r.output);
    const auto metrics = read_json(dir / "m.json");
    CHECK(metrics["records"] == 40);
    CHECK(metrics["accuracy"].get<double>() >= 0.0);
    CHECK(metrics.contains("macro_f1"));
    std::ifstream predictions(dir / "p.jsonl");
    std::size_t lines = 0;
    for (std::string line; std::getline(predictions, line); ++lines) {
        const auto p = nlohmann::json::parse(line);
        CHECK(p["scores"].size() == 12);
        double beta = 0, scores = 0;
        for (const auto& [name, w] : p["beta"].items()) beta += w.get<double>();
        for (const auto& [label, s] : p["scores"].items()) scores += s.get<double>();
        CHECK(beta == doctest::Approx(1.0).epsilon(1e-5));
        CHECK(scores == doctest::Approx(1.0).epsilon(1e-9));
        CHECK(p["scores"].contains(p["prediction"].get<std::string>()));
        CHECK(p["alpha"]["title"].size() == p["elements"]["title"].size());
        if (lines == 0) CHECK(p["id"] == "film-2672");
    }
    CHECK(lines == 40);

    // Two threads predict the same scores.
    r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + model.string() + " --data " + test.string() + " --out " +
            (dir / "p2.jsonl").string() + " --threads 2");
    REQUIRE_MESSAGE(r.status == 0, r.output);
    std::ifstream one_thread(dir / "p.jsonl"), two_threads(dir / "p2.jsonl");
    for (std::string a, b; std::getline(one_thread, a) && std::getline(two_threads, b);) {
        const auto pa = nlohmann::json::parse(a), pb = nlohmann::json::parse(b);
        CHECK(pa["prediction"] == pb["prediction"]);
        for (const auto& [label, score] : pa["scores"].items())
            CHECK(score.get<double>() == doctest::Approx(pb["scores"][label].get<double>()).epsilon(1e-5));
    }
    // bf16 products, the weights packed rounded: the scores of fp32 within 1e-2.
    r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + model.string() + " --data " + test.string() + " --out " +
            (dir / "p_bf16.jsonl").string() + " --precision bf16 --threads 2");
    REQUIRE_MESSAGE(r.status == 0, r.output);
    std::ifstream fp32_lines(dir / "p.jsonl"), bf16_lines(dir / "p_bf16.jsonl");
    std::size_t compared = 0;
    double largest_difference = 0;
    for (std::string a, b; std::getline(fp32_lines, a) && std::getline(bf16_lines, b); ++compared) {
        const auto pa = nlohmann::json::parse(a), pb = nlohmann::json::parse(b);
        CHECK(pa["id"] == pb["id"]);
        for (const auto& [label, score] : pa["scores"].items())
            largest_difference = std::max(largest_difference, std::abs(score.get<double>() - pb["scores"][label].get<double>()));
    }
    CHECK(compared == 40);
    CHECK(largest_difference < 1e-2);
    CHECK(largest_difference > 1e-5);  // bf16 did run: fp32 on one and two threads agrees far more closely
    MESSAGE("largest score difference, bf16 against fp32: ", largest_difference);
    r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + model.string() + " --data " + test.string() + " --out " +
            (dir / "p_bad.jsonl").string() + " --precision fp16");
    CHECK(r.status == 2);
    CHECK(r.output.find("--precision must be fp32, tf32 or bf16, not 'fp16'") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "p_bad.jsonl"));
    r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + model.string() + " --data " + test.string() + " --out " +
            (dir / "p_bad.jsonl").string() + " --precision tf32");
    CHECK(r.status == 2);
    CHECK(r.output.find("--precision tf32 is the GPU's tensor-core mode: use it with --device cuda") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "p_bad.jsonl"));
    // On the GPU: the CPU's fp32 scores within 1e-5 in fp32 and 1e-2 with bf16 products (as on the CPU), or
    // where there is no GPU, one line saying why and no output.
    for (const auto& mode : {std::pair<std::string, double>{"fp32", 1e-5}, {"bf16", 1e-2}}) {
        const std::string& precision = mode.first;
        const double tolerance = mode.second;
        CAPTURE(precision);
        const auto gpu_out = dir / ("p_cuda_" + precision + ".jsonl");
        r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + model.string() + " --data " + test.string() + " --out " +
                gpu_out.string() + " --device cuda --precision " + precision);
        if (r.status != 0) {
            check_refused_without_gpu(r, gpu_out);
            continue;
        }
        std::ifstream cpu_lines(dir / "p.jsonl"), gpu_lines(gpu_out);
        std::size_t same = 0;
        for (std::string a, b; std::getline(cpu_lines, a) && std::getline(gpu_lines, b); ++same) {
            const auto pa = nlohmann::json::parse(a), pb = nlohmann::json::parse(b);
            for (const auto& [label, score] : pa["scores"].items())
                CHECK(score.get<double>() == doctest::Approx(pb["scores"][label].get<double>()).epsilon(tolerance));
        }
        CHECK(same == 40);
    }
    r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + model.string() + " --data " + test.string() + " --out " +
            (dir / "p_bad.jsonl").string() + " --device cuda --explain-method occlusion");
    CHECK(r.status == 2);
    CHECK(r.output.find("--explain-method and --faithfulness run on the CPU only") != std::string::npos);

    // Training on the GPU: the CPU run's validation metrics within 1e-4, or without a device, one line
    // saying why and no model directory.
    const auto gpu_model = dir / "model_cuda";
    r = run(std::string(DM2S2_TRAIN_TOOL) + " --schema " + schema + " --train " + train.string() + " --valid " + valid.string() +
            " --out " + gpu_model.string() + " --vocab " + dm2s2::testing::bert_vocab().string() + " --epochs 2 --config " +
            (dir / "small.json").string() + " --device cuda");
    if (r.status == 0) {
        const auto on_gpu = read_json(gpu_model / "metrics.json");
        CHECK(on_gpu["validation"]["loss"].get<double>() ==
              doctest::Approx(trained["validation"]["loss"].get<double>()).epsilon(1e-4));
    } else {
        check_refused_without_gpu(r, gpu_model / "model.safetensors");
    }

    // bf16 products in training, on the CPU and the GPU: fp32 parameters, the validation loss of the fp32
    // run within 5e-2 after two epochs; tf32 is the GPU's mode alone.
    const auto train_in = [&](const fs::path& out, const std::string& arguments) {
        return run(std::string(DM2S2_TRAIN_TOOL) + " --schema " + schema + " --train " + train.string() + " --valid " +
                   valid.string() + " --out " + out.string() + " --vocab " + dm2s2::testing::bert_vocab().string() +
                   " --epochs 2 --config " + (dir / "small.json").string() + " " + arguments);
    };
    for (const std::string device : {"cpu", "cuda"}) {
        CAPTURE(device);
        const auto bf16_model = dir / ("model_bf16_" + device);
        r = train_in(bf16_model, "--precision bf16 --device " + device);
        if (r.status == 0) {
            CHECK(r.output.find("bf16 products") != std::string::npos);
            const double fp32_loss = trained["validation"]["loss"].get<double>(),
                         bf16_loss = read_json(bf16_model / "metrics.json")["validation"]["loss"].get<double>();
            MESSAGE(device << ": validation loss " << bf16_loss << " with bf16 products, " << fp32_loss << " with fp32");
            CHECK(bf16_loss == doctest::Approx(fp32_loss).epsilon(5e-2));
            CHECK(bf16_loss != fp32_loss);  // the products really were rounded
        } else {
            CHECK(device == "cuda");
            check_refused_without_gpu(r, bf16_model / "model.safetensors");
        }
    }
    r = train_in(dir / "model_tf32", "--precision tf32");
    CHECK(r.status == 2);
    CHECK(r.output.find("--precision tf32 is the GPU's tensor-core mode: use it with --device cuda") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "model_tf32"));

    std::ifstream page_file(dir / "r.html");
    const std::string page((std::istreambuf_iterator<char>(page_file)), std::istreambuf_iterator<char>());
    CHECK(page.find("film-2672: ") != std::string::npos);
    CHECK(page.find("(true: Horror)") != std::string::npos);
    CHECK(page.find(">raven</span>") != std::string::npos);  // the title's word pieces, readable
    CHECK(page.find(">##ous</span>") != std::string::npos);
    CHECK(page.find("http") == std::string::npos);  // self-contained

    // Rendered by a real browser when one is installed: the page must not come out blank.
    if (std::system("command -v chromium > /dev/null 2>&1") == 0) {
        std::ofstream(dir / "blank.html") << "<!DOCTYPE html><html><body></body></html>";
        const auto shot = [&](const fs::path& html, const fs::path& png) {
            return run("chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,1200 --screenshot=" +
                       png.string() + " file://" + html.string());
        };
        REQUIRE_MESSAGE(shot(dir / "r.html", dir / "r.png").status == 0, "chromium failed");
        REQUIRE(shot(dir / "blank.html", dir / "blank.png").status == 0);
        MESSAGE("screenshot bytes: explanation ", fs::file_size(dir / "r.png"), ", blank page ",
                fs::file_size(dir / "blank.png"));
        CHECK(fs::file_size(dir / "r.png") > 5 * fs::file_size(dir / "blank.png"));
    } else {
        MESSAGE("chromium is not installed: the explanation page was not rendered");
    }
}

TEST_CASE("dm2s2_predict explains with every attribution method and measures their faithfulness on the planted cues")
{
    const auto dir = dm2s2::testing::scratch_dir("cue_tools");
    const auto data = dir / "data";
    auto r = run(std::string(DM2S2_TRAIN_PLANTED) + " --write-cue-data " + data.string());
    REQUIRE_MESSAGE(r.status == 0, r.output);
    const auto train = [&](const std::string& name, const std::string& extra) {
        return run(std::string(DM2S2_TRAIN_TOOL) + " --schema " + (data / "schema.json").string() + " --train " +
                   (data / "train.jsonl").string() + " --valid " + (data / "valid.jsonl").string() + " --vocab " +
                   (data / "vocab.txt").string() + " --out " + (dir / name).string() + " " + extra);
    };
    r = train("model", "--epochs 2");  // the default model
    REQUIRE_MESSAGE(r.status == 0, r.output);
    const auto predict = [&](const std::string& model, const std::string& out, const std::string& extra) {
        return run(std::string(DM2S2_PREDICT_TOOL) + " --model " + (dir / model).string() + " --data " +
                   (data / "test.jsonl").string() + " --out " + (dir / out).string() + " " + extra);
    };
    std::vector<nlohmann::json> test_records;
    {
        std::ifstream in(data / "test.jsonl");
        for (std::string line; std::getline(in, line);) test_records.push_back(nlohmann::json::parse(line));
    }
    for (const std::string method : {"attention", "occlusion", "gradient", "integrated-gradients"}) {
        CAPTURE(method);
        r = predict("model", method + ".jsonl",
                    "--explain-method " + method + " --explain " + (dir / (method + ".html")).string());
        REQUIRE_MESSAGE(r.status == 0, r.output);
        std::ifstream lines(dir / (method + ".jsonl"));
        std::size_t count = 0, cues = 0, hits = 0;
        for (std::string line; std::getline(lines, line); ++count) {
            const auto p = nlohmann::json::parse(line);
            REQUIRE(p.contains("attribution"));
            const auto& a = p["attribution"];
            CHECK(a["method"] == method);
            CHECK(p["beta"].is_object());  // the attention weights stay beside any attribution
            std::string top_modality;
            double top = -INFINITY;
            for (const auto& [name, elements] : p["elements"].items()) {
                REQUIRE(a["elements"].contains(name));
                CHECK(a["elements"][name].size() == elements.size());
                if (elements.empty()) CHECK(a["modalities"][name] == 0.0);
                else if (a["modalities"][name].get<double>() > top)
                    top = a["modalities"][name].get<double>(), top_modality = name;
            }
            const auto& record = test_records.at(count);
            if (!record.contains("cue") || p["prediction"] != "yes") continue;
            ++cues;
            const std::string cue_modality = record["cue"]["modality"];
            const auto& scores = a["elements"][cue_modality];
            const auto best = std::max_element(scores.begin(), scores.end(), [](const auto& x, const auto& y) {
                return x.template get<double>() < y.template get<double>();
            });
            hits +=
                top_modality == cue_modality && std::size_t(best - scores.begin()) == record["cue"]["element"].get<std::size_t>();
        }
        CHECK(count == test_records.size());
        REQUIRE(cues >= 200);
        MESSAGE(method, ": the cue on top in ", hits, " of ", cues, " correctly predicted positives");
        if (method != "gradient") CHECK(double(hits) / double(cues) >= 0.9);  // gradient × input is a local linearisation
        std::ifstream page_file(dir / (method + ".html"));
        const std::string page((std::istreambuf_iterator<char>(page_file)), std::istreambuf_iterator<char>());
        CHECK(page.find("dm2s2 explanations (" + method + ")") != std::string::npos);
    }

    r = predict("model", "f.jsonl", "--faithfulness " + (dir / "f.json").string() + " --faithfulness-records 300");
    REQUIRE_MESSAGE(r.status == 0, r.output);
    const auto f = read_json(dir / "f.json");
    CHECK(f["records"] == 300);
    CHECK(f["cue_records"].get<std::size_t>() >= 100);
    for (const char* method : {"attention", "occlusion", "gradient", "integrated-gradients", "random"}) {
        CAPTURE(method);
        REQUIRE(f["methods"].contains(method));
        for (const char* field : {"comprehensiveness", "sufficiency", "comprehensiveness_top1", "sufficiency_top1", "cue_hits"})
            CHECK(f["methods"][method].contains(field));
    }
    const auto& m = f["methods"];
    CHECK(m["occlusion"]["comprehensiveness"].get<double>() > m["random"]["comprehensiveness"].get<double>() + 0.2);
    CHECK(m["occlusion"]["sufficiency"].get<double>() < m["random"]["sufficiency"].get<double>() - 0.2);
    CHECK(m["attention"]["cue_hits"].get<double>() >= 0.9);
    CHECK(m["random"]["cue_hits"].get<double>() < 0.3);

    // Refusals: an unknown method (usage, 2) and attention for a pooling without weights (1); nothing written.
    r = predict("model", "bad.jsonl", "--explain-method saliency");
    CHECK(r.status == 2);
    CHECK(r.output.find("--explain-method must be attention, occlusion, gradient or integrated-gradients, not 'saliency'") !=
          std::string::npos);
    r = train("cls", "--epochs 1 --pooling cls");
    REQUIRE_MESSAGE(r.status == 0, r.output);
    r = predict("cls", "bad.jsonl", "--explain-method attention");
    CHECK(r.status == 1);
    CHECK(r.output.find("cls pooling has no attention weights; use occlusion, gradient or integrated-gradients") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(dir / "bad.jsonl"));
    r = predict("cls", "cls.jsonl", "--explain-method occlusion");
    REQUIRE_MESSAGE(r.status == 0, r.output);
    std::ifstream cls_lines(dir / "cls.jsonl");
    std::string first;
    std::getline(cls_lines, first);
    const auto p = nlohmann::json::parse(first);
    CHECK(p["beta"].is_null());
    CHECK(p["attribution"]["method"] == "occlusion");
}

TEST_CASE("dm2s2_predict writes the scores of binary, multilabel and regression tasks")
{
    const auto dir = dm2s2::testing::scratch_dir("task_tools");
    std::ofstream(dir / "small.json") << R"({"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32})";
    const std::map<std::string, std::pair<std::string, std::string>> tasks = {// type → (target of even, odd records)
                                                                              {"binary", {"\"ham\"", "\"spam\""}},
                                                                              {"multilabel", {"[\"a\"]", "[\"a\", \"b\"]"}},
                                                                              {"regression", {"1.5", "-2"}}};
    for (const auto& task : tasks) {
        const std::string type = task.first;  // a plain name: clang 14 cannot capture structured bindings
        const auto& targets = task.second;
        CAPTURE(type);
        std::ofstream(dir / "schema.json")
            << R"({"modalities": [{"name": "tag", "kind": "categorical"}, {"name": "x", "kind": "numeric"}],
            "task": {"type": ")"
            << type << R"(", "target": "y"}})";
        std::ofstream data(dir / "data.jsonl");
        for (int i = 0; i < 40; ++i)
            data << R"({"tag": ")" << (i % 2 ? "odd" : "even") << R"(", "x": )" << i << R"(, "y": )"
                 << (i % 2 ? targets.second : targets.first) << "}\n";
        data.close();
        const auto model = dir / ("model_" + type);
        auto r = run(std::string(DM2S2_TRAIN_TOOL) + " --schema " + (dir / "schema.json").string() + " --train " +
                     (dir / "data.jsonl").string() + " --out " + model.string() + " --epochs 2 --config " +
                     (dir / "small.json").string());
        REQUIRE_MESSAGE(r.status == 0, r.output);
        r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + model.string() + " --data " + (dir / "data.jsonl").string() +
                " --out " + (dir / "p.jsonl").string() + " --metrics " + (dir / "m.json").string());
        REQUIRE_MESSAGE(r.status == 0, r.output);
        std::ifstream in(dir / "p.jsonl");
        std::string line;
        std::getline(in, line);
        const auto p = nlohmann::json::parse(line);
        const auto metrics = read_json(dir / "m.json");
        if (type == "binary") {
            CHECK(p["scores"].size() == 2);
            CHECK(p["scores"]["ham"].get<double>() + p["scores"]["spam"].get<double>() == doctest::Approx(1.0));
            CHECK((p["prediction"] == "ham" || p["prediction"] == "spam"));
            for (const char* key : {"accuracy", "f1", "roc_auc"}) CHECK_MESSAGE(metrics.contains(key), key);
        } else if (type == "multilabel") {
            CHECK(p["scores"].size() == 2);
            CHECK(p["prediction"].is_array());
            for (const char* key : {"micro_f1", "macro_f1", "weighted_f1", "samples_f1"})
                CHECK_MESSAGE(metrics.contains(key), key);
        } else {
            CHECK(p["prediction"].is_number());
            CHECK(p["scores"].empty());
            for (const char* key : {"rmse", "mae"}) CHECK_MESSAGE(metrics.contains(key), key);
        }
        CHECK(p["elements"]["tag"] == nlohmann::json::array({"even"}));
        CHECK(p["elements"]["x"] == nlohmann::json::array({"0"}));
    }
}

TEST_CASE("dm2s2_train and dm2s2_predict refuse bad input with the file, line and field")
{
    const auto dir = dm2s2::testing::scratch_dir("movies_tool_errors");
    const auto schema = (dm2s2::testing::project_data_dir() / "movies" / "schema.json").string();
    const auto vocab = dm2s2::testing::bert_vocab().string();
    std::ofstream(dir / "bad.jsonl") << R"({"title": "Up", "genre": "Drama"})" << '\n' << R"({"title": "Down"})" << '\n';
    auto r = run(std::string(DM2S2_TRAIN_TOOL) + " --schema " + schema + " --train " + (dir / "bad.jsonl").string() + " --out " +
                 (dir / "m").string() + " --vocab " + vocab);
    CHECK(r.status == 1);
    CHECK(r.output.find("bad.jsonl:2: target 'genre': missing (every training record needs one)") != std::string::npos);
    CHECK(!fs::exists(dir / "m" / "model.safetensors"));
    r = run(std::string(DM2S2_TRAIN_TOOL) + " --schema " + schema + " --train " + (dir / "bad.jsonl").string() + " --out " +
            (dir / "m").string());
    CHECK(r.status == 1);
    CHECK(r.output.find("modality 'title' is text: a WordPiece vocabulary is needed (--vocab)") != std::string::npos);
    r = run(std::string(DM2S2_TRAIN_TOOL) + " --schema " + schema + " --out x --pooling max");
    CHECK(r.status == 2);
    CHECK(r.output.find("--train is required") != std::string::npos);
    r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + (dir / "none").string() + " --data x --out y");
    CHECK(r.status == 1);
    CHECK(r.output.find("data.json") != std::string::npos);
}
TEST_CASE("dm2s2_train past the file size limit ends with an error naming the file and leaves the earlier model as it was")
{
    const auto dir = dm2s2::testing::scratch_dir("movies_file_size_limit");
    const auto schema = (dm2s2::testing::project_data_dir() / "movies" / "schema.json").string();
    std::ofstream(dir / "small.json") << R"({"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64})";
    const auto train = movies_subset(dir, "train", 40), model = dir / "model";
    const auto command = std::string(DM2S2_TRAIN_TOOL) + " --schema " + schema + " --train " + train.string() + " --vocab " +
                         dm2s2::testing::bert_vocab().string() + " --epochs 1 --config " + (dir / "small.json").string() +
                         " --out " + model.string();
    auto r = run(command);
    REQUIRE_MESSAGE(r.status == 0, r.output);
    const auto contents = [&] {
        std::map<std::string, std::string> files;
        for (const auto& e : fs::directory_iterator(model)) {
            std::ifstream in(e.path(), std::ios::binary);
            files[e.path().filename().string()] = std::string(std::istreambuf_iterator<char>(in), {});
        }
        return files;
    };
    const auto before = contents();
    // A file size limit of 8 MB (prlimit, in bytes; an MPI build's start needs a few MB) is below the
    // training checkpoint's 12 MB: its write fails, as on a full disk, and is reported instead of
    // SIGXFSZ killing the process.
    r = run("prlimit --fsize=8000000 " + command);
    CHECK(r.status == 1);
    CHECK_MESSAGE(
        r.output.find((model / "training_state.safetensors").string() + ": write failed: File too large") != std::string::npos,
        r.output);
    CHECK(contents() == before);  // the same files, byte for byte: nothing half-written, no temporary left
}

#ifdef DM2S2_KILL_SHIM
namespace {

/// `j` without the wall-clock times ("seconds", "train_seconds"), which differ between any two runs.
nlohmann::json without_times(nlohmann::json j)
{
    if (j.is_object()) {
        j.erase("seconds");
        j.erase("train_seconds");
        for (auto& [key, value] : j.items()) value = without_times(value);
    } else if (j.is_array()) {
        for (auto& value : j) value = without_times(value);
    }
    return j;
}

std::string file_bytes(const fs::path& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Checks that the files of model directory `dir` are those of `reference`: the model, its config,
/// the data pipeline and vocabulary byte for byte, the metrics and the training checkpoint (every
/// tensor byte for byte) up to their wall-clock times; and that nothing else is there.
void check_same_run(const fs::path& dir, const fs::path& reference)
{
    std::set<std::string> names, expected;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    for (const auto& e : fs::directory_iterator(reference)) expected.insert(e.path().filename().string());
    CHECK(names == expected);
    for (const char* name : {"model.safetensors", "config.json", "data.json", "vocab.txt"}) {
        CAPTURE(name);
        CHECK(file_bytes(dir / name) == file_bytes(reference / name));
    }
    CHECK(without_times(read_json(dir / "metrics.json")) == without_times(read_json(reference / "metrics.json")));
    const auto a = safetensors_file::load(dir / "training_state.safetensors");
    const auto b = safetensors_file::load(reference / "training_state.safetensors");
    std::string differing;
    for (const auto& entry : b.entries()) {
        const auto y = b.raw(entry.name);
        const auto x = a.contains(entry.name) ? a.raw(entry.name) : std::span<const std::byte>();
        if (!std::equal(x.begin(), x.end(), y.begin(), y.end())) differing += " " + entry.name;
    }
    CHECK(a.entries().size() == b.entries().size());
    CHECK_MESSAGE(differing.empty(), "tensors of training_state.safetensors that differ:" << differing);
    for (const char* key : {"dm2s2.config", "dm2s2.optimizer"}) CHECK(a.metadata().at(key) == b.metadata().at(key));
    CHECK(without_times(nlohmann::json::parse(a.metadata().at("dm2s2.trainer"))) ==
          without_times(nlohmann::json::parse(b.metadata().at("dm2s2.trainer"))));
}

}  // namespace

TEST_CASE("dm2s2_train killed at every write into its directory resumes to the files of an uninterrupted run")
{
    const auto dir = fs::canonical(dm2s2::testing::scratch_dir("movies_kill_resume"));
    const auto schema = (dm2s2::testing::project_data_dir() / "movies" / "schema.json").string();
    std::ofstream(dir / "small.json") << R"({"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,)"
                                         R"( "intermediate_size": 32})";
    const auto train = movies_subset(dir, "train", 40), valid = movies_subset(dir, "valid", 12);
    // Three epochs of five steps, a checkpoint every second step and at each epoch's end, the best
    // epoch's model on validation, then the data pipeline and the metrics.
    const auto command = [&](const fs::path& out) {
        return std::string(DM2S2_TRAIN_TOOL) + " --schema " + schema + " --train " + train.string() + " --valid " +
               valid.string() + " --vocab " + dm2s2::testing::bert_vocab().string() + " --config " +
               (dir / "small.json").string() + " --epochs 3 --batch-size 8 --checkpoint-every 2 --resume --out " + out.string();
    };
    const auto shim = [&](const fs::path& out, const std::string& settings) {
        return "LD_PRELOAD=" DM2S2_KILL_SHIM " KILL_SHIM_DIR=" + out.string() + " " + settings + " ";
    };

    // The uninterrupted run, with its writes numbered.
    const auto whole = dir / "whole";
    auto r = run(shim(whole, "KILL_SHIM_LOG=" + (dir / "events.log").string()) + command(whole));
    REQUIRE_MESSAGE(r.status == 0, r.output);
    std::vector<std::string> events;
    {
        std::ifstream log(dir / "events.log");
        for (std::string line; std::getline(log, line);) events.push_back(line.substr(line.find(' ') + 1));
    }
    INFO("the uninterrupted run's writes:\n" << file_bytes(dir / "events.log"));
    REQUIRE(events.size() >= 20);

    // Killed at each write, a write cut in half or a rename not made, then resumed to the end.
    std::map<std::string, int> kills;  // by what was being written
    for (std::size_t k = 1; k <= events.size(); ++k) {
        CAPTURE(k);
        CAPTURE(events[k - 1]);
        const auto out = dir / ("killed_" + std::to_string(k));
        r = run(shim(out, "KILL_SHIM_AT=" + std::to_string(k)) + command(out));
        REQUIRE_MESSAGE(r.status == 128 + SIGKILL, r.output);  // the shell's status of a child killed by SIGKILL
        for (const char* name : {"training_state.safetensors", "model.safetensors", "config.json", "metrics.json"})
            if (events[k - 1].find(name) != std::string::npos) ++kills[name];

        // Whatever is visible under its own name is whole: only temporary files are cut short.
        for (const auto& e : fs::directory_iterator(out)) {
            const auto name = e.path().filename().string();
            CAPTURE(name);
            if (name.front() == '.') continue;
            if (e.path().extension() == ".safetensors") CHECK_NOTHROW(safetensors_file::load(e.path()));
            else if (e.path().extension() == ".json") CHECK_NOTHROW(read_json(e.path()));
            else CHECK(file_bytes(e.path()) == file_bytes(whole / name));
        }
        const bool checkpointed = fs::exists(out / "training_state.safetensors");
        r = run(command(out));
        REQUIRE_MESSAGE(r.status == 0, r.output);
        CHECK((r.output.find("; resuming from") != std::string::npos) == checkpointed);
        check_same_run(out, whole);
        fs::remove_all(out);
    }
    // The kills fell in the checkpoint's writes and the model's, among the others.
    CHECK(kills["training_state.safetensors"] >= 10);
    CHECK(kills["model.safetensors"] >= 2);
    CHECK(kills["config.json"] >= 2);
    CHECK(kills["metrics.json"] == 2);
}
#endif

#ifdef DM2S2_MPIEXEC
TEST_CASE("dm2s2_train under mpirun -np 2 writes what one process writes, with the same training")
{
    const auto dir = dm2s2::testing::scratch_dir("movies_two_ranks");
    const auto schema = (dm2s2::testing::project_data_dir() / "movies" / "schema.json").string();
    std::ofstream(dir / "small.json") << R"({"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64})";
    const auto train = movies_subset(dir, "train", 90), test = movies_subset(dir, "test", 20);
    const auto arguments = " --schema " + schema + " --train " + train.string() + " --vocab " +
                           dm2s2::testing::bert_vocab().string() + " --epochs 2 --batch-size 12 --config " +
                           (dir / "small.json").string();
    auto r = run(std::string(DM2S2_TRAIN_TOOL) + arguments + " --out " + (dir / "one").string());
    REQUIRE_MESSAGE(r.status == 0, r.output);
    // Open MPI refuses root and more ranks than cores unless told.
    const std::string mpirun =
        "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 " DM2S2_MPIEXEC " ";
    r = run(mpirun + DM2S2_TRAIN_TOOL + arguments + " --out " + (dir / "two").string());
    REQUIRE_MESSAGE(r.status == 0, r.output);
    CHECK(r.output.find("epoch 2/2: train loss") != std::string::npos);
    // Rank 0 alone reports: two processes that did not see each other would both print.
    std::size_t reports = 0;
    for (auto at = r.output.find("training records"); at != std::string::npos; at = r.output.find("training records", at + 1))
        ++reports;
    CHECK(reports == 1);

    std::set<std::string> one, two;
    for (const auto& e : fs::directory_iterator(dir / "one")) one.insert(e.path().filename().string());
    for (const auto& e : fs::directory_iterator(dir / "two")) two.insert(e.path().filename().string());
    CHECK(one == two);
    CHECK(read_json(dir / "one" / "config.json") == read_json(dir / "two" / "config.json"));
    const auto a = read_json(dir / "one" / "metrics.json")["history"], b = read_json(dir / "two" / "metrics.json")["history"];
    REQUIRE(a.size() == 2);
    REQUIRE(b.size() == 2);
    for (std::size_t e = 0; e < 2; ++e)
        CHECK(b[e]["train_loss"].get<double>() == doctest::Approx(a[e]["train_loss"].get<double>()).epsilon(1e-5));

    r = run(std::string(DM2S2_PREDICT_TOOL) + " --model " + (dir / "two").string() + " --data " + test.string() + " --out " +
            (dir / "p.jsonl").string());
    REQUIRE_MESSAGE(r.status == 0, r.output);
}
#endif

#endif
