// dm2s2_tokenize: BERT WordPiece tokenization of JSON lines, as HuggingFace's BertTokenizer does it.
//
//   dm2s2_tokenize --vocab FILE [--cased] [--pair] [--max-length N]
//
// Reads one JSON value per line on stdin: a string, or with --pair an array of two strings. Prints one
// JSON line per input: the id array with [CLS] and [SEP]; with --pair {"input_ids": [...],
// "token_type_ids": [...]}. Uncased (lower-casing, accents stripped) unless --cased. --max-length
// truncates (pairs with HuggingFace's longest_first). Bad input ends the program with a message naming
// the line and status 1; usage errors give status 2.

#include <iostream>
#include <map>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include <dm2s2/text/wordpiece.hpp>

namespace {

struct arguments {
    std::string vocab;
    bool cased = false, pair = false;
    std::size_t max_length = 0;
};

arguments parse_arguments(int argc, char** argv)
{
    arguments a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
            return argv[++i];
        };
        if (flag == "--vocab") {
            a.vocab = value();
        } else if (flag == "--cased") {
            a.cased = true;
        } else if (flag == "--pair") {
            a.pair = true;
        } else if (flag == "--max-length") {
            const std::string v = value();
            std::size_t used = 0;
            long long n = -1;
            try {
                n = std::stoll(v, &used);
            } catch (const std::exception&) {
            }
            if (used != v.size() || n < 3) throw std::invalid_argument("--max-length must be an integer ≥ 3, not '" + v + "'");
            a.max_length = static_cast<std::size_t>(n);
        } else {
            throw std::invalid_argument("unknown argument '" + flag + "'");
        }
    }
    if (a.vocab.empty()) throw std::invalid_argument("--vocab is required");
    return a;
}

}  // namespace

int main(int argc, char** argv)
{
    arguments args;
    try {
        args = parse_arguments(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::cerr << "dm2s2_tokenize: " << e.what() << " (usage: --vocab FILE [--cased] [--pair] [--max-length N])\n";
        return 2;
    }
    try {
        const auto tokenizer = dm2s2::wordpiece_tokenizer::from_file(args.vocab, !args.cased);
        std::size_t line_number = 0;
        for (std::string line; std::getline(std::cin, line);) {
            const std::string where = "stdin line " + std::to_string(++line_number);
            nlohmann::json value;
            try {
                value = nlohmann::json::parse(line);
            } catch (const nlohmann::json::exception& e) {
                throw dm2s2::input_error(where + ": not JSON: " + e.what());
            }
            try {
                if (args.pair) {
                    if (!value.is_array() || value.size() != 2 || !value[0].is_string() || !value[1].is_string())
                        throw dm2s2::input_error("expected an array of two strings");
                    const auto e = tokenizer.encode_pair(value[0].get<std::string>(), value[1].get<std::string>(), args.max_length);
                    std::cout << nlohmann::json{{"input_ids", e.ids}, {"token_type_ids", e.type_ids}}.dump() << '\n';
                } else {
                    if (!value.is_string()) throw dm2s2::input_error("expected a string");
                    std::cout << nlohmann::json(tokenizer.encode(value.get<std::string>(), args.max_length).ids).dump() << '\n';
                }
            } catch (const dm2s2::error& e) {
                throw dm2s2::input_error(where + ": " + e.what());
            }
        }
        return 0;
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << "dm2s2_tokenize: " << e.what() << "\n";
        return 1;
    }
}
