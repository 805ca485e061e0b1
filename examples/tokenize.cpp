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
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include <dm2s2/text/wordpiece.hpp>

#include "tokenize_line.hpp"
#include "tool_arguments.hpp"

int main(int argc, char** argv)
{
    dm2s2::tools::fail_writes_past_file_size_limit();
    std::string vocab, max_length_text = "0";
    bool cased = false, pair = false;
    std::size_t max_length = 0;
    dm2s2::tools::arguments args;
    args.option("--vocab", vocab, true).option("--max-length", max_length_text).flag("--cased", cased).flag("--pair", pair);
    try {
        args.parse(argc, argv);
        max_length = static_cast<std::size_t>(dm2s2::tools::parse_integer("--max-length", max_length_text, 0, 1 << 30));
        if (max_length != 0 && max_length < 3)
            throw std::invalid_argument("--max-length must leave room for [CLS] and two [SEP]");
    } catch (const std::invalid_argument& e) {
        std::cerr << "dm2s2_tokenize: " << e.what() << " (usage: --vocab FILE [--cased] [--pair] [--max-length N])\n";
        return 2;
    }
    try {
        const auto tokenizer = dm2s2::wordpiece_tokenizer::from_file(vocab, !cased);
        std::size_t line_number = 0;
        for (std::string line; std::getline(std::cin, line);)
            std::cout << dm2s2::tools::tokenize_line(tokenizer, line, pair, max_length,
                                                     "stdin line " + std::to_string(++line_number))
                      << '\n';
        // Output cut short (a full disk, the file size limit) is an error, not a shorter result.
        if (!std::cout.flush()) throw dm2s2::error("standard output: write failed");
        return 0;
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << "dm2s2_tokenize: " << e.what() << "\n";
        return 1;
    }
}
