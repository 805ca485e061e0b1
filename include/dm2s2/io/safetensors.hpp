#pragma once
/// \file
/// Reading and writing the safetensors format: 8-byte little-endian header length, a JSON header
/// `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`, then the
/// tensor bytes. The reader validates the whole header before any tensor is used; the writer
/// replaces its target atomically.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dm2s2/core/error.hpp"
#include "dm2s2/core/json.hpp"
#include "dm2s2/core/scalar.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/io/atomic_file.hpp"
#include "dm2s2/io/dtype.hpp"

static_assert(std::endian::native == std::endian::little, "dm2s2's safetensors I/O assumes a little-endian host");

namespace dm2s2 {

/// Largest JSON header accepted (the limit the reference implementation uses).
inline constexpr std::uint64_t safetensors_max_header_bytes = 100'000'000;

/// One tensor's entry in a safetensors header; offsets are relative to the start of the data section.
struct safetensors_entry {
    std::string name;
    dtype type{};
    shape_t shape;
    std::size_t begin = 0;
    std::size_t end = 0;
};

/// A validated safetensors file held in memory.
class safetensors_file {
public:
    /// Reads and validates `path`; throws format_error naming the file on any defect.
    static safetensors_file load(const std::filesystem::path& path) { return parse(read_file(path), path.string()); }

    /// Validates an in-memory file; `source` names it in error messages.
    static safetensors_file parse(std::vector<std::byte> bytes, std::string source)
    {
        safetensors_file file;
        file.source_ = std::move(source);
        file.bytes_ = std::move(bytes);
        file.validate();
        return file;
    }

    /// Name of the file (used in messages).
    const std::string& source() const noexcept { return source_; }
    /// Entries in data order.
    const std::vector<safetensors_entry>& entries() const noexcept { return entries_; }
    /// The `__metadata__` map (empty when absent).
    const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

    bool contains(const std::string& name) const { return index_.count(name) != 0; }
    /// Bytes of the data section (every tensor's bytes).
    std::size_t data_bytes() const noexcept { return bytes_.size() - data_offset_; }

    /// The entry called `name`; throws format_error naming the file when there is none.
    const safetensors_entry& entry(const std::string& name) const
    {
        const auto it = index_.find(name);
        if (it == index_.end()) throw format_error(source_ + ": no tensor named '" + name + "'");
        return entries_[it->second];
    }

    /// The raw little-endian bytes of tensor `name`.
    std::span<const std::byte> raw(const std::string& name) const
    {
        const auto& e = entry(name);
        return {data_begin() + e.begin, e.end - e.begin};
    }

    /// Tensor `name` converted to T; the stored dtype must be F64, F32, F16 or BF16.
    template <scalar T>
    tensor<T> read(const std::string& name) const
    {
        const auto& e = entry(name);
        if (!is_float_dtype(e.type))
            throw format_error(source_ + ": tensor '" + name + "' has dtype " + std::string(dtype_name(e.type)) +
                               ", expected a floating-point dtype (F64, F32, F16, BF16)");
        tensor<T> out(e.shape);
        const std::byte* data = data_begin() + e.begin;
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(load_float_element(data, e.type, i));
        return out;
    }

    /// Tensor `name` converted to int64; the stored dtype must be an integer or BOOL dtype.
    tensor<std::int64_t> read_integers(const std::string& name) const
    {
        const auto& e = entry(name);
        if (!is_integer_dtype(e.type))
            throw format_error(source_ + ": tensor '" + name + "' has dtype " + std::string(dtype_name(e.type)) +
                               ", expected an integer dtype");
        tensor<std::int64_t> out(e.shape);
        const std::byte* data = data_begin() + e.begin;
        for (std::size_t i = 0; i < out.size(); ++i)
            if (!load_integer_element(data, e.type, i, out[i]))
                throw format_error(source_ + ": tensor '" + name + "' element " + std::to_string(i) +
                                   " does not fit in a signed 64-bit integer");
        return out;
    }

private:
    const std::byte* data_begin() const noexcept { return bytes_.data() + data_offset_; }

    [[noreturn]] void fail(const std::string& what) const { throw format_error(source_ + ": " + what); }

    void validate()
    {
        if (bytes_.size() < 8) fail("truncated: " + std::to_string(bytes_.size()) + " bytes, a safetensors file has at least 8");
        std::uint64_t header_size = 0;
        std::memcpy(&header_size, bytes_.data(), 8);
        if (header_size > safetensors_max_header_bytes)
            fail("header length " + std::to_string(header_size) + " exceeds the limit of " +
                 std::to_string(safetensors_max_header_bytes) + " bytes");
        if (header_size > bytes_.size() - 8)
            fail("truncated: header length " + std::to_string(header_size) + " but only " + std::to_string(bytes_.size() - 8) +
                 " bytes follow");
        data_offset_ = 8 + static_cast<std::size_t>(header_size);

        const nlohmann::json header = parse_header(header_size);
        if (!header.is_object()) fail("header is not a JSON object");
        for (const auto& [name, value] : header.items()) {
            if (name == "__metadata__") read_metadata(value);
            else entries_.push_back(read_entry(name, value));
        }
        check_layout();
        for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].name, i);
    }

    nlohmann::json parse_header(std::uint64_t header_size)
    {
        const char* text = reinterpret_cast<const char*>(bytes_.data() + 8);
        std::set<std::string> seen;
        std::string duplicate;
        // nlohmann keeps the last of duplicated keys silently; the callback sees every top-level key.
        if (json_nests_deeper_than({text, static_cast<std::size_t>(header_size)}, json_max_depth))
            fail("header nests arrays and objects deeper than " + std::to_string(json_max_depth) + " levels (the limit)");
        const auto watch_keys = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
            if (event == nlohmann::json::parse_event_t::key && depth == 1 && !seen.insert(parsed.get<std::string>()).second)
                duplicate = parsed.get<std::string>();
            return true;
        };
        try {
            nlohmann::json header = nlohmann::json::parse(text, text + header_size, watch_keys);
            if (!duplicate.empty()) fail("duplicate tensor name '" + duplicate + "' in the header");
            return header;
        } catch (const nlohmann::json::exception& e) {
            fail(std::string("header is not valid JSON: ") + e.what());
        }
    }

    void read_metadata(const nlohmann::json& value)
    {
        if (!value.is_object()) fail("__metadata__ is not a JSON object");
        for (const auto& [key, v] : value.items()) {
            if (!v.is_string()) fail("__metadata__ value of '" + key + "' is not a string");
            metadata_[key] = v.get<std::string>();
        }
    }

    safetensors_entry read_entry(const std::string& name, const nlohmann::json& value) const
    {
        const std::string where = "tensor '" + name + "': ";
        if (!value.is_object()) fail(where + "entry is not a JSON object");
        for (const char* field : {"dtype", "shape", "data_offsets"})
            if (!value.contains(field)) fail(where + "missing field '" + field + "'");
        safetensors_entry e;
        e.name = name;
        if (!value["dtype"].is_string()) fail(where + "dtype is not a string");
        const auto type = parse_dtype(value["dtype"].get<std::string>());
        if (!type) fail(where + "unknown dtype '" + value["dtype"].get<std::string>() + "'");
        e.type = *type;

        const auto& shape = value["shape"];
        if (!shape.is_array()) fail(where + "shape is not an array");
        std::size_t bytes = dtype_size(e.type);
        for (const auto& d : shape) {
            if (!d.is_number_unsigned()) fail(where + "shape has an entry that is not a non-negative integer");
            const std::uint64_t extent = d.get<std::uint64_t>();
            if (extent != 0 && bytes > std::numeric_limits<std::size_t>::max() / extent)
                fail(where + "shape " + shape.dump() + " overflows the addressable size");
            bytes *= static_cast<std::size_t>(extent);
            e.shape.push_back(static_cast<std::size_t>(extent));
        }

        const auto& offsets = value["data_offsets"];
        if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
            fail(where + "data_offsets is not a pair of non-negative integers");
        const std::uint64_t begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
        const std::size_t data_size = bytes_.size() - data_offset_;
        if (begin > end) fail(where + "data_offsets begin " + std::to_string(begin) + " > end " + std::to_string(end));
        if (end > data_size)
            fail(where + "data_offsets end " + std::to_string(end) + " is past the data section of " + std::to_string(data_size) +
                 " bytes");
        if (end - begin != bytes)
            fail(where + "shape " + shape.dump() + " of " + std::string(dtype_name(e.type)) + " needs " + std::to_string(bytes) +
                 " bytes but data_offsets span " + std::to_string(end - begin));
        e.begin = static_cast<std::size_t>(begin);
        e.end = static_cast<std::size_t>(end);
        return e;
    }

    // The tensors must tile the data section exactly: sorted by offset, no overlap, no gap.
    void check_layout()
    {
        std::stable_sort(entries_.begin(), entries_.end(),
                         [](const auto& a, const auto& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
        std::size_t expected = 0;
        for (const auto& e : entries_) {
            if (e.begin < expected)
                fail("tensor '" + e.name + "' data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                     ") overlap the previous tensor ending at " + std::to_string(expected));
            if (e.begin > expected)
                fail("gap in the data section before tensor '" + e.name + "' (bytes " + std::to_string(expected) + " to " +
                     std::to_string(e.begin) + " belong to no tensor)");
            expected = e.end;
        }
        if (expected != bytes_.size() - data_offset_)
            fail("data section has " + std::to_string(bytes_.size() - data_offset_ - expected) +
                 " trailing bytes that belong to no tensor");
    }

    std::string source_;
    std::vector<std::byte> bytes_;
    std::size_t data_offset_ = 0;
    std::vector<safetensors_entry> entries_;
    std::map<std::string, std::size_t> index_;
    std::map<std::string, std::string> metadata_;
};

/// Collects tensors and writes them as one safetensors file, atomically.
class safetensors_writer {
public:
    /// Adds a floating-point tensor stored as `storage` (F64, F32, F16 or BF16; rounding to nearest even).
    template <scalar T>
    void add(const std::string& name, const tensor<T>& t, dtype storage = dtype_of<T>())
    {
        if (!is_float_dtype(storage))
            throw error("safetensors_writer: tensor '" + name + "': cannot store a floating-point tensor as " +
                        std::string(dtype_name(storage)));
        std::vector<std::byte> bytes(t.size() * dtype_size(storage));
        for (std::size_t i = 0; i < t.size(); ++i) store_float_element(bytes.data(), storage, i, t[i]);
        add_raw(name, storage, t.shape(), std::move(bytes));
    }

    /// Adds an integer tensor stored as `storage` (any integer dtype or BOOL); values must fit.
    void add(const std::string& name, const tensor<std::int64_t>& t, dtype storage = dtype::i64)
    {
        if (!is_integer_dtype(storage))
            throw error("safetensors_writer: tensor '" + name + "': cannot store an integer tensor as " +
                        std::string(dtype_name(storage)));
        std::vector<std::byte> bytes(t.size() * dtype_size(storage));
        for (std::size_t i = 0; i < t.size(); ++i)
            if (!store_integer_element(bytes.data(), storage, i, t[i]))
                throw error("safetensors_writer: tensor '" + name + "': value " + std::to_string(t[i]) + " does not fit " +
                            std::string(dtype_name(storage)));
        add_raw(name, storage, t.shape(), std::move(bytes));
    }

    /// Adds already-encoded little-endian bytes.
    void add_raw(const std::string& name, dtype type, shape_t shape, std::vector<std::byte> bytes)
    {
        if (name.empty() || name == "__metadata__") throw error("safetensors_writer: invalid tensor name '" + name + "'");
        if (bytes.size() != element_count(shape) * dtype_size(type))
            throw shape_error("safetensors_writer: tensor '" + name + "': " + std::to_string(bytes.size()) +
                              " bytes do not match shape " + to_string(shape));
        if (!tensors_.emplace(name, pending{type, std::move(shape), std::move(bytes)}).second)
            throw error("safetensors_writer: duplicate tensor name '" + name + "'");
    }

    /// Sets a `__metadata__` entry.
    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

    /// The complete file as bytes: header padded with spaces to a multiple of 8, tensors in name order.
    std::vector<std::byte> serialize() const
    {
        nlohmann::json header = nlohmann::json::object();
        if (!metadata_.empty()) header["__metadata__"] = metadata_;
        std::size_t offset = 0;
        for (const auto& [name, t] : tensors_) {
            header[name] = {
                {"dtype", dtype_name(t.type)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
            offset += t.bytes.size();
        }
        std::string text = header.dump();
        text.append((8 - text.size() % 8) % 8, ' ');
        std::vector<std::byte> out(8 + text.size() + offset);
        const std::uint64_t header_size = text.size();
        std::memcpy(out.data(), &header_size, 8);
        std::memcpy(out.data() + 8, text.data(), text.size());
        std::byte* data = out.data() + 8 + text.size();
        for (const auto& [name, t] : tensors_) {
            if (!t.bytes.empty()) std::memcpy(data, t.bytes.data(), t.bytes.size());
            data += t.bytes.size();
        }
        return out;
    }

    /// Writes the file atomically (temporary file, fsync, rename).
    void write(const std::filesystem::path& path) const { write_file_atomically(path, serialize()); }

private:
    struct pending {
        dtype type;
        shape_t shape;
        std::vector<std::byte> bytes;
    };
    std::map<std::string, pending> tensors_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace dm2s2
