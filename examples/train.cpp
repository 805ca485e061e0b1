// dm2s2_train: trains DM²S² (or a baseline) on records in the JSON Lines format of the README.
//
//   dm2s2_train --schema S --train T.jsonl [--valid V.jsonl] --out DIR [--pooling dm2s2|cls|mean|no_intra|no_inter|mid_fusion|dm2s]
//               [--config model.json] [--epochs N] [--batch-size B] [--lr X] [--seed S] [--threads T]
//               [--vocab FILE] [--cased] [--init-bert HF_DIR] [--patience P] [--checkpoint-every N] [--resume]
//               [--device cpu|cuda] [--precision fp32|tf32|bf16]
//
// Writes DIR/config.json and DIR/model.safetensors (the best epoch on --valid, else the last),
// DIR/data.json and DIR/vocab.txt (what dm2s2_predict needs to read records), DIR/metrics.json (the
// history and the validation metrics of the kept model) and DIR/training_state.safetensors (at the end
// of every epoch, and every N optimizer steps with --checkpoint-every). Every file is replaced
// atomically. With --resume, a run killed at any point goes on from DIR's training checkpoint (the
// same arguments and data) and ends with the files an uninterrupted run writes; without a checkpoint
// there it starts afresh. --device cuda trains on the GPU (a build with -DDM2S2_CUDA=ON; one process).
// --precision sets how matrices are multiplied (`matmul_precision`): fp32 (the default), bf16 (operands
// rounded to bf16, fp32 sums, fp32 parameters and optimizer state), or tf32 on the GPU.

#include <chrono>
#include <cstdio>
#include <iostream>

#include <dm2s2/dm2s2.hpp>
#include <dm2s2/text/data_pipeline.hpp>
#if defined(DM2S2_HAS_CUDA)
#include <dm2s2/backend/cuda/cuda_backend.hpp>
#endif

#include "tool_arguments.hpp"

#if defined(DM2S2_HAS_MPI)
#include <dm2s2/distributed/mpi_communicator.hpp>
using communicator = dm2s2::mpi_communicator;  // `mpirun -np N dm2s2_train ...`: one replica per rank
#else
using communicator = dm2s2::single_process;
#endif

namespace {

/// Applies the keys of a --config file to the model configuration; unknown keys are errors.
void apply_config_file(const std::string& path, dm2s2::model_config& c, std::optional<std::size_t>& vocab_size)
{
    const nlohmann::json j = dm2s2::read_json_file(path);
    if (!j.is_object()) throw dm2s2::config_error(path + ": must be a JSON object");
    for (const auto& [key, value] : j.items()) {
        const auto size = [&, &key = key, &value = value] {
            if (!value.is_number_unsigned() || value.get<std::size_t>() == 0)
                throw dm2s2::config_error(path + ": '" + key + "' must be a positive integer");
            return value.get<std::size_t>();
        };
        const auto probability = [&, &key = key, &value = value] {
            if (!value.is_number() || value.get<double>() < 0 || value.get<double>() >= 1)
                throw dm2s2::config_error(path + ": '" + key + "' must be a number in [0, 1)");
            return value.get<double>();
        };
        if (key == "hidden_size") c.bert.hidden_size = size();
        else if (key == "num_hidden_layers") c.bert.num_hidden_layers = size();
        else if (key == "num_attention_heads") c.bert.num_attention_heads = size();
        else if (key == "intermediate_size") c.bert.intermediate_size = size();
        else if (key == "max_position_embeddings") c.bert.max_position_embeddings = size();
        else if (key == "vocab_size") vocab_size = size();
        else if (key == "hidden_dropout_prob") c.bert.hidden_dropout_prob = probability();
        else if (key == "attention_probs_dropout_prob") c.bert.attention_probs_dropout_prob = probability();
        else if (key == "head_dropout") c.head_dropout = probability();
        else if (key == "attention_dim") c.mra.attention_dim = size();
        else if (key == "shared_intra" && value.is_boolean()) c.mra.shared_intra = value.get<bool>();
        else if (key == "residual" && value.is_number()) c.mra.residual = value.get<double>();
        else if (key == "inter_residual" && value.is_number()) c.mra.inter_residual = value.get<double>();
        else if (key == "learned_residual" && value.is_boolean()) c.mra.learned_residual = value.get<bool>();
        else if (key == "positions" && value.is_string() && (value == "global" || value == "per_modality"))
            c.positions = value == "global" ? dm2s2::position_mode::global : dm2s2::position_mode::per_modality;
        else throw dm2s2::config_error(path + ": unknown or invalid key '" + key + "'");
    }
}

/// The default model: small enough to train on two cores in minutes.
dm2s2::model_config default_config()
{
    dm2s2::model_config c;
    c.bert.hidden_size = 128;
    c.bert.num_hidden_layers = 2;
    c.bert.num_attention_heads = 4;
    c.bert.intermediate_size = 256;
    c.bert.max_position_embeddings = 512;
    return c;
}

}  // namespace

int main(int argc, char** argv)
{
    dm2s2::tools::fail_writes_past_file_size_limit();
    const communicator ranks;
    std::string schema, train, valid, out, pooling = "dm2s2", config_file, epochs = "5", batch = "16", lr, seed = "1",
                                           threads = "1", vocab, init_bert, patience = "0", checkpoint_every = "0",
                                           device = "cpu", precision = "fp32";
    bool cased = false, resume = false;
    dm2s2::tools::arguments args;
    args.option("--schema", schema, true).option("--train", train, true).option("--valid", valid).option("--out", out, true);
    args.option("--pooling", pooling).option("--config", config_file).option("--epochs", epochs).option("--batch-size", batch);
    args.option("--lr", lr).option("--seed", seed).option("--threads", threads).option("--vocab", vocab);
    args.option("--init-bert", init_bert).option("--patience", patience).flag("--cased", cased);
    args.option("--checkpoint-every", checkpoint_every).flag("--resume", resume).option("--device", device);
    args.option("--precision", precision);
    dm2s2::trainer_options options;
    std::optional<dm2s2::pooling_kind> kind;
    std::size_t thread_count = 1;
    try {
        args.parse(argc, argv);
        kind = dm2s2::parse_pooling_kind(pooling);
        if (!kind) throw std::invalid_argument("--pooling must be dm2s2, cls, mean, no_intra, no_inter, mid_fusion or dm2s");
        options.epochs = static_cast<std::size_t>(dm2s2::tools::parse_integer("--epochs", epochs, 1, 100000));
        options.batch_size = static_cast<std::size_t>(dm2s2::tools::parse_integer("--batch-size", batch, 1, 1 << 20));
        options.seed = static_cast<std::uint64_t>(dm2s2::tools::parse_integer("--seed", seed, 0, INT64_MAX));
        options.patience = static_cast<std::size_t>(dm2s2::tools::parse_integer("--patience", patience, 0, 100000));
        options.checkpoint_every =
            static_cast<std::size_t>(dm2s2::tools::parse_integer("--checkpoint-every", checkpoint_every, 0, INT64_MAX));
        thread_count = static_cast<std::size_t>(dm2s2::tools::parse_integer("--threads", threads, 1, 1024));
        options.learning_rate = lr.empty() ? (init_bert.empty() ? 1e-3 : 5e-5) : dm2s2::tools::parse_positive("--lr", lr);
        if (device != "cpu" && device != "cuda")
            throw std::invalid_argument("--device must be cpu or cuda, not '" + device + "'");
        if (!dm2s2::parse_matmul_precision(precision))
            throw std::invalid_argument("--precision must be fp32, tf32 or bf16, not '" + precision + "'");
        if (device == "cpu" && precision == "tf32")
            throw std::invalid_argument("--precision tf32 is the GPU's tensor-core mode: use it with --device cuda");
    } catch (const std::invalid_argument& e) {
        std::cerr << "dm2s2_train: " << e.what()
                  << " (usage: --schema S --train T.jsonl [--valid V.jsonl] --out DIR [--pooling P] [--config model.json]"
                     " [--epochs N] [--batch-size B] [--lr X] [--seed S] [--threads T] [--vocab FILE] [--cased]"
                     " [--init-bert HF_DIR] [--patience P] [--checkpoint-every N] [--resume] [--device cpu|cuda]"
                     " [--precision fp32|tf32|bf16])\n";
        return 2;
    }
    try {
        const auto spec = dm2s2::read_data_spec(schema);
        if (vocab.empty() && !init_bert.empty() && std::filesystem::exists(std::filesystem::path(init_bert) / "vocab.txt"))
            vocab = (std::filesystem::path(init_bert) / "vocab.txt").string();
        dm2s2::data_pipeline pipeline;
        if (!vocab.empty())
            pipeline.tokenizer =
                std::make_unique<dm2s2::wordpiece_tokenizer>(dm2s2::wordpiece_tokenizer::from_file(vocab, !cased));
        // Two passes over the training file, one record in memory at a time: the first learns the
        // encoder (categories, statistics, labels), the second keeps each record encoded, not its JSON.
        dm2s2::record_encoder::fitter fitter(spec, pipeline.tokenizer.get());
        {
            dm2s2::json_lines_reader reader(train);
            while (const auto r = reader.next()) fitter.add(*r);
            if (reader.records() == 0) throw dm2s2::input_error(train + ": no records");
        }
        const auto& encoder = pipeline.encoder.emplace(std::move(fitter).finish());
        dm2s2::json_lines_reader train_reader(train);
        const auto train_data = encoder.encode_dataset<float>(train_reader);
        std::optional<dm2s2::dataset<float>> valid_data;
        if (!valid.empty()) {
            dm2s2::json_lines_reader valid_reader(valid);
            valid_data = encoder.encode_dataset<float>(valid_reader);
        }

        auto config = init_bert.empty() ? default_config() : dm2s2::model_config{};
        std::optional<dm2s2::hf_checkpoint> bert_checkpoint;
        if (!init_bert.empty()) {
            config.bert = dm2s2::read_hf_bert_config(init_bert);
            bert_checkpoint.emplace(init_bert);
            dm2s2::check_config_fits(config.bert, bert_checkpoint->tensor_bytes(),
                                     (std::filesystem::path(init_bert) / "config.json").string(), bert_checkpoint->source());
        }
        std::optional<std::size_t> vocab_size;
        if (!config_file.empty()) apply_config_file(config_file, config, vocab_size);
        if (const auto* t = pipeline.tokenizer.get()) {
            config.bert.vocab_size = t->vocab_size();
            config.cls_id = t->cls_id();
            config.sep_id = t->sep_id();
            config.pad_id = t->pad_id();
        } else {
            for (const auto& m : encoder.schema().modalities())
                if (m.kind == dm2s2::modality_kind::tokens && !vocab_size)
                    throw dm2s2::config_error("modality '" + m.name +
                                              "' holds token ids: give --vocab or \"vocab_size\" in --config");
            config.bert.vocab_size = vocab_size.value_or(3);  // [PAD], [CLS], [SEP] rows at least
            config.cls_id = 1;
            config.sep_id = 2;
            config.pad_id = 0;
        }
        config.pooling = *kind;
        config.num_outputs = encoder.num_outputs();
        const auto products = *dm2s2::parse_matmul_precision(precision);
        dm2s2::model<float> model(encoder.schema(), config, options.seed,
                                  dm2s2::cpu_backend({.threads = thread_count,
                                                      .precision = device == "cpu" ? products : dm2s2::matmul_precision::fp32}));
        if (bert_checkpoint) load_encoder(model, init_bert, *bert_checkpoint);

        options.output_dir = out;
        const bool writer = ranks.rank() == 0;  // rank 0 reports and writes the model directory
        // What a killed run left half-written (never under the names the files are read by).
        if (writer && std::filesystem::is_directory(out)) dm2s2::remove_abandoned_temporaries(out);
        double seconds = 0;
        const auto run = [&](auto& trainer) {
            const auto resume_from = resume && std::filesystem::exists(trainer.checkpoint_path()) ? trainer.checkpoint_path()
                                                                                                  : std::filesystem::path();
            if (writer)
                std::printf("dm2s2_train: %zu training records%s, %zu outputs, pooling %s%s%s\n", train_data.size(),
                            valid_data ? (", " + std::to_string(valid_data->size()) + " validation records").c_str() : "",
                            config.num_outputs, pooling.c_str(),
                            (std::string(device == "cuda" ? ", on the GPU" : "") +
                             (precision == "fp32" ? "" : ", " + precision + " products"))
                                .c_str(),
                            resume_from.empty() ? "" : ("; resuming from " + resume_from.string()).c_str());
            const auto start = std::chrono::steady_clock::now();
            auto result = trainer.fit(train_data, valid_data ? &*valid_data : nullptr, resume_from);
            seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            return result;
        };
        dm2s2::training_result result;
        if (device == "cuda") {
#if defined(DM2S2_HAS_CUDA)
            if (ranks.size() > 1) throw dm2s2::config_error("--device cuda trains in one process, not under mpirun");
            // One upload of the parameters.
            dm2s2::model<float, dm2s2::cuda_backend> gpu(model, dm2s2::cuda_backend(dm2s2::cuda_options{.precision = products}));
            dm2s2::trainer<float, dm2s2::cuda_backend> trainer(gpu, encoder.task().type, options);
            result = run(trainer);
#else
            throw dm2s2::error("--device cuda: this build has no CUDA backend (configure with -DDM2S2_CUDA=ON)");
#endif
        } else {
            dm2s2::trainer<float, dm2s2::cpu_backend, communicator> trainer(model, encoder.task().type, options, ranks);
            result = run(trainer);
        }
        if (!writer) return 0;
        dm2s2::save_data_pipeline(out, encoder);

        nlohmann::json history = nlohmann::json::array();
        for (const auto& e : result.history) history.push_back(dm2s2::to_json(e));
        nlohmann::json metrics = {{"task", std::string(dm2s2::to_string(encoder.task().type))},
                                  {"pooling", pooling},
                                  {"train_records", train_data.size()},
                                  {"train_seconds", seconds},
                                  {"steps", result.steps},
                                  {"stopped_early", result.stopped_early},
                                  {"history", history}};
        if (result.best_epoch) {
            metrics["monitor"] = result.monitor;
            metrics["best_epoch"] = *result.best_epoch;
            metrics["validation"] = result.history[*result.best_epoch - 1].validation->metrics;
            metrics["validation"]["loss"] = result.history[*result.best_epoch - 1].validation->loss;
        }
        dm2s2::write_file_atomically(std::filesystem::path(out) / "metrics.json", metrics.dump(2) + "\n");
        std::printf("dm2s2_train: %zu epochs in %.1f s%s; model in %s\n", result.history.size(), seconds,
                    result.best_epoch ? (", best epoch " + std::to_string(*result.best_epoch)).c_str() : "", out.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "dm2s2_train: " << (ranks.size() > 1 ? "rank " + std::to_string(ranks.rank()) + ": " : std::string())
                  << e.what() << std::endl;
        if (ranks.size() > 1) ranks.abort(1);  // the other ranks would wait for this one for ever
        return 1;
    }
}
