#pragma once
/// \file
/// `wordpiece_tokenizer`: HuggingFace `BertTokenizer`-compatible text → vocabulary ids. The steps are
/// BERT's: special tokens found verbatim in the text are kept whole; text cleaning (NUL, U+FFFD and
/// control characters dropped, whitespace unified); CJK ideographs split into words of their own;
/// split on whitespace; when uncased, accents stripped (NFD, marks removed) and lower-casing; split on
/// punctuation; greedy longest-match WordPiece with `##` continuations, `[UNK]` for a word with no
/// segmentation or more than 100 characters. Offsets are code-point indices into the original text,
/// as the fast tokenizer reports them. Unicode properties and decompositions come from utf8proc.
///
/// Using this header needs utf8proc: link `dm2s2::text` rather than `dm2s2::dm2s2`.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <utf8proc.h>

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// One code point of a text and its index in the original text (in code points).
struct located_char {
    char32_t code = 0;
    std::size_t origin = 0;
};

/// Decodes UTF-8; throws input_error naming `where` and the byte offset of an invalid sequence.
inline std::vector<char32_t> decode_utf8(std::string_view text, const std::string& where = "text")
{
    std::vector<char32_t> out;
    out.reserve(text.size());
    const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
    for (std::size_t at = 0; at < text.size();) {
        utf8proc_int32_t code = 0;
        const auto n = utf8proc_iterate(bytes + at, static_cast<utf8proc_ssize_t>(text.size() - at), &code);
        if (n <= 0) throw input_error(where + ": invalid UTF-8 at byte " + std::to_string(at));
        out.push_back(static_cast<char32_t>(code));
        at += static_cast<std::size_t>(n);
    }
    return out;
}

/// Appends the UTF-8 encoding of `code` to `out`.
inline void append_utf8(std::string& out, char32_t code)
{
    std::array<utf8proc_uint8_t, 4> buffer{};
    const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(code), buffer.data());
    out.append(reinterpret_cast<const char*>(buffer.data()), static_cast<std::size_t>(n));
}

/// Character classes of BERT's basic tokenizer.
namespace bert_chars {

inline utf8proc_category_t category(char32_t c)
{
    return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

/// Space, tab, newline, carriage return or a space separator (Zs).
inline bool is_whitespace(char32_t c)
{
    return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' || category(c) == UTF8PROC_CATEGORY_ZS;
}

/// An "other" category (control, format, unassigned, private use, surrogate), but not tab or newlines.
inline bool is_control(char32_t c)
{
    if (c == U'\t' || c == U'\n' || c == U'\r') return false;
    const auto k = category(c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CN || k == UTF8PROC_CATEGORY_CO ||
           k == UTF8PROC_CATEGORY_CS;
}

/// ASCII symbols and punctuation (BERT counts `$`, `+`, `^` … as punctuation) or a P* category.
inline bool is_punctuation(char32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
    const auto k = category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/// The CJK Unified Ideographs blocks BERT splits into single characters.
inline bool is_cjk(char32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

}  // namespace bert_chars

/// A word piece: its vocabulary id and the code points [begin, end) of the original text it covers
/// ({0, 0} for added [CLS]/[SEP]).
struct word_piece {
    std::int64_t id = 0;
    std::size_t begin = 0, end = 0;
};

/// Ids of an encoded text or pair, with the token types (0 first text, 1 second) and offsets.
struct encoding {
    std::vector<std::int64_t> ids;
    std::vector<std::int64_t> type_ids;
    std::vector<std::pair<std::size_t, std::size_t>> offsets;
};

/// BERT's WordPiece tokenizer over a vocabulary file (one token per line, id = line number).
class wordpiece_tokenizer {
public:
    static constexpr std::size_t max_word_chars = 100;

    /// Reads `vocab_file`; `lower_case` selects the uncased pipeline (lower-casing and accent stripping).
    /// The vocabulary must hold [PAD], [UNK], [CLS], [SEP] (and may hold [MASK]).
    static wordpiece_tokenizer from_file(const std::filesystem::path& vocab_file, bool lower_case)
    {
        std::ifstream in(vocab_file, std::ios::binary);
        if (!in) throw error(vocab_file.string() + ": cannot open the vocabulary");
        std::vector<std::string> tokens;
        for (std::string line; std::getline(in, line);) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            tokens.push_back(std::move(line));
        }
        return wordpiece_tokenizer(std::move(tokens), lower_case, vocab_file.string());
    }

    /// A tokenizer over `tokens` (id = index); `source` names them in errors.
    wordpiece_tokenizer(std::vector<std::string> tokens, bool lower_case, const std::string& source = "vocabulary")
        : tokens_(std::move(tokens)), lower_case_(lower_case)
    {
        for (std::size_t i = 0; i < tokens_.size(); ++i) {
            decode_utf8(tokens_[i], source + ": line " + std::to_string(i + 1));
            ids_.try_emplace(tokens_[i], static_cast<std::int64_t>(i));  // the first of duplicates wins
        }
        const auto special = [&](const char* name) {
            const auto it = ids_.find(name);
            if (it == ids_.end()) throw format_error(source + ": no " + name + " token");
            return it->second;
        };
        pad_id_ = special("[PAD]");
        unk_id_ = special("[UNK]");
        cls_id_ = special("[CLS]");
        sep_id_ = special("[SEP]");
        for (const char* name : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"})
            if (ids_.count(name)) specials_.push_back(decode_utf8(name));
    }

    bool lower_case() const noexcept { return lower_case_; }
    /// The vocabulary, in id order.
    const std::vector<std::string>& tokens() const noexcept { return tokens_; }
    std::size_t vocab_size() const noexcept { return tokens_.size(); }
    std::int64_t pad_id() const noexcept { return pad_id_; }
    std::int64_t unk_id() const noexcept { return unk_id_; }
    std::int64_t cls_id() const noexcept { return cls_id_; }
    std::int64_t sep_id() const noexcept { return sep_id_; }

    /// The token string of `id` (throws input_error when out of range).
    const std::string& token(std::int64_t id) const
    {
        if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
            throw input_error("token id " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(tokens_.size()));
        return tokens_[static_cast<std::size_t>(id)];
    }

    /// The id of `token`, if it is in the vocabulary.
    std::optional<std::int64_t> find(std::string_view token) const
    {
        const auto it = ids_.find(std::string(token));
        return it == ids_.end() ? std::nullopt : std::optional(it->second);
    }

    /// The word pieces of `text`, without [CLS]/[SEP].
    std::vector<word_piece> tokenize(std::string_view text) const
    {
        const auto chars = decode_utf8(text);
        std::vector<word_piece> out;
        // Special tokens written in the text stay whole; the text between them is tokenized.
        std::size_t start = 0;
        for (std::size_t at = 0; at < chars.size();) {
            const auto special = special_at(chars, at);
            if (!special) {
                ++at;
                continue;
            }
            tokenize_plain(chars, start, at, out);
            out.push_back({*find(to_utf8(chars, at, at + specials_[*special].size())), at, at + specials_[*special].size()});
            at += specials_[*special].size();
            start = at;
        }
        tokenize_plain(chars, start, chars.size(), out);
        return out;
    }

    /// `[CLS] text [SEP]`; with `max_length` > 0, the pieces are cut so that the whole fits.
    encoding encode(std::string_view text, std::size_t max_length = 0) const
    {
        auto pieces = tokenize(text);
        if (max_length > 0) pieces.resize(std::min(pieces.size(), max_length - std::min<std::size_t>(max_length, 2)));
        encoding out;
        append(out, {cls_id_, 0, 0}, 0);
        for (const auto& p : pieces) append(out, p, 0);
        append(out, {sep_id_, 0, 0}, 0);
        return out;
    }

    /// `[CLS] first [SEP] second [SEP]` (types 0 then 1), cut to `max_length` (> 0) as HuggingFace's
    /// `longest_first` truncation does: the shorter text keeps up to half of the room, the longer
    /// the rest. An empty `second` encodes `first` alone, as HuggingFace does.
    encoding encode_pair(std::string_view first, std::string_view second, std::size_t max_length = 0) const
    {
        if (second.empty()) return encode(first, max_length);
        auto a = tokenize(first), b = tokenize(second);
        if (max_length > 0) {
            const std::size_t room = max_length - std::min<std::size_t>(max_length, 3);
            if (a.size() + b.size() > room) {
                auto& shorter = a.size() <= b.size() ? a : b;
                auto& longer = a.size() <= b.size() ? b : a;
                shorter.resize(std::min(shorter.size(), room / 2));
                longer.resize(room - shorter.size());
            }
        }
        encoding out;
        append(out, {cls_id_, 0, 0}, 0);
        for (const auto& p : a) append(out, p, 0);
        append(out, {sep_id_, 0, 0}, 0);
        for (const auto& p : b) append(out, p, 1);
        append(out, {sep_id_, 0, 0}, 1);
        return out;
    }

private:
    static void append(encoding& e, const word_piece& p, std::int64_t type)
    {
        e.ids.push_back(p.id);
        e.type_ids.push_back(type);
        e.offsets.emplace_back(p.begin, p.end);
    }

    static std::string to_utf8(const std::vector<char32_t>& chars, std::size_t begin, std::size_t end)
    {
        std::string s;
        for (std::size_t i = begin; i < end; ++i) append_utf8(s, chars[i]);
        return s;
    }

    /// Index into `specials_` of the special token that starts at `at`, if any.
    std::optional<std::size_t> special_at(const std::vector<char32_t>& chars, std::size_t at) const
    {
        for (std::size_t k = 0; k < specials_.size(); ++k) {
            const auto& s = specials_[k];
            if (at + s.size() <= chars.size() && std::equal(s.begin(), s.end(), chars.begin() + static_cast<std::ptrdiff_t>(at)))
                return k;
        }
        return std::nullopt;
    }

    /// The basic tokenizer and WordPiece over chars [begin, end).
    void tokenize_plain(const std::vector<char32_t>& chars, std::size_t begin, std::size_t end,
                        std::vector<word_piece>& out) const
    {
        std::vector<located_char> word;
        const auto flush = [&] {
            if (!word.empty()) split_punctuation(word, out);
            word.clear();
        };
        for (std::size_t i = begin; i < end; ++i) {
            const char32_t c = chars[i];
            if (c == 0 || c == 0xFFFD || bert_chars::is_control(c)) continue;
            if (bert_chars::is_whitespace(c)) {
                flush();
            } else if (bert_chars::is_cjk(c)) {
                flush();
                word.push_back({c, i});
                flush();
            } else {
                word.push_back({c, i});
            }
        }
        flush();
    }

    /// Normalises a whitespace-separated word (uncased: accents stripped, lower case), splits it on
    /// punctuation and WordPiece-encodes each part.
    void split_punctuation(const std::vector<located_char>& raw, std::vector<word_piece>& out) const
    {
        std::vector<located_char> word;
        for (const auto& [c, origin] : raw) {
            if (!lower_case_) {
                word.push_back({c, origin});
                continue;
            }
            std::array<utf8proc_int32_t, 8> decomposed{};
            int last_boundclass = 0;
            const auto n =
                utf8proc_decompose_char(static_cast<utf8proc_int32_t>(c), decomposed.data(),
                                        static_cast<utf8proc_ssize_t>(decomposed.size()), UTF8PROC_DECOMPOSE, &last_boundclass);
            if (n < 0 || static_cast<std::size_t>(n) > decomposed.size()) {
                word.push_back({static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))), origin});
                continue;
            }
            for (std::size_t k = 0; k < static_cast<std::size_t>(n); ++k) {
                if (utf8proc_category(decomposed[k]) == UTF8PROC_CATEGORY_MN) continue;
                word.push_back({static_cast<char32_t>(utf8proc_tolower(decomposed[k])), origin});
            }
        }
        std::size_t start = 0;
        for (std::size_t i = 0; i < word.size(); ++i)
            if (bert_chars::is_punctuation(word[i].code)) {
                word_pieces(word, start, i, out);
                word_pieces(word, i, i + 1, out);
                start = i + 1;
            }
        word_pieces(word, start, word.size(), out);
    }

    /// Greedy longest-match-first WordPiece of word[begin, end).
    void word_pieces(const std::vector<located_char>& word, std::size_t begin, std::size_t end,
                     std::vector<word_piece>& out) const
    {
        if (begin >= end) return;
        const word_piece unknown{unk_id_, word[begin].origin, word[end - 1].origin + 1};
        if (end - begin > max_word_chars) {
            out.push_back(unknown);
            return;
        }
        std::vector<std::size_t> byte_at{0};  // UTF-8 of the word, and where each character starts
        std::string utf8;
        for (std::size_t i = begin; i < end; ++i) {
            append_utf8(utf8, word[i].code);
            byte_at.push_back(utf8.size());
        }
        const std::size_t first_piece = out.size();
        for (std::size_t start = 0; start < end - begin;) {
            std::optional<std::int64_t> id;
            std::size_t stop = end - begin;
            for (; stop > start; --stop) {
                std::string candidate = start > 0 ? "##" : "";
                candidate.append(utf8, byte_at[start], byte_at[stop] - byte_at[start]);
                if ((id = find(candidate))) break;
            }
            if (!id) {
                out.resize(first_piece);
                out.push_back(unknown);
                return;
            }
            out.push_back({*id, word[begin + start].origin, word[begin + stop - 1].origin + 1});
            start = stop;
        }
    }

    std::vector<std::string> tokens_;
    std::unordered_map<std::string, std::int64_t> ids_;
    std::vector<std::vector<char32_t>> specials_;
    bool lower_case_ = true;
    std::int64_t pad_id_ = 0, unk_id_ = 0, cls_id_ = 0, sep_id_ = 0;
};

}  // namespace dm2s2
