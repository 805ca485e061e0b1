#pragma once
/// \file
/// xtensor interop (CMake target `dm2s2::xtensor`; xtensor 0.24 to 0.27): host tensors, logits, the
/// attention explanation (α, β, γ) and attributions as `xt::adapt` adaptors over the library's own
/// memory (no copy), and dense modality rows and targets from any xtensor expression.
///
/// Adaptors are row-major, as every tensor is, and live as long as what they view. Records and
/// tensors own their values, so building them from an expression evaluates it once, straight into
/// their storage (a contiguous row-major array of the right type is copied as one block); to fill a
/// tensor without that copy, make it first and assign through `as_xtensor(t)`.

// xtensor 0.26 moved its headers into subdirectories (containers/, core/).
#if __has_include(<xtensor/containers/xadapt.hpp>)
#include <xtensor/containers/xadapt.hpp>
#include <xtensor/core/xexpression.hpp>
#include <xtensor/core/xlayout.hpp>
#else
#include <xtensor/xadapt.hpp>
#include <xtensor/xexpression.hpp>
#include <xtensor/xlayout.hpp>
#endif

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dm2s2/core/error.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/explain/attribution.hpp"
#include "dm2s2/interop/detail.hpp"
#include "dm2s2/model/dm2s2_model.hpp"

namespace dm2s2 {

namespace interop_detail {

template <class E>
std::string shape_string(const E& e)
{
    shape_t shape(e.shape().begin(), e.shape().end());
    return to_string(shape);
}

// Writes the elements of `e` in row-major order to `out` (e.size() values of type T): one block copy
// when `e` is a contiguous row-major container of T, otherwise an evaluation of the expression.
template <class T, class E>
void copy_row_major(const E& e, T* out)
{
    using value = std::remove_cv_t<typename E::value_type>;
    if constexpr (std::is_same_v<value, T> && requires {
                      e.data();
                      e.data_offset();
                      e.layout();
                      e.is_contiguous();
                  }) {
        if (e.layout() == xt::layout_type::row_major && e.is_contiguous()) {
            std::copy_n(e.data() + e.data_offset(), e.size(), out);
            return;
        }
    }
    shape_t shape(e.shape().begin(), e.shape().end());
    auto target = xt::adapt(out, e.size(), xt::no_ownership(), shape);
    target = e;
}

}  // namespace interop_detail

/// A host tensor as a writable xtensor adaptor of its elements, with the tensor's shape.
template <class T>
auto as_xtensor(tensor<T>& t)
{
    return xt::adapt(t.data(), t.size(), xt::no_ownership(), t.shape());
}

/// A host tensor as a read-only xtensor adaptor of its elements, with the tensor's shape.
template <class T>
auto as_xtensor(const tensor<T>& t)
{
    return xt::adapt(t.data(), t.size(), xt::no_ownership(), t.shape());
}

/// The logits of a forward pass, [records, outputs].
template <class T>
auto logits_array(const model_output<T>& out)
{
    return as_xtensor(out.logits);
}

/// α of every packed slot, [records, packed length]: zero off the elements (docs/design.md §5).
template <class T>
auto alpha_array(const attention_explanation<T>& e)
{
    return xt::adapt(e.alpha.data(), e.alpha.size(), xt::no_ownership(), shape_t{e.layout.batch, e.layout.length});
}

/// γ = β·α of every packed slot, [records, packed length]; each row sums to 1.
template <class T>
auto gamma_array(const attention_explanation<T>& e)
{
    return xt::adapt(e.gamma.data(), e.gamma.size(), xt::no_ownership(), shape_t{e.layout.batch, e.layout.length});
}

/// β, [records, modalities] in schema order: zero for a missing modality; each row sums to 1.
template <class T>
auto beta_array(const attention_explanation<T>& e)
{
    return xt::adapt(e.beta.data(), e.beta.size(), xt::no_ownership(), shape_t{e.layout.batch, e.modality_count});
}

/// An attribution's modality scores, [records, modalities] in schema order (0 for a missing modality).
template <class T>
auto modality_scores_array(const attribution<T>& a)
{
    return xt::adapt(a.modalities.data(), a.modalities.size(), xt::no_ownership(), shape_t{a.records(), a.modality_count});
}

/// One modality's α, γ or element scores (a span from `alpha_of`, `gamma_of`, `elements_of`) as a
/// one-dimensional adaptor.
template <class T>
auto as_xtensor(std::span<const T> values)
{
    return xt::adapt(values.data(), values.size(), xt::no_ownership(), shape_t{values.size()});
}

/// Sets the `dense` modality `m` (index or name) of `record` to the rows of the two-dimensional
/// expression `rows` (elements × dim), converted to float. Throws `shape_error` naming the modality
/// for another rank or a column count other than the modality's `dim`, and `input_error` for a value
/// that is not finite or a modality that is not dense.
template <class Modality, class E>
    requires std::convertible_to<const Modality&, std::size_t> || std::convertible_to<const Modality&, std::string_view>
sequence_set& set_dense(sequence_set& record, const Modality& m, const xt::xexpression<E>& rows)
{
    const E& e = rows.derived_cast();
    const std::size_t index = interop_detail::modality_index(record.schema(), m);
    const auto& spec = record.schema()[index];
    if (e.dimension() != 2 || (spec.kind == modality_kind::dense && e.shape()[1] != spec.dim))
        throw shape_error("modality '" + spec.name + "': an xtensor expression of shape " + interop_detail::shape_string(e) +
                          " for dense rows of dim " + std::to_string(spec.dim) + " (expected [elements, " +
                          std::to_string(spec.dim) + "])");
    std::vector<float> values(e.size());
    interop_detail::copy_row_major(e, values.data());
    return record.set_dense(index, std::move(values));
}

/// A host tensor of the expression's shape holding its values converted to `T`: class indices [n] of
/// a multiclass task, [n, outputs] targets of the others, or any other tensor.
template <scalar T, class E>
tensor<T> tensor_from(const xt::xexpression<E>& values)
{
    const E& e = values.derived_cast();
    tensor<T> out(shape_t(e.shape().begin(), e.shape().end()), uninitialized);
    interop_detail::copy_row_major(e, out.data());
    return out;
}

}  // namespace dm2s2
