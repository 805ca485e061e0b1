// dm2s2_hf_forward: runs a HuggingFace BERT checkpoint on token inputs and writes its outputs.
//
//   dm2s2_hf_forward --model DIR --inputs IN.safetensors --output OUT.safetensors [--dtype f32|f64] [--attentions]
//                    [--device cpu|cuda]
//
// IN holds input_ids, attention_mask, token_type_ids and optionally position_ids, integer [B, S].
// OUT receives last_hidden_state [B, S, H], pooler_output [B, H] and hidden_states.{i} [B, S, H]
// (i = 0 is the embedding output), and with --attentions also attentions.{i} [B, heads, S, S], all in
// the requested precision. Any bad input ends the program with a one-line message and status 1.
// `--device cuda` runs the encoder on the GPU (a build with -DDM2S2_CUDA=ON).

#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <dm2s2/dm2s2.hpp>
#if defined(DM2S2_HAS_CUDA)
#include <dm2s2/backend/cuda/cuda_backend.hpp>
#endif

namespace {

struct arguments {
    std::string model, inputs, output, dtype = "f32", device = "cpu";
    bool attentions = false;
};

arguments parse_arguments(int argc, char** argv)
{
    arguments a;
    std::map<std::string, std::string*> valued = {
        {"--model", &a.model}, {"--inputs", &a.inputs}, {"--output", &a.output}, {"--dtype", &a.dtype}, {"--device", &a.device}};
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--attentions") {
            a.attentions = true;
        } else if (auto it = valued.find(flag); it != valued.end()) {
            if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
            *it->second = argv[++i];
        } else {
            throw std::invalid_argument("unknown argument '" + flag + "'");
        }
    }
    if (a.model.empty() || a.inputs.empty() || a.output.empty())
        throw std::invalid_argument("--model, --inputs and --output are required");
    if (a.dtype != "f32" && a.dtype != "f64") throw std::invalid_argument("--dtype must be f32 or f64, not '" + a.dtype + "'");
    if (a.device != "cpu" && a.device != "cuda")
        throw std::invalid_argument("--device must be cpu or cuda, not '" + a.device + "'");
    return a;
}

dm2s2::bert_inputs read_inputs(const dm2s2::safetensors_file& file)
{
    dm2s2::bert_inputs in;
    const auto read = [&](const std::string& name) {
        const auto t = file.read_integers(name);
        if (t.rank() != 2)
            throw dm2s2::shape_error(file.source() + ": tensor '" + name + "' has shape " + dm2s2::to_string(t.shape()) +
                                     ", expected [batch, length]");
        if (in.layout.batch == 0 && in.layout.length == 0) in.layout = {t.dim(0), t.dim(1)};
        if (t.dim(0) != in.layout.batch || t.dim(1) != in.layout.length)
            throw dm2s2::shape_error(file.source() + ": tensor '" + name + "' has shape " + dm2s2::to_string(t.shape()) +
                                     ", but input_ids has [" + std::to_string(in.layout.batch) + ", " +
                                     std::to_string(in.layout.length) + "]");
        return std::vector<std::int64_t>(t.values().begin(), t.values().end());
    };
    in.input_ids = read("input_ids");
    in.token_type_ids = read("token_type_ids");
    for (const auto m : read("attention_mask")) {
        if (m != 0 && m != 1)
            throw dm2s2::input_error(file.source() + ": attention_mask holds " + std::to_string(m) +
                                     "; only 0 and 1 are allowed");
        in.attention_mask.push_back(static_cast<std::uint8_t>(m));
    }
    if (file.contains("position_ids")) in.position_ids = read("position_ids");
    if (in.layout.rows() == 0) throw dm2s2::shape_error(file.source() + ": the inputs are empty");
    return in;
}

template <class T>
void run(const arguments& args)
{
    const auto inputs = read_inputs(dm2s2::safetensors_file::load(args.inputs));
    const auto model = dm2s2::load_hf_bert<T>(args.model);
    dm2s2::bert_outputs<T> out;
    if (args.device == "cuda") {
#if defined(DM2S2_HAS_CUDA)
        const dm2s2::bert_model<T, dm2s2::cuda_backend> gpu(model, dm2s2::cuda_backend{});
        out = gpu.forward(inputs, true);
#else
        throw dm2s2::error("--device cuda: this build has no CUDA backend (configure with -DDM2S2_CUDA=ON)");
#endif
    } else {
        out = model.forward(inputs, true);
    }
    dm2s2::safetensors_writer writer;
    writer.add("last_hidden_state", out.last_hidden_state);
    writer.add("pooler_output", out.pooler_output);
    for (std::size_t i = 0; i < out.trace.hidden_states.size(); ++i)
        writer.add("hidden_states." + std::to_string(i), out.trace.hidden_states[i]);
    if (args.attentions)
        for (std::size_t i = 0; i < out.trace.attentions.size(); ++i)
            writer.add("attentions." + std::to_string(i), out.trace.attentions[i]);
    writer.write(args.output);
}

}  // namespace

int main(int argc, char** argv)
{
    try {
        const arguments args = parse_arguments(argc, argv);
        if (args.dtype == "f64") run<double>(args);
        else run<float>(args);
        return 0;
    } catch (const std::invalid_argument& e) {
        std::cerr << "dm2s2_hf_forward: " << e.what()
                  << " (usage: --model DIR --inputs IN.safetensors --output OUT.safetensors [--dtype f32|f64] [--attentions] "
                     "[--device cpu|cuda])\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "dm2s2_hf_forward: " << e.what() << "\n";
        return 1;
    }
}
