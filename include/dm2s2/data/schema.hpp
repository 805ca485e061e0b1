#pragma once
/// \file
/// `schema`: the modalities of a record, in a fixed order, each with its kind and limits (docs/design.md §2).

#include <cctype>
#include <cmath>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// What the elements of a modality are.
enum class modality_kind {
    text,         ///< a string, tokenized into vocabulary ids (the sequence holds the ids)
    tokens,       ///< vocabulary ids
    dense,        ///< rows of `dim` floats (image regions, time series, embeddings)
    categorical,  ///< ids into a per-modality table; id 0 is the unknown value
    numeric       ///< numbers, standardised with the modality's mean and stddev
};

constexpr std::string_view to_string(modality_kind k) noexcept
{
    switch (k) {
    case modality_kind::text: return "text";
    case modality_kind::tokens: return "tokens";
    case modality_kind::dense: return "dense";
    case modality_kind::categorical: return "categorical";
    case modality_kind::numeric: return "numeric";
    }
    return "?";
}

/// Parses "text", "tokens", "dense", "categorical" or "numeric".
inline std::optional<modality_kind> parse_modality_kind(std::string_view s) noexcept
{
    for (auto k :
         {modality_kind::text, modality_kind::tokens, modality_kind::dense, modality_kind::categorical, modality_kind::numeric})
        if (to_string(k) == s) return k;
    return std::nullopt;
}

/// True when the modality's elements are vocabulary ids.
constexpr bool uses_vocabulary(modality_kind k) noexcept
{
    return k == modality_kind::text || k == modality_kind::tokens;
}

/// One modality of a schema.
struct modality_spec {
    std::string name;  ///< letters, digits, '_' and '-'; used in parameter names
    modality_kind kind = modality_kind::tokens;
    std::size_t max_length = 64;  ///< longer sequences are truncated to their first max_length elements
    std::size_t dim = 0;          ///< dense: feature dimension
    std::size_t categories = 0;   ///< categorical: table rows, including the unknown row 0
    double mean = 0.0;            ///< numeric: training-split mean
    double stddev = 1.0;          ///< numeric: training-split standard deviation
};

/// The ordered modalities of a record. Copies share one immutable list, so samples can hold their
/// schema cheaply.
class schema {
public:
    schema() : modalities_(std::make_shared<const std::vector<modality_spec>>()) {}

    /// Validates and stores the modalities; throws config_error naming the offending modality.
    explicit schema(std::vector<modality_spec> modalities)
    {
        for (std::size_t m = 0; m < modalities.size(); ++m) validate(modalities, m);
        modalities_ = std::make_shared<const std::vector<modality_spec>>(std::move(modalities));
    }

    std::size_t size() const noexcept { return modalities_->size(); }
    const modality_spec& operator[](std::size_t m) const { return modalities_->at(m); }
    const std::vector<modality_spec>& modalities() const noexcept { return *modalities_; }

    /// Index of the modality called `name`; throws input_error when there is none.
    std::size_t index_of(std::string_view name) const
    {
        for (std::size_t m = 0; m < size(); ++m)
            if ((*modalities_)[m].name == name) return m;
        throw input_error("schema has no modality named '" + std::string(name) + "'");
    }

    bool operator==(const schema& other) const
    {
        if (modalities_ == other.modalities_) return true;  // copies of one schema
        if (size() != other.size()) return false;
        for (std::size_t m = 0; m < size(); ++m) {
            const auto &a = (*this)[m], &b = other[m];
            if (a.name != b.name || a.kind != b.kind || a.max_length != b.max_length || a.dim != b.dim ||
                a.categories != b.categories || a.mean != b.mean || a.stddev != b.stddev)
                return false;
        }
        return true;
    }

private:
    static void validate(const std::vector<modality_spec>& all, std::size_t m)
    {
        const auto& spec = all[m];
        const std::string where = "schema: modality " + std::to_string(m) + " '" + spec.name + "': ";
        if (spec.name.empty()) throw config_error(where + "name is empty");
        for (char c : spec.name)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
                throw config_error(where + "name may hold only letters, digits, '_' and '-'");
        for (std::size_t other = 0; other < m; ++other)
            if (all[other].name == spec.name) throw config_error(where + "duplicate name");
        if (spec.max_length == 0) throw config_error(where + "max_length must be positive");
        if (spec.kind == modality_kind::dense && spec.dim == 0) throw config_error(where + "dense modality needs dim > 0");
        if (spec.kind == modality_kind::categorical && spec.categories == 0)
            throw config_error(where + "categorical modality needs categories > 0 (the unknown row included)");
        if (spec.kind == modality_kind::numeric && !(spec.stddev > 0 && std::isfinite(spec.stddev) && std::isfinite(spec.mean)))
            throw config_error(where + "numeric modality needs a finite mean and a positive, finite stddev");
    }

    std::shared_ptr<const std::vector<modality_spec>> modalities_;
};

}  // namespace dm2s2
