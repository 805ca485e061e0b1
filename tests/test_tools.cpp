// The command-line tools as a user runs them: dm2s2_hf_forward against the HF golden outputs and
// its failures on bad input, and the quickstart example.

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

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
    const auto log = fs::path(DM2S2_TEST_SCRATCH_DIR) /
                     ("tool_" + std::to_string(::getpid()) + "_" + std::to_string(calls++) + ".log");
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
            for (const std::string name : {"last_hidden_state", "pooler_output", "hidden_states.0", "hidden_states.1", "hidden_states.2"}) {
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
}

TEST_CASE("the quickstart runs and prints an explanation for every record")
{
    const auto r = run(DM2S2_QUICKSTART);
    REQUIRE_MESSAGE(r.status == 0, r.output);
    CHECK(r.output.find("record 2  logits:") != std::string::npos);
    CHECK(r.output.find("(missing)") != std::string::npos);
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
