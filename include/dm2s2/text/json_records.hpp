#pragma once
/// \file
/// The data format of the tools: `schema.json` (modalities and task) and records as JSON Lines, read
/// into `sequence_set`s and targets. `record_encoder` holds what is learned from the training file —
/// category tables, numeric statistics, the label list — and saves it beside the model.
///
/// schema.json:
/// `{"modalities": [{"name", "kind": "text"|"tokens"|"dense"|"categorical"|"numeric", "max_length", "dim"}],
///   "task": {"type": "multiclass"|"binary"|"multilabel"|"regression", "target", "labels"}}`.
/// A record is one JSON object per line: optional "id"; per modality a string (text), an int array
/// (tokens), an array of dim-long number arrays (dense), a string or string array (categorical), a
/// number or array of numbers and nulls (numeric). Absent, null or empty means missing. The target: a
/// label string (multiclass), 0/1, true/false or one of two labels (binary), an array of labels
/// (multilabel), a number (regression). Every error names the file, the line and the field.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dm2s2/core/json.hpp"
#include "dm2s2/data/category_table.hpp"
#include "dm2s2/data/schema.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/io/hf_bert.hpp"
#include "dm2s2/text/wordpiece.hpp"
#include "dm2s2/train/dataset.hpp"
#include "dm2s2/train/losses.hpp"

namespace dm2s2 {

/// The prediction task of a data set.
struct task_spec {
    task_type type = task_type::multiclass;
    std::string target;               ///< the record field holding the target
    std::vector<std::string> labels;  ///< classes (multiclass, multilabel) or {negative, positive} (binary)
};

/// A parsed schema.json: the modalities (categories and statistics still unset) and the task.
struct data_spec {
    std::vector<modality_spec> modalities;
    task_spec task;
    bool labels_given = false;  ///< the labels came from the schema rather than the training file
};

/// Parses task type names ("multiclass", "binary", "multilabel", "regression").
inline std::optional<task_type> parse_task_type(std::string_view s) noexcept
{
    for (auto t : {task_type::multiclass, task_type::binary, task_type::multilabel, task_type::regression})
        if (to_string(t) == s) return t;
    return std::nullopt;
}

/// Parses the JSON of a schema.json file; errors name `source` and the field.
inline data_spec parse_data_spec(const nlohmann::json& j, const std::string& source)
{
    const auto fail = [&](const std::string& what) { return format_error(source + ": " + what); };
    if (!j.is_object() || !j.contains("modalities") || !j["modalities"].is_array() || j["modalities"].empty())
        throw fail("'modalities' must be a non-empty array");
    data_spec spec;
    for (std::size_t m = 0; m < j["modalities"].size(); ++m) {
        const auto& e = j["modalities"][m];
        const std::string at = "modalities[" + std::to_string(m) + "]";
        if (!e.is_object() || !e.contains("name") || !e["name"].is_string()) throw fail(at + ": 'name' must be a string");
        modality_spec s;
        s.name = e["name"].get<std::string>();
        const std::string named = at + " ('" + s.name + "')";
        if (!e.contains("kind") || !e["kind"].is_string()) throw fail(named + ": 'kind' must be a string");
        const auto kind = parse_modality_kind(e["kind"].get<std::string>());
        if (!kind) throw fail(named + ": unknown kind '" + e["kind"].get<std::string>() + "'");
        s.kind = *kind;
        for (const auto& [key, target] : {std::pair<const char*, std::size_t*>{"max_length", &s.max_length}, {"dim", &s.dim}})
            if (e.contains(key)) {
                if (!e[key].is_number_unsigned() || e[key].get<std::size_t>() == 0)
                    throw fail(named + ": '" + key + "' must be a positive integer");
                *target = e[key].get<std::size_t>();
            }
        if (s.kind == modality_kind::dense && s.dim == 0) throw fail(named + ": a dense modality needs 'dim'");
        if (s.kind == modality_kind::categorical) s.categories = 1;  // set from the training file
        spec.modalities.push_back(s);
    }
    try {
        schema{spec.modalities};  // names, duplicates, limits
    } catch (const error& e) {
        throw fail(e.what());
    }
    if (!j.contains("task") || !j["task"].is_object()) throw fail("'task' must be an object");
    const auto& t = j["task"];
    if (!t.contains("type") || !t["type"].is_string() || !parse_task_type(t["type"].get<std::string>()))
        throw fail("task.type must be \"multiclass\", \"binary\", \"multilabel\" or \"regression\"");
    spec.task.type = *parse_task_type(t["type"].get<std::string>());
    if (!t.contains("target") || !t["target"].is_string() || t["target"].get<std::string>().empty())
        throw fail("task.target must name the target field");
    spec.task.target = t["target"].get<std::string>();
    for (const auto& m : spec.modalities)
        if (m.name == spec.task.target) throw fail("task.target '" + m.name + "' is also a modality");
    if (t.contains("labels")) {
        if (!t["labels"].is_array()) throw fail("task.labels must be an array of strings");
        for (const auto& l : t["labels"]) {
            if (!l.is_string()) throw fail("task.labels must be an array of strings");
            spec.task.labels.push_back(l.get<std::string>());
        }
        if (std::set<std::string>(spec.task.labels.begin(), spec.task.labels.end()).size() != spec.task.labels.size())
            throw fail("task.labels has duplicates");
        if (spec.task.type == task_type::binary && spec.task.labels.size() != 2) throw fail("a binary task has two labels");
        if (spec.task.type != task_type::regression && spec.task.labels.empty()) throw fail("task.labels is empty");
        spec.labels_given = true;
    }
    return spec;
}

/// Reads and parses a schema.json file.
inline data_spec read_data_spec(const std::filesystem::path& path)
{
    return parse_data_spec(read_json_file(path), path.string());
}

/// One line of a JSON Lines file: where it came from and its object.
struct json_record {
    std::string where;  ///< "file:line"
    nlohmann::json value;
};

/// Reads a JSON Lines file one record at a time (one object per line, blank lines skipped), so that
/// memory holds one record however long the file; errors name the file and line.
class json_lines_reader {
public:
    explicit json_lines_reader(const std::filesystem::path& path) : path_(path.string()), in_(path, std::ios::binary)
    {
        if (!in_) throw error(path_ + ": cannot open");
    }

    /// The longest line a record may take (64 MiB): a longer one is an error before it is all in memory.
    static constexpr std::size_t max_line_bytes = std::size_t{64} << 20;

    /// The next record, or nothing at the end of the file.
    std::optional<json_record> next()
    {
        while (next_line()) {
            ++line_;
            if (line_text_.find_first_not_of(" \t\r") == std::string::npos) continue;
            json_record r{path_ + ":" + std::to_string(line_), {}};
            r.value = parse_json_text<input_error>(r.where + ": not valid JSON: ", line_text_);
            if (!r.value.is_object()) throw input_error(r.where + ": a record must be a JSON object");
            ++records_;
            return r;
        }
        return std::nullopt;
    }

    /// Records returned so far.
    std::size_t records() const noexcept { return records_; }
    const std::string& path() const noexcept { return path_; }

private:
    /// Reads the next line into `line_text_` (without its newline), in blocks; false at the end.
    bool next_line()
    {
        line_text_.clear();
        for (;;) {
            const std::size_t newline = buffer_.find('\n', position_);
            const std::size_t end = newline == std::string::npos ? buffer_.size() : newline;
            line_text_.append(buffer_, position_, end - position_);
            position_ = newline == std::string::npos ? buffer_.size() : newline + 1;
            if (line_text_.size() > max_line_bytes)
                throw input_error(path_ + ":" + std::to_string(line_ + 1) + ": longer than " +
                                  std::to_string(max_line_bytes >> 20) + " MiB (the limit for one record)");
            if (newline != std::string::npos) return true;
            if (in_.eof()) return !line_text_.empty();
            buffer_.resize(std::size_t{1} << 16);
            in_.read(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
            buffer_.resize(static_cast<std::size_t>(in_.gcount()));
            position_ = 0;
            if (in_.bad()) throw error(path_ + ": read failed after line " + std::to_string(line_));
        }
    }

    std::string path_;
    std::ifstream in_;
    std::string buffer_, line_text_;
    std::size_t position_ = 0, line_ = 0, records_ = 0;
};

/// Reads a whole JSON Lines file (see `json_lines_reader`); a file without records is an error.
inline std::vector<json_record> read_json_lines(const std::filesystem::path& path)
{
    json_lines_reader reader(path);
    std::vector<json_record> out;
    while (auto r = reader.next()) out.push_back(std::move(*r));
    if (out.empty()) throw input_error(path.string() + ": no records");
    return out;
}

/// Turns JSON records into `sequence_set`s and targets with what it learned from a training file:
/// category tables, numeric means and standard deviations, and the labels.
class record_encoder {
public:
    /// Learns an encoder from training records passed one at a time (so that they need not all be in
    /// memory): category tables, numeric statistics and, unless the schema lists them, the labels.
    class fitter;

    /// Learns from `train` (checking every record) under `spec` (see `fitter`). `tokenizer` is required
    /// when a modality is text, and must outlive the encoder.
    static record_encoder fit(data_spec spec, const std::vector<json_record>& train, const wordpiece_tokenizer* tokenizer);

    const dm2s2::schema& schema() const noexcept { return schema_; }
    const task_spec& task() const noexcept { return spec_.task; }
    const category_table& table(std::size_t m) const { return tables_.at(m); }
    const wordpiece_tokenizer* tokenizer() const noexcept { return tokenizer_; }

    /// Logits the model needs: the number of classes (multiclass, multilabel) or 1.
    std::size_t num_outputs() const
    {
        const auto t = spec_.task.type;
        return t == task_type::multiclass || t == task_type::multilabel ? spec_.task.labels.size() : 1;
    }

    /// The record's id: its "id" field as text, or where it came from.
    static std::string id_of(const json_record& r)
    {
        if (!r.value.contains("id") || r.value["id"].is_null()) return r.where;
        return r.value["id"].is_string() ? r.value["id"].get<std::string>() : r.value["id"].dump();
    }

    /// The record as a sequence set; throws input_error naming the line and field for a value of the
    /// wrong type or shape, and for a record with no present modality.
    sequence_set encode(const json_record& r) const
    {
        sequence_set x(schema_);
        for (std::size_t m = 0; m < spec_.modalities.size(); ++m) {
            const auto* v = field(r, m);
            if (v == nullptr) continue;
            const auto& s = spec_.modalities[m];
            switch (s.kind) {
            case modality_kind::text: {
                std::vector<std::int64_t> ids;
                try {
                    for (const auto& p : tokenizer_->tokenize(v->get<std::string>())) ids.push_back(p.id);
                } catch (const error& e) {
                    throw input_error(at(r, m) + e.what());
                }
                x.set_tokens(m, std::move(ids));
                break;
            }
            case modality_kind::tokens: {
                std::vector<std::int64_t> ids;
                for (const auto& t : *v) {
                    if (!t.is_number_integer()) throw input_error(at(r, m) + "token ids must be integers");
                    ids.push_back(t.get<std::int64_t>());
                }
                x.set_tokens(m, std::move(ids));
                break;
            }
            case modality_kind::dense: {
                std::vector<float> values;
                for (std::size_t k = 0; k < v->size(); ++k) {
                    const auto& row = (*v)[k];
                    if (!row.is_array() || row.size() != s.dim)
                        throw input_error(at(r, m) + "row " + std::to_string(k) + " must be an array of " +
                                          std::to_string(s.dim) + " numbers");
                    for (const auto& number : row) {
                        if (!number.is_number()) throw input_error(at(r, m) + "row " + std::to_string(k) + " holds a non-number");
                        values.push_back(static_cast<float>(within_float(number, at(r, m) + "row " + std::to_string(k) + ": ")));
                    }
                }
                x.set_dense(m, std::move(values));
                break;
            }
            case modality_kind::categorical: x.set_categorical(m, strings(r, m, *v), tables_[m]); break;
            case modality_kind::numeric: {
                auto values = numbers(r, m, *v);
                for (const auto& number : values) {
                    const double standardised = number ? (*number - s.mean) / s.stddev : 0.0;
                    if (!fits_float(standardised))
                        throw input_error(at(r, m) + nlohmann::json(*number).dump() +
                                          " standardised with the training data's mean and standard deviation is " +
                                          nlohmann::json(standardised).dump() + ", beyond float's range (±3.4e38)");
                }
                x.set_numeric_with_nulls(m, values);
                break;
            }
            }
        }
        bool any = false;
        for (std::size_t m = 0; m < spec_.modalities.size(); ++m) any = any || x.present(m);
        if (!any) throw input_error(r.where + ": no modality is present");
        return x;
    }

    /// True when the record has a (non-null) target.
    bool has_target(const json_record& r) const
    {
        return r.value.contains(spec_.task.target) && !r.value[spec_.task.target].is_null();
    }

    /// Writes the record's target into `row` (one value: the class index for multiclass; otherwise
    /// num_outputs() values); throws input_error naming the line when it is missing or invalid.
    template <scalar T>
    void encode_target(const json_record& r, T* row) const
    {
        const std::string where = r.where + ": target '" + spec_.task.target + "': ";
        if (!has_target(r)) throw input_error(where + "missing");
        const auto& v = r.value[spec_.task.target];
        const auto& labels = spec_.task.labels;
        const auto index_of = [&](const std::string& label) -> std::size_t {
            const auto it = std::find(labels.begin(), labels.end(), label);
            if (it == labels.end()) throw input_error(where + "unknown label '" + label + "'");
            return static_cast<std::size_t>(it - labels.begin());
        };
        switch (spec_.task.type) {
        case task_type::multiclass:
            if (!v.is_string()) throw input_error(where + "must be a label string");
            row[0] = static_cast<T>(index_of(v.get<std::string>()));
            return;
        case task_type::binary: row[0] = static_cast<T>(binary_index(v, where)); return;
        case task_type::multilabel:
            if (!v.is_array()) throw input_error(where + "must be an array of labels");
            std::fill_n(row, labels.size(), T(0));
            for (const auto& l : v) {
                if (!l.is_string()) throw input_error(where + "must be an array of labels");
                row[index_of(l.get<std::string>())] = T(1);
            }
            return;
        case task_type::regression:
            if (!v.is_number()) throw input_error(where + "must be a number");
            row[0] = static_cast<T>(within_float(v, where));
            return;
        }
    }

    /// The records that `reader` has left, with their targets, as a training or evaluation data set:
    /// each is encoded as it is read, so memory holds the encoded records, never their JSON. A reader
    /// without records is an error.
    template <scalar T>
    dataset<T> encode_dataset(json_lines_reader& reader) const
    {
        dataset<T> out{encoded_records(schema()), {}};
        const std::size_t width = spec_.task.type == task_type::multiclass ? 1 : num_outputs();
        std::vector<T> targets;
        while (const auto r = reader.next()) {
            out.records.push_back(encode(*r));
            targets.resize(targets.size() + width);
            encode_target(*r, targets.data() + targets.size() - width);
        }
        if (out.records.empty()) throw input_error(reader.path() + ": no records");
        out.targets =
            spec_.task.type == task_type::multiclass ? tensor<T>({out.records.size()}) : tensor<T>({out.records.size(), width});
        std::copy(targets.begin(), targets.end(), out.targets.data());
        return out;
    }

    /// The records and their targets as a training or evaluation data set.
    template <scalar T>
    dataset<T> encode_dataset(const std::vector<json_record>& records) const
    {
        dataset<T> out{encoded_records(schema()), {}};
        out.records.reserve(records.size());
        const std::size_t width = spec_.task.type == task_type::multiclass ? 1 : num_outputs();
        out.targets = spec_.task.type == task_type::multiclass ? tensor<T>({records.size()}) : tensor<T>({records.size(), width});
        for (std::size_t i = 0; i < records.size(); ++i) {
            out.records.push_back(encode(records[i]));
            encode_target(records[i], out.targets.data() + i * width);
        }
        return out;
    }

    /// Printable strings of the first `count` elements of modality m of `x`: word pieces, token ids,
    /// category values, `#k` for dense rows, numbers.
    std::vector<std::string> element_strings(const sequence_set& x, std::size_t m, std::size_t count) const
    {
        std::vector<std::string> out;
        const auto& s = spec_.modalities[m];
        for (std::size_t i = 0; i < count; ++i) {
            switch (s.kind) {
            case modality_kind::text: out.push_back(tokenizer_->token(x.ids(m)[i])); break;
            case modality_kind::tokens:
                out.push_back(tokenizer_ ? tokenizer_->token(x.ids(m)[i]) : std::to_string(x.ids(m)[i]));
                break;
            case modality_kind::categorical: out.push_back(tables_[m].value(x.ids(m)[i])); break;
            case modality_kind::dense: {
                std::string row = "#";  // appended piecewise: g++ 12 warns falsely on "#" + std::string (-Wrestrict)
                row += std::to_string(i);
                out.push_back(std::move(row));
                break;
            }
            case modality_kind::numeric: {
                std::ostringstream text;
                text << x.numbers(m)[i];
                out.push_back(text.str());
                break;
            }
            }
        }
        return out;
    }

    /// What the encoder learned, for saving beside a model: the schema.json content with the labels
    /// filled in, and the category tables.
    nlohmann::json to_json() const
    {
        nlohmann::json modalities = nlohmann::json::array();
        for (const auto& s : spec_.modalities) {
            nlohmann::json e = {{"name", s.name}, {"kind", std::string(to_string(s.kind))}, {"max_length", s.max_length}};
            if (s.kind == modality_kind::dense) e["dim"] = s.dim;
            modalities.push_back(e);
        }
        nlohmann::json task = {{"type", std::string(to_string(spec_.task.type))}, {"target", spec_.task.target}};
        if (spec_.task.type != task_type::regression) task["labels"] = spec_.task.labels;
        nlohmann::json tables = nlohmann::json::object(), statistics = nlohmann::json::object();
        for (std::size_t m = 0; m < spec_.modalities.size(); ++m) {
            const auto& s = spec_.modalities[m];
            if (s.kind == modality_kind::categorical) {
                nlohmann::json values = nlohmann::json::array();
                for (std::size_t id = 1; id < tables_[m].rows(); ++id)
                    values.push_back(tables_[m].value(static_cast<std::int64_t>(id)));
                tables[s.name] = values;
            }
            if (s.kind == modality_kind::numeric) statistics[s.name] = {{"mean", s.mean}, {"stddev", s.stddev}};
        }
        return {{"modalities", modalities}, {"task", task}, {"category_tables", tables}, {"numeric_statistics", statistics}};
    }

    /// Restores an encoder saved with `to_json`; `source` names it in errors.
    static record_encoder from_json(const nlohmann::json& j, const std::string& source, const wordpiece_tokenizer* tokenizer)
    {
        record_encoder e(parse_data_spec(j, source), tokenizer);
        try {
            for (std::size_t m = 0; m < e.spec_.modalities.size(); ++m) {
                auto& s = e.spec_.modalities[m];
                if (s.kind == modality_kind::categorical) {
                    for (const auto& v : j.at("category_tables").at(s.name)) e.tables_[m].add(v.get<std::string>());
                    s.categories = e.tables_[m].rows();
                }
                if (s.kind == modality_kind::numeric) {
                    s.mean = j.at("numeric_statistics").at(s.name).at("mean").get<double>();
                    s.stddev = j.at("numeric_statistics").at(s.name).at("stddev").get<double>();
                }
            }
        } catch (const nlohmann::json::exception& x) {
            throw format_error(source + ": " + x.what());
        }
        e.schema_ = dm2s2::schema(e.spec_.modalities);
        return e;
    }

private:
    /// Running mean and variance of a numeric modality (Welford).
    struct running_statistics {
        std::size_t count = 0;
        double mean_ = 0, m2 = 0;
        void add(double x)
        {
            ++count;
            const double d = x - mean_;
            mean_ += d / static_cast<double>(count);
            m2 += d * (x - mean_);
        }
        double mean() const { return mean_; }
        double stddev() const
        {
            const double s = count > 1 ? std::sqrt(m2 / static_cast<double>(count)) : 0.0;
            return s > 0 && std::isfinite(s) ? s : 1.0;  // a constant or absent field is left unscaled
        }
    };

    record_encoder(data_spec spec, const wordpiece_tokenizer* tokenizer)
        : spec_(std::move(spec)), tokenizer_(tokenizer), tables_(spec_.modalities.size()), sums_(spec_.modalities.size())
    {
        for (const auto& s : spec_.modalities)
            if (s.kind == modality_kind::text && tokenizer_ == nullptr)
                throw config_error("modality '" + s.name + "' is text: a WordPiece vocabulary is needed (--vocab)");
    }

    std::string at(const json_record& r, std::size_t m) const { return r.where + ": field '" + spec_.modalities[m].name + "': "; }

    /// True when `x` is within float's finite range (false for NaN).
    static bool fits_float(double x) { return std::abs(x) <= static_cast<double>(std::numeric_limits<float>::max()); }

    /// A record's number, refused (naming `where`) beyond float's finite range, where the model, the
    /// numeric statistics and the float targets would turn it into an infinity. (JSON itself has no
    /// NaN or infinity, and nlohmann_json refuses numbers that overflow a double.)
    static double within_float(const nlohmann::json& v, const std::string& where)
    {
        const double x = v.get<double>();
        if (!fits_float(x)) throw input_error(where + v.dump() + " is beyond float's range (±3.4e38)");
        return x;
    }

    /// The value of modality m, or null when it is missing (absent, null, empty string or array);
    /// throws when its JSON type does not fit the kind.
    const nlohmann::json* field(const json_record& r, std::size_t m) const
    {
        const auto& s = spec_.modalities[m];
        if (!r.value.contains(s.name)) return nullptr;
        const auto& v = r.value[s.name];
        if (v.is_null()) return nullptr;
        const bool fits = s.kind == modality_kind::text          ? v.is_string()
                          : s.kind == modality_kind::categorical ? v.is_string() || v.is_array()
                          : s.kind == modality_kind::numeric     ? v.is_number() || v.is_array()
                                                                 : v.is_array();
        if (!fits) throw input_error(at(r, m) + "a " + std::string(to_string(s.kind)) + " modality cannot hold " + v.type_name());
        if ((v.is_string() && v.get_ref<const std::string&>().empty()) || (v.is_array() && v.empty())) return nullptr;
        return &v;
    }

    std::vector<std::string> strings(const json_record& r, std::size_t m, const nlohmann::json& v) const
    {
        if (v.is_string()) return {v.get<std::string>()};
        std::vector<std::string> out;
        for (const auto& s : v) {
            if (!s.is_string()) throw input_error(at(r, m) + "categorical values must be strings");
            out.push_back(s.get<std::string>());
        }
        return out;
    }

    std::vector<std::optional<double>> numbers(const json_record& r, std::size_t m, const nlohmann::json& v) const
    {
        if (v.is_number()) return {within_float(v, at(r, m))};
        std::vector<std::optional<double>> out;
        for (const auto& x : v) {
            if (x.is_null()) out.emplace_back();
            else if (x.is_number()) out.emplace_back(within_float(x, at(r, m)));
            else throw input_error(at(r, m) + "numeric values must be numbers or null");
        }
        return out;
    }

    /// 0 or 1 for a binary target: false/true, 0/1, or one of the two labels.
    std::size_t binary_index(const nlohmann::json& v, const std::string& where) const
    {
        if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
        if (v.is_number_integer() && (v.get<std::int64_t>() == 0 || v.get<std::int64_t>() == 1))
            return static_cast<std::size_t>(v.get<std::int64_t>());
        if (v.is_string()) {
            const auto& labels = spec_.task.labels;
            const auto it = std::find(labels.begin(), labels.end(), v.get<std::string>());
            if (it != labels.end()) return static_cast<std::size_t>(it - labels.begin());
            throw input_error(where + "unknown label '" + v.get<std::string>() + "'");
        }
        throw input_error(where + "must be 0/1, true/false or one of the two labels");
    }

    /// Checks the target of a training record and adds its labels to `labels`.
    void collect_labels(const json_record& r, std::set<std::string>& labels) const
    {
        const std::string where = r.where + ": target '" + spec_.task.target + "': ";
        if (!has_target(r)) throw input_error(where + "missing (every training record needs one)");
        const auto& v = r.value[spec_.task.target];
        switch (spec_.task.type) {
        case task_type::multiclass:
            if (!v.is_string()) throw input_error(where + "must be a label string");
            labels.insert(v.get<std::string>());
            break;
        case task_type::binary:
            if (v.is_string()) labels.insert(v.get<std::string>());
            else if (v.is_boolean() || v.is_number_integer()) labels.insert(std::to_string(binary_index(v, where)));
            else throw input_error(where + "must be 0/1, true/false or one of the two labels");
            break;
        case task_type::multilabel:
            if (!v.is_array()) throw input_error(where + "must be an array of labels");
            for (const auto& l : v) {
                if (!l.is_string()) throw input_error(where + "must be an array of labels");
                labels.insert(l.get<std::string>());
            }
            break;
        case task_type::regression:
            if (!v.is_number()) throw input_error(where + "must be a number");
            within_float(v, where);
            break;
        }
    }

    data_spec spec_;
    const wordpiece_tokenizer* tokenizer_ = nullptr;
    std::vector<category_table> tables_;
    std::vector<running_statistics> sums_;
    dm2s2::schema schema_;
};

/// Learns an encoder from training records passed one at a time: `record_encoder::fit` passes a
/// vector's, `dm2s2_train` streams its training file through one, so that the file's JSON is never
/// all in memory.
class record_encoder::fitter {
public:
    /// `tokenizer` is required when a modality is text, and must outlive the encoder.
    fitter(data_spec spec, const wordpiece_tokenizer* tokenizer) : e_(std::move(spec), tokenizer) {}

    /// Learns from one training record, checking it.
    void add(const json_record& r)
    {
        for (std::size_t m = 0; m < e_.spec_.modalities.size(); ++m) {
            const auto& s = e_.spec_.modalities[m];
            const auto* v = e_.field(r, m);
            if (v == nullptr) continue;
            if (s.kind == modality_kind::categorical)
                for (const auto& value : e_.strings(r, m, *v)) e_.tables_[m].add(value);
            if (s.kind == modality_kind::numeric)
                for (const auto& x : e_.numbers(r, m, *v))
                    if (x) e_.sums_[m].add(*x);
        }
        e_.collect_labels(r, labels_);
    }

    /// The encoder of the records added.
    record_encoder finish() &&
    {
        auto& e = e_;
        if (!e.spec_.labels_given && e.spec_.task.type != task_type::regression) {
            e.spec_.task.labels.assign(labels_.begin(), labels_.end());
            if (e.spec_.task.type == task_type::binary && e.spec_.task.labels.size() != 2)
                throw input_error("training data: a binary target needs exactly two values, found " +
                                  std::to_string(labels_.size()));
            if (e.spec_.task.labels.empty()) throw input_error("training data: no labels");
        }
        for (std::size_t m = 0; m < e.spec_.modalities.size(); ++m) {
            auto& s = e.spec_.modalities[m];
            if (s.kind == modality_kind::categorical) s.categories = e.tables_[m].rows();
            if (s.kind == modality_kind::numeric) {
                s.mean = e.sums_[m].mean();
                s.stddev = e.sums_[m].stddev();
            }
        }
        e.schema_ = dm2s2::schema(e.spec_.modalities);
        return std::move(e);
    }

private:
    record_encoder e_;
    std::set<std::string> labels_;
};

inline record_encoder record_encoder::fit(data_spec spec, const std::vector<json_record>& train,
                                          const wordpiece_tokenizer* tokenizer)
{
    fitter f(std::move(spec), tokenizer);
    for (const auto& r : train) f.add(r);
    return std::move(f).finish();
}

}  // namespace dm2s2
