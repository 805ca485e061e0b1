#pragma once
/// \file
/// Eigen interop: host tensors, logits, the attention explanation (α, β, γ) and attributions as
/// `Eigen::Map`s over the library's own memory (no copy), and dense modality rows and targets from any
/// Eigen matrix or expression.
///
/// Maps are row-major, as every tensor is. A map lives as long as the tensor or explanation it views
/// and must not outlive it. Records and tensors own their values, so building them from an Eigen
/// expression copies it once, straight into their storage, in whatever storage order the expression
/// has; to fill a tensor without that copy, make it first and write through `as_eigen(t)`.

#include <Eigen/Core>

#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dm2s2/core/error.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/explain/attribution.hpp"
#include "dm2s2/interop/detail.hpp"
#include "dm2s2/model/dm2s2_model.hpp"

namespace dm2s2 {

/// A dynamic row-major Eigen matrix of `T`: the layout of every dm2s2 tensor.
template <class T>
using eigen_row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A dynamic Eigen column vector of `T`.
template <class T>
using eigen_vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

namespace interop_detail {

// Rows and columns of a tensor viewed as a matrix: [n] → n × 1, [r, c] → r × c; other ranks throw.
template <class T>
std::pair<Eigen::Index, Eigen::Index> matrix_extent(const tensor<T>& t, const char* what)
{
    if (t.rank() == 1) return {Eigen::Index(t.dim(0)), 1};
    if (t.rank() == 2) return {Eigen::Index(t.dim(0)), Eigen::Index(t.dim(1))};
    throw shape_error(std::string(what) + ": an Eigen matrix views a tensor of rank 1 or 2, not shape " + to_string(t.shape()));
}

}  // namespace interop_detail

/// A host tensor of rank 1 ([n] → n × 1) or rank 2 ([r, c] → r × c) as a writable Eigen map of its
/// elements. Throws `shape_error` for any other rank.
template <class T>
Eigen::Map<eigen_row_matrix<T>> as_eigen(tensor<T>& t)
{
    const auto [rows, cols] = interop_detail::matrix_extent(t, "as_eigen");
    return {t.data(), rows, cols};
}

/// A host tensor of rank 1 or 2 as a read-only Eigen map of its elements.
template <class T>
Eigen::Map<const eigen_row_matrix<T>> as_eigen(const tensor<T>& t)
{
    const auto [rows, cols] = interop_detail::matrix_extent(t, "as_eigen");
    return {t.data(), rows, cols};
}

/// A span (one modality's α or γ, an attribution's element scores) as a read-only Eigen vector map.
template <class T>
Eigen::Map<const eigen_vector<T>> as_eigen(std::span<const T> values)
{
    return {values.data(), Eigen::Index(values.size())};
}

/// The logits of a forward pass, [records, outputs].
template <class T>
Eigen::Map<const eigen_row_matrix<T>> logits_matrix(const model_output<T>& out)
{
    return as_eigen(out.logits);
}

/// α of every packed slot, [records, packed length]: zero off the elements (docs/design.md §5).
template <class T>
Eigen::Map<const eigen_row_matrix<T>> alpha_matrix(const attention_explanation<T>& e)
{
    return {e.alpha.data(), Eigen::Index(e.layout.batch), Eigen::Index(e.layout.length)};
}

/// γ = β·α of every packed slot, [records, packed length]; each row sums to 1.
template <class T>
Eigen::Map<const eigen_row_matrix<T>> gamma_matrix(const attention_explanation<T>& e)
{
    return {e.gamma.data(), Eigen::Index(e.layout.batch), Eigen::Index(e.layout.length)};
}

/// β, [records, modalities] in schema order: zero for a missing modality; each row sums to 1.
template <class T>
Eigen::Map<const eigen_row_matrix<T>> beta_matrix(const attention_explanation<T>& e)
{
    return {e.beta.data(), Eigen::Index(e.layout.batch), Eigen::Index(e.modality_count)};
}

/// An attribution's modality scores, [records, modalities] in schema order (0 for a missing modality).
template <class T>
Eigen::Map<const eigen_row_matrix<T>> modality_scores(const attribution<T>& a)
{
    return {a.modalities.data(), Eigen::Index(a.records()), Eigen::Index(a.modality_count)};
}

/// Sets the `dense` modality `m` (index or name) of `record` to the rows of `rows` (elements × dim, any
/// storage order or expression), converted to float. Throws `shape_error` naming the modality when the
/// column count is not the modality's `dim`, and `input_error` for a value that is not finite or a
/// modality that is not dense.
template <class Modality, class Derived>
    requires std::convertible_to<const Modality&, std::size_t> || std::convertible_to<const Modality&, std::string_view>
sequence_set& set_dense(sequence_set& record, const Modality& m, const Eigen::MatrixBase<Derived>& rows)
{
    const std::size_t index = interop_detail::modality_index(record.schema(), m);
    const auto& spec = record.schema()[index];
    if (spec.kind == modality_kind::dense && std::size_t(rows.cols()) != spec.dim)
        throw shape_error("modality '" + spec.name + "': an Eigen matrix of " + std::to_string(rows.cols()) +
                          " columns for dense rows of dim " + std::to_string(spec.dim));
    std::vector<float> values(std::size_t(rows.rows()) * std::size_t(rows.cols()));
    Eigen::Map<eigen_row_matrix<float>>(values.data(), rows.rows(), rows.cols()) = rows.template cast<float>();
    return record.set_dense(index, std::move(values));
}

/// A host tensor holding `values`: rank 1 ([n]) for a compile-time column vector, such as a
/// multiclass task's class indices, and rank 2 ([rows, cols]) otherwise, such as a multilabel task's
/// 0/1 targets. Any storage order or expression; converted to `T`.
template <scalar T, class Derived>
tensor<T> tensor_from(const Eigen::MatrixBase<Derived>& values)
{
    const bool vector = Derived::ColsAtCompileTime == 1;
    tensor<T> out(vector ? shape_t{std::size_t(values.rows())} : shape_t{std::size_t(values.rows()), std::size_t(values.cols())},
                  uninitialized);
    Eigen::Map<eigen_row_matrix<T>>(out.data(), values.rows(), values.cols()) = values.template cast<T>();
    return out;
}

}  // namespace dm2s2
