#pragma once
/// \file
/// `sequence_set`: one multimodal record as a set of ragged sequences, one per schema modality, any
/// of which may be missing. Values are checked as they are set (kind, shape, NaN/Inf, negative ids).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dm2s2/data/category_table.hpp"
#include "dm2s2/data/schema.hpp"
#include "dm2s2/data/sequence_set_concept.hpp"

namespace dm2s2 {

/// A multimodal record. Every modality starts missing; an empty sequence also counts as missing.
class sequence_set {
public:
    explicit sequence_set(dm2s2::schema s) : schema_(std::move(s)), data_(schema_.size()) {}

    /// The schema the record follows.
    const dm2s2::schema& schema() const noexcept { return schema_; }

    std::size_t modality_count() const noexcept { return data_.size(); }
    std::size_t length(std::size_t m) const { return data_.at(m).length; }
    bool present(std::size_t m) const { return length(m) > 0; }
    std::span<const std::int64_t> ids(std::size_t m) const { return data_.at(m).ids; }
    std::span<const float> dense(std::size_t m) const { return data_.at(m).dense; }
    std::span<const double> numbers(std::size_t m) const { return data_.at(m).numbers; }

    /// Vocabulary ids of a `tokens` or `text` modality.
    sequence_set& set_tokens(std::size_t m, std::vector<std::int64_t> ids)
    {
        require_kind(m, "token ids", {modality_kind::tokens, modality_kind::text});
        check_non_negative(m, ids);
        reset(m).ids = std::move(ids);
        data_[m].length = data_[m].ids.size();
        return *this;
    }

    /// Category ids of a `categorical` modality (0 = unknown).
    sequence_set& set_categorical(std::size_t m, std::vector<std::int64_t> ids)
    {
        require_kind(m, "category ids", {modality_kind::categorical});
        check_non_negative(m, ids);
        reset(m).ids = std::move(ids);
        data_[m].length = data_[m].ids.size();
        return *this;
    }

    /// Category values of a `categorical` modality, looked up in `table`.
    sequence_set& set_categorical(std::size_t m, const std::vector<std::string>& values, const category_table& table)
    {
        return set_categorical(m, table.ids_of(values));
    }

    /// Rows of a `dense` modality, `values` holding rows × dim floats row-major; NaN/Inf rejected.
    sequence_set& set_dense(std::size_t m, std::vector<float> values)
    {
        require_kind(m, "dense rows", {modality_kind::dense});
        const std::size_t dim = schema_[m].dim;
        if (values.size() % dim != 0)
            throw shape_error(where(m) + std::to_string(values.size()) + " values are not a whole number of rows of dim " +
                              std::to_string(dim));
        for (std::size_t i = 0; i < values.size(); ++i)
            if (!std::isfinite(values[i]))
                throw input_error(where(m) + "row " + std::to_string(i / dim) + " column " + std::to_string(i % dim) +
                                  " is not finite (" + std::to_string(values[i]) + ")");
        reset(m).dense = std::move(values);
        data_[m].length = data_[m].dense.size() / dim;
        return *this;
    }

    /// Values of a `numeric` modality; NaN/Inf rejected.
    sequence_set& set_numeric(std::size_t m, std::vector<double> values)
    {
        require_kind(m, "numbers", {modality_kind::numeric});
        for (std::size_t i = 0; i < values.size(); ++i)
            if (!std::isfinite(values[i]))
                throw input_error(where(m) + "value " + std::to_string(i) + " is not finite (" + std::to_string(values[i]) + ")");
        reset(m).numbers = std::move(values);
        data_[m].length = data_[m].numbers.size();
        return *this;
    }

    /// Values of a `numeric` modality with nulls, which are dropped.
    sequence_set& set_numeric_with_nulls(std::size_t m, const std::vector<std::optional<double>>& values)
    {
        std::vector<double> kept;
        for (const auto& v : values)
            if (v) kept.push_back(*v);
        return set_numeric(m, std::move(kept));
    }

    /// Marks a modality missing.
    sequence_set& clear(std::size_t m)
    {
        reset(m);
        return *this;
    }

    // The same setters addressed by modality name.
    sequence_set& set_tokens(std::string_view name, std::vector<std::int64_t> ids)
    {
        return set_tokens(index(name), std::move(ids));
    }
    sequence_set& set_categorical(std::string_view name, std::vector<std::int64_t> ids)
    {
        return set_categorical(index(name), std::move(ids));
    }
    sequence_set& set_categorical(std::string_view name, const std::vector<std::string>& values, const category_table& table)
    {
        return set_categorical(index(name), values, table);
    }
    sequence_set& set_dense(std::string_view name, std::vector<float> values)
    {
        return set_dense(index(name), std::move(values));
    }
    sequence_set& set_numeric(std::string_view name, std::vector<double> values)
    {
        return set_numeric(index(name), std::move(values));
    }
    sequence_set& set_numeric_with_nulls(std::string_view name, const std::vector<std::optional<double>>& values)
    {
        return set_numeric_with_nulls(index(name), values);
    }
    sequence_set& clear(std::string_view name) { return clear(index(name)); }

private:
    struct modality_data {
        std::size_t length = 0;
        std::vector<std::int64_t> ids;
        std::vector<float> dense;
        std::vector<double> numbers;
    };

    std::size_t index(std::string_view name) const { return schema_.index_of(name); }

    std::string where(std::size_t m) const { return "modality '" + schema_[m].name + "': "; }

    modality_data& reset(std::size_t m)
    {
        data_.at(m) = {};
        return data_[m];
    }

    void require_kind(std::size_t m, const char* what, std::initializer_list<modality_kind> allowed) const
    {
        if (m >= data_.size())
            throw input_error("modality index " + std::to_string(m) + " is outside the schema of " +
                              std::to_string(data_.size()) + " modalities");
        for (auto k : allowed)
            if (schema_[m].kind == k) return;
        throw input_error(where(m) + "is a " + std::string(to_string(schema_[m].kind)) + " modality and cannot take " + what);
    }

    void check_non_negative(std::size_t m, const std::vector<std::int64_t>& ids) const
    {
        for (std::size_t i = 0; i < ids.size(); ++i)
            if (ids[i] < 0)
                throw input_error(where(m) + "id " + std::to_string(ids[i]) + " at element " + std::to_string(i) +
                                  " is negative");
    }

    dm2s2::schema schema_;
    std::vector<modality_data> data_;
};

static_assert(sequence_set_like<sequence_set>);

}  // namespace dm2s2
