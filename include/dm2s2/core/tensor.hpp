#pragma once
/// \file
/// `tensor<T>`: an owning, contiguous, row-major n-dimensional array with 64-byte aligned storage.
/// Kernels take raw pointers and leading dimensions, so any contiguous buffer can be used with them;
/// the tensor is the container the modules keep their parameters and activations in.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <new>
#include <numeric>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// Allocator returning 64-byte aligned memory (one cache line, one AVX-512 register).
template <class T>
struct aligned_allocator {
    using value_type = T;
    static constexpr std::align_val_t alignment{64};

    aligned_allocator() noexcept = default;
    template <class U>
    aligned_allocator(const aligned_allocator<U>&) noexcept
    {
    }

    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, alignment); }

    /// Elements made without a value are default-initialised: numbers are left unset, so a buffer that
    /// a kernel overwrites in full is not zeroed first. `tensor` asks for zeros explicitly.
    template <class U>
    void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>)
    {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args)
    {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }

    template <class U>
    bool operator==(const aligned_allocator<U>&) const noexcept
    {
        return true;
    }
};

/// A contiguous vector with 64-byte aligned storage.
template <class T>
using aligned_vector = std::vector<T, aligned_allocator<T>>;

/// A tensor shape: sizes of each dimension, outermost first.
using shape_t = std::vector<std::size_t>;

/// Human-readable shape, e.g. "[3, 16, 64]".
inline std::string to_string(const shape_t& shape)
{
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

/// Number of elements of a shape (1 for a scalar shape).
inline std::size_t element_count(const shape_t& shape)
{
    return std::accumulate(shape.begin(), shape.end(), std::size_t{1}, std::multiplies<>{});
}

/// Tag asking for a tensor whose elements are left unset: for outputs that a kernel overwrites in full
/// (a product with beta = 0, a copy), where zeroing first would only cost time.
struct uninitialized_t {
    explicit uninitialized_t() = default;
};
inline constexpr uninitialized_t uninitialized{};

namespace detail {

/// Marks freshly made unset elements. Where DM2S2_POISON_UNSET is defined (the tests define it),
/// floating-point ones start as quiet NaN, so code that reads an element before writing it yields NaN
/// in its results instead of quietly reading the zeros of fresh pages; otherwise it does nothing.
template <class T>
void poison_unset([[maybe_unused]] T* first, [[maybe_unused]] T* last) noexcept
{
#if defined(DM2S2_POISON_UNSET)
    if constexpr (std::is_floating_point_v<T>) std::fill(first, last, std::numeric_limits<T>::quiet_NaN());
#endif
}

}  // namespace detail

/// Owning, contiguous, row-major tensor.
template <class T>
class tensor {
public:
    using value_type = T;

    tensor() = default;
    /// A tensor of the given shape, every element set to `fill`.
    explicit tensor(shape_t shape, T fill = T{}) : shape_(std::move(shape)), data_(element_count(shape_), fill) {}
    tensor(std::initializer_list<std::size_t> shape, T fill = T{}) : tensor(shape_t(shape), fill) {}
    /// A tensor of the given shape whose elements are unset: every one must be written before it is read.
    tensor(shape_t shape, uninitialized_t) : shape_(std::move(shape)), data_(element_count(shape_))
    {
        detail::poison_unset(data_.data(), data_.data() + data_.size());
    }
    tensor(std::initializer_list<std::size_t> shape, uninitialized_t) : tensor(shape_t(shape), uninitialized) {}

    const shape_t& shape() const noexcept { return shape_; }
    std::size_t rank() const noexcept { return shape_.size(); }
    std::size_t dim(std::size_t i) const { return shape_.at(i); }
    std::size_t size() const noexcept { return data_.size(); }
    bool empty() const noexcept { return data_.empty(); }

    T* data() noexcept { return data_.data(); }
    const T* data() const noexcept { return data_.data(); }
    std::span<T> values() noexcept { return {data_.data(), data_.size()}; }
    std::span<const T> values() const noexcept { return {data_.data(), data_.size()}; }

    T& operator[](std::size_t i) noexcept { return data_[i]; }
    const T& operator[](std::size_t i) const noexcept { return data_[i]; }

    /// Element (i, j) of a rank-2 tensor.
    T& operator()(std::size_t i, std::size_t j) noexcept { return data_[i * shape_[1] + j]; }
    const T& operator()(std::size_t i, std::size_t j) const noexcept { return data_[i * shape_[1] + j]; }

    /// Pointer to row i of the tensor seen as [dim(0), size / dim(0)].
    T* row(std::size_t i) noexcept { return data_.data() + i * (data_.size() / shape_[0]); }
    const T* row(std::size_t i) const noexcept { return data_.data() + i * (data_.size() / shape_[0]); }

    void fill(T value) { std::fill(data_.begin(), data_.end(), value); }

    /// Changes the shape, keeping the contents when the element count is unchanged; new elements are zero.
    void resize(shape_t shape)
    {
        data_.resize(element_count(shape), T{});
        shape_ = std::move(shape);
    }

    /// Changes the shape; new elements are unset: every one must be written before it is read.
    void resize(shape_t shape, uninitialized_t)
    {
        const std::size_t kept = data_.size();
        data_.resize(element_count(shape));
        if (data_.size() > kept) detail::poison_unset(data_.data() + kept, data_.data() + data_.size());
        shape_ = std::move(shape);
    }

    /// Same elements, new shape with the same element count.
    void reshape(shape_t shape)
    {
        if (element_count(shape) != data_.size())
            throw shape_error("cannot reshape " + to_string(shape_) + " to " + to_string(shape));
        shape_ = std::move(shape);
    }

private:
    shape_t shape_;
    aligned_vector<T> data_;
};

/// Throws shape_error naming `what` unless `t` has exactly `expected` shape.
template <class T>
void require_shape(const tensor<T>& t, const shape_t& expected, const std::string& what)
{
    if (t.shape() != expected)
        throw shape_error(what + ": expected shape " + to_string(expected) + ", got " + to_string(t.shape()));
}

}  // namespace dm2s2
