#pragma once
/// \file
/// `category_table`: the per-modality table of categorical values learned from training data.
/// Row 0 is the unknown value; values seen in training get rows 1.. in order of first appearance.

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// Maps categorical strings to embedding rows; unseen strings map to the unknown row 0.
class category_table {
public:
    static constexpr std::int64_t unknown_id = 0;

    /// Adds a value (no-op when known) and returns its id.
    std::int64_t add(const std::string& value)
    {
        const auto [it, inserted] = ids_.emplace(value, static_cast<std::int64_t>(values_.size() + 1));
        if (inserted) values_.push_back(value);
        return it->second;
    }

    /// Id of `value`, or unknown_id.
    std::int64_t id(const std::string& value) const
    {
        const auto it = ids_.find(value);
        return it == ids_.end() ? unknown_id : it->second;
    }

    /// The value of a row ("[UNK]" for row 0).
    const std::string& value(std::int64_t id) const
    {
        static const std::string unknown = "[UNK]";
        if (id == unknown_id) return unknown;
        if (id < 0 || static_cast<std::size_t>(id) > values_.size())
            throw input_error("category id " + std::to_string(id) + " is outside the table of " + std::to_string(rows()) +
                              " rows");
        return values_[static_cast<std::size_t>(id) - 1];
    }

    /// Embedding rows needed: known values plus the unknown row.
    std::size_t rows() const noexcept { return values_.size() + 1; }

    /// Ids of a sequence of values.
    std::vector<std::int64_t> ids_of(const std::vector<std::string>& values) const
    {
        std::vector<std::int64_t> out;
        out.reserve(values.size());
        for (const auto& v : values) out.push_back(id(v));
        return out;
    }

private:
    std::unordered_map<std::string, std::int64_t> ids_;
    std::vector<std::string> values_;
};

}  // namespace dm2s2
