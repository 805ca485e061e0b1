#pragma once
/// \file
/// `encoded_records`: many records of one schema stored column-wise (every id of every record in one
/// array, every dense value in a second, every number in a third, and one offset per record and
/// modality), and `record_view`, one of its records as packing reads a `sequence_set`. A training set of
/// millions of records costs its values and 8 bytes per record and modality, instead of a `sequence_set`
/// (three vectors and their heap blocks per modality) per record.

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <ranges>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dm2s2/data/schema.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/data/sequence_set_concept.hpp"

namespace dm2s2 {

class encoded_records;

/// One record of an `encoded_records`, read in place: the spans point into the store, which must outlive
/// the view and not grow while it is used.
class record_view {
public:
    record_view(const encoded_records& store, std::size_t index) noexcept : store_(&store), index_(index) {}

    /// The schema of the store.
    const dm2s2::schema& schema() const noexcept;
    /// Which record of the store this is.
    std::size_t index() const noexcept { return index_; }

    std::size_t modality_count() const noexcept;
    std::size_t length(std::size_t m) const;
    bool present(std::size_t m) const { return length(m) > 0; }
    std::span<const std::int64_t> ids(std::size_t m) const;
    std::span<const float> dense(std::size_t m) const;
    std::span<const double> numbers(std::size_t m) const;

private:
    const encoded_records* store_;
    std::size_t index_;
};

static_assert(sequence_set_like<record_view>);

/// Records of one schema, column-wise. Appending copies a record's values (checked against the schema:
/// modality count, dense rows × dim, no fewer ids or numbers than the length); `operator[]` and the
/// iterators give `record_view`s, which `pack`, `model::forward` and `packed_length` take as they take
/// `sequence_set`s.
class encoded_records {
public:
    /// A random-access iterator over the records, giving `record_view`s by value.
    class iterator {
    public:
        using iterator_concept = std::random_access_iterator_tag;
        using iterator_category = std::input_iterator_tag;
        using value_type = record_view;
        using difference_type = std::ptrdiff_t;
        using reference = record_view;

        iterator() = default;
        iterator(const encoded_records* store, std::size_t index) noexcept : store_(store), index_(index) {}

        record_view operator*() const noexcept { return {*store_, index_}; }
        record_view operator[](difference_type n) const noexcept { return {*store_, index_ + static_cast<std::size_t>(n)}; }
        iterator& operator++() noexcept { return ++index_, *this; }
        iterator operator++(int) noexcept { return {store_, index_++}; }
        iterator& operator--() noexcept { return --index_, *this; }
        iterator operator--(int) noexcept { return {store_, index_--}; }
        iterator& operator+=(difference_type n) noexcept { return index_ += static_cast<std::size_t>(n), *this; }
        iterator& operator-=(difference_type n) noexcept { return index_ -= static_cast<std::size_t>(n), *this; }
        friend iterator operator+(iterator i, difference_type n) noexcept { return i += n; }
        friend iterator operator+(difference_type n, iterator i) noexcept { return i += n; }
        friend iterator operator-(iterator i, difference_type n) noexcept { return i -= n; }
        friend difference_type operator-(const iterator& a, const iterator& b) noexcept
        {
            return static_cast<difference_type>(a.index_) - static_cast<difference_type>(b.index_);
        }
        friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.index_ == b.index_; }
        friend std::strong_ordering operator<=>(const iterator& a, const iterator& b) noexcept { return a.index_ <=> b.index_; }

    private:
        const encoded_records* store_ = nullptr;
        std::size_t index_ = 0;
    };

    /// No records and no schema: the first `sequence_set` appended gives the schema.
    encoded_records() = default;

    /// No records, of schema `s`.
    explicit encoded_records(dm2s2::schema s) { set_schema(std::move(s)); }

    /// A copy of `records`, which must share one schema (that of the first).
    encoded_records(const std::vector<sequence_set>& records)  // implicit: `dataset{records, targets}` converts
    {
        if (!records.empty()) set_schema(records.front().schema());
        reserve(records.size());
        for (const auto& r : records) push_back(r);
    }

    /// A copy of `records`, of schema `s`.
    template <std::ranges::input_range Range>
        requires sequence_set_like<std::ranges::range_value_t<Range>>
    encoded_records(dm2s2::schema s, const Range& records)
    {
        set_schema(std::move(s));
        for (const auto& r : records) push_back(r);
    }

    const dm2s2::schema& schema() const noexcept { return schema_; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }

    record_view operator[](std::size_t i) const noexcept { return {*this, i}; }
    /// Record i; throws input_error when there is no such record.
    record_view at(std::size_t i) const
    {
        if (i >= size_)
            throw input_error("record " + std::to_string(i) + " of " + std::to_string(size_) + " encoded records does not exist");
        return {*this, i};
    }
    record_view front() const { return at(0); }
    record_view back() const { return at(size_ == 0 ? 0 : size_ - 1); }
    iterator begin() const noexcept { return {this, 0}; }
    iterator end() const noexcept { return {this, size_}; }

    /// Room for `records` more records' offsets.
    void reserve(std::size_t records)
    {
        for (std::size_t k = 0; k < kinds; ++k) offsets_[k].reserve(offsets_[k].size() + records * columns_[k]);
    }

    /// Appends a copy of `record`, which must have the store's schema (an empty store without a schema
    /// takes it).
    void push_back(const sequence_set& record)
    {
        if (size_ == 0 && schema_.size() == 0) set_schema(record.schema());
        if (!(record.schema() == schema_))
            throw shape_error("record " + std::to_string(size_) + ": its schema is not that of the records before it");
        append(record);
    }

    /// Appends a copy of `record`, read with the store's schema.
    template <sequence_set_like Record>
    void push_back(const Record& record)
    {
        append(record);
    }

    /// Record i as a `sequence_set` of its own.
    sequence_set to_sequence_set(std::size_t i) const
    {
        const record_view r = at(i);
        sequence_set out(schema_);
        for (std::size_t m = 0; m < schema_.size(); ++m) {
            if (!r.present(m)) continue;
            switch (schema_[m].kind) {
            case modality_kind::text:
            case modality_kind::tokens: out.set_tokens(m, {r.ids(m).begin(), r.ids(m).end()}); break;
            case modality_kind::categorical: out.set_categorical(m, {r.ids(m).begin(), r.ids(m).end()}); break;
            case modality_kind::dense: out.set_dense(m, {r.dense(m).begin(), r.dense(m).end()}); break;
            case modality_kind::numeric: out.set_numeric(m, {r.numbers(m).begin(), r.numbers(m).end()}); break;
            }
        }
        return out;
    }

    /// Bytes the store has allocated for values and offsets.
    std::size_t allocated_bytes() const noexcept
    {
        std::size_t bytes =
            ids_.capacity() * sizeof(std::int64_t) + dense_.capacity() * sizeof(float) + numbers_.capacity() * sizeof(double);
        for (const auto& o : offsets_) bytes += o.capacity() * sizeof(std::uint64_t);
        return bytes + column_of_.capacity() * sizeof(std::size_t);
    }

private:
    friend class record_view;

    /// The three columns: ids (text, tokens, categorical), dense values, numbers.
    enum column_kind : std::size_t { id_column = 0, dense_column = 1, number_column = 2 };
    static constexpr std::size_t kinds = 3;

    static column_kind kind_of(modality_kind k) noexcept
    {
        return k == modality_kind::dense ? dense_column : k == modality_kind::numeric ? number_column : id_column;
    }

    void set_schema(dm2s2::schema s)
    {
        schema_ = std::move(s);
        columns_ = {};
        column_of_.assign(schema_.size(), 0);
        for (std::size_t m = 0; m < schema_.size(); ++m) column_of_[m] = columns_[kind_of(schema_[m].kind)]++;
        for (auto& o : offsets_) o.assign(1, 0);
    }

    template <sequence_set_like Record>
    void append(const Record& record)
    {
        const std::size_t modalities = schema_.size();
        const std::string where = "record " + std::to_string(size_) + ": ";
        if (record.modality_count() != modalities)
            throw shape_error(where + "has " + std::to_string(record.modality_count()) + " modalities, the schema " +
                              std::to_string(modalities));
        const std::array<std::size_t, kinds> sizes{ids_.size(), dense_.size(), numbers_.size()};
        try {
            for (std::size_t m = 0; m < modalities; ++m) {
                const auto& spec = schema_[m];
                const std::size_t n = record.length(m);
                // The first n values of an id or number span, which must hold that many, onto its column.
                const auto take_length = [&](auto& values, column_kind kind, const auto& v, const char* what) {
                    if (v.size() < n)
                        throw shape_error(where + "modality '" + spec.name + "': " + std::to_string(v.size()) + " " + what +
                                          " for a length of " + std::to_string(n));
                    values.insert(values.end(), v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n));
                    offsets_[kind].push_back(values.size());
                };
                switch (kind_of(spec.kind)) {
                case id_column: take_length(ids_, id_column, record.ids(m), "ids"); break;
                case dense_column: {
                    const auto v = record.dense(m);
                    if (v.size() != n * spec.dim)
                        throw shape_error(where + "modality '" + spec.name + "': " + std::to_string(v.size()) + " values for " +
                                          std::to_string(n) + " rows of dim " + std::to_string(spec.dim));
                    dense_.insert(dense_.end(), v.begin(), v.end());
                    offsets_[dense_column].push_back(dense_.size());
                    break;
                }
                case number_column: take_length(numbers_, number_column, record.numbers(m), "numbers"); break;
                }
            }
        } catch (...) {  // nothing of a refused record stays
            ids_.resize(sizes[id_column]);
            dense_.resize(sizes[dense_column]);
            numbers_.resize(sizes[number_column]);
            for (std::size_t k = 0; k < kinds; ++k) offsets_[k].resize(size_ * columns_[k] + 1);
            throw;
        }
        ++size_;
    }

    /// [begin, end) of record i's modality m in its column.
    std::pair<std::size_t, std::size_t> extent(std::size_t i, std::size_t m) const
    {
        if (m >= schema_.size())
            throw input_error("modality index " + std::to_string(m) + " is outside the schema of " +
                              std::to_string(schema_.size()) + " modalities");
        const auto k = kind_of(schema_[m].kind);
        const std::size_t at = i * columns_[k] + column_of_[m];
        return {offsets_[k][at], offsets_[k][at + 1]};
    }

    dm2s2::schema schema_;
    std::array<std::size_t, kinds> columns_{};  // modalities per column
    std::vector<std::size_t> column_of_;        // modality → its place among its column's modalities
    std::array<std::vector<std::uint64_t>, kinds> offsets_{std::vector<std::uint64_t>{0}, std::vector<std::uint64_t>{0},
                                                           std::vector<std::uint64_t>{0}};
    std::vector<std::int64_t> ids_;
    std::vector<float> dense_;
    std::vector<double> numbers_;
    std::size_t size_ = 0;
};

inline const dm2s2::schema& record_view::schema() const noexcept
{
    return store_->schema_;
}

inline std::size_t record_view::modality_count() const noexcept
{
    return store_->schema_.size();
}

inline std::size_t record_view::length(std::size_t m) const
{
    const auto [begin, end] = store_->extent(index_, m);
    const auto& spec = store_->schema_[m];
    return spec.kind == modality_kind::dense ? (spec.dim == 0 ? 0 : (end - begin) / spec.dim) : end - begin;
}

inline std::span<const std::int64_t> record_view::ids(std::size_t m) const
{
    const auto [begin, end] = store_->extent(index_, m);
    if (encoded_records::kind_of(store_->schema_[m].kind) != encoded_records::id_column) return {};
    return {store_->ids_.data() + begin, end - begin};
}

inline std::span<const float> record_view::dense(std::size_t m) const
{
    const auto [begin, end] = store_->extent(index_, m);
    if (encoded_records::kind_of(store_->schema_[m].kind) != encoded_records::dense_column) return {};
    return {store_->dense_.data() + begin, end - begin};
}

inline std::span<const double> record_view::numbers(std::size_t m) const
{
    const auto [begin, end] = store_->extent(index_, m);
    if (encoded_records::kind_of(store_->schema_[m].kind) != encoded_records::number_column) return {};
    return {store_->numbers_.data() + begin, end - begin};
}

static_assert(std::random_access_iterator<encoded_records::iterator>);
static_assert(std::ranges::random_access_range<encoded_records>);

}  // namespace dm2s2
