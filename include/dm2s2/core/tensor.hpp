#pragma once
/// \file
/// `tensor<T, Space>`: an owning, contiguous, row-major n-dimensional array in a memory space
/// (`host_space` unless named). Kernels take pointers and leading dimensions, so any contiguous
/// buffer can be used with them; the tensor is the container the modules keep their parameters and
/// activations in. Element access exists only for host tensors; a tensor in another space hands out
/// `device_ptr`s, and its elements reach the host only through its backend's `download`.

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
#include "dm2s2/core/memory_space.hpp"

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

/// The elements of a tensor in a space host code may not touch: `count` values allocated and copied
/// by the space itself, never read or written here.
template <class T, memory_space Space>
class space_buffer {
    static_assert(std::is_trivially_copyable_v<T>, "a device buffer holds trivially copyable values");

public:
    space_buffer() = default;
    explicit space_buffer(std::size_t count) : data_(allocate(count)), size_(count) {}
    space_buffer(const space_buffer& other) : space_buffer(other.size_) { Space::copy(data_, other.data_, size_ * sizeof(T)); }
    space_buffer(space_buffer&& other) noexcept : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0))
    {
    }
    space_buffer& operator=(space_buffer other) noexcept
    {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        return *this;
    }
    ~space_buffer() { release(); }

    T* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

    /// Holds `count` values; the first min(count, size()) keep theirs, the others are unset.
    void resize(std::size_t count)
    {
        if (count == size_) return;
        space_buffer bigger(count);
        Space::copy(bigger.data_, data_, std::min(count, size_) * sizeof(T));
        *this = std::move(bigger);
    }

private:
    static T* allocate(std::size_t count) { return count == 0 ? nullptr : static_cast<T*>(Space::allocate(count * sizeof(T))); }
    void release() noexcept
    {
        if (data_ != nullptr) Space::deallocate(data_, size_ * sizeof(T));
        data_ = nullptr;
        size_ = 0;
    }

    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace detail

/// Owning, contiguous, row-major tensor in memory space `Space`. Host tensors (the default) offer
/// element access, spans and raw pointers; tensors in other spaces offer only their shape and a
/// `device_ptr` to their elements, which the backend owning the space reads.
template <class T, memory_space Space = host_space>
class tensor {
    static constexpr bool on_host = host_accessible_space<Space>;

public:
    using value_type = T;
    using memory_space = Space;
    using pointer = space_pointer<T, Space>;
    using const_pointer = space_pointer<const T, Space>;

    tensor() = default;
    /// A tensor of the given shape, every element set to `fill` (host only: elsewhere the backend fills).
    explicit tensor(shape_t shape, T fill = T{})
        requires on_host
        : shape_(std::move(shape)), data_(element_count(shape_), fill)
    {
    }
    tensor(std::initializer_list<std::size_t> shape, T fill = T{})
        requires on_host
        : tensor(shape_t(shape), fill)
    {
    }
    /// A tensor of the given shape whose elements are unset: every one must be written before it is read.
    tensor(shape_t shape, uninitialized_t) : shape_(std::move(shape)), data_(element_count(shape_))
    {
        if constexpr (on_host) detail::poison_unset(data_.data(), data_.data() + data_.size());
    }
    tensor(std::initializer_list<std::size_t> shape, uninitialized_t) : tensor(shape_t(shape), uninitialized) {}

    const shape_t& shape() const noexcept { return shape_; }
    std::size_t rank() const noexcept { return shape_.size(); }
    std::size_t dim(std::size_t i) const { return shape_.at(i); }
    std::size_t size() const noexcept { return data_.size(); }
    bool empty() const noexcept { return data_.size() == 0; }

    /// The first element: `T*` for a host tensor, a `device_ptr` in any other space.
    pointer data() noexcept { return pointer(data_.data()); }
    const_pointer data() const noexcept { return const_pointer(data_.data()); }

    std::span<T> values() noexcept
        requires on_host
    {
        return {data_.data(), data_.size()};
    }
    std::span<const T> values() const noexcept
        requires on_host
    {
        return {data_.data(), data_.size()};
    }

    T& operator[](std::size_t i) noexcept
        requires on_host
    {
        return data_[i];
    }
    const T& operator[](std::size_t i) const noexcept
        requires on_host
    {
        return data_[i];
    }

    /// Element (i, j) of a rank-2 tensor.
    T& operator()(std::size_t i, std::size_t j) noexcept
        requires on_host
    {
        return data_[i * shape_[1] + j];
    }
    const T& operator()(std::size_t i, std::size_t j) const noexcept
        requires on_host
    {
        return data_[i * shape_[1] + j];
    }

    /// Row i of the tensor seen as [dim(0), size / dim(0)]: a pointer of the tensor's space.
    pointer row(std::size_t i) noexcept { return data() + i * (data_.size() / shape_[0]); }
    const_pointer row(std::size_t i) const noexcept { return data() + i * (data_.size() / shape_[0]); }

    void fill(T value)
        requires on_host
    {
        std::fill(data_.begin(), data_.end(), value);
    }

    /// Changes the shape, keeping the contents when the element count is unchanged; new elements are zero.
    void resize(shape_t shape)
        requires on_host
    {
        data_.resize(element_count(shape), T{});
        shape_ = std::move(shape);
    }

    /// Changes the shape; new elements are unset: every one must be written before it is read.
    void resize(shape_t shape, uninitialized_t)
    {
        const std::size_t kept = data_.size();
        data_.resize(element_count(shape));
        if constexpr (on_host)
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
    using storage = std::conditional_t<on_host, aligned_vector<T>, detail::space_buffer<T, Space>>;

    shape_t shape_;
    storage data_;
};

/// A tensor in the memory space of backend `Backend`.
template <class T, class Backend>
using backend_tensor = tensor<T, typename Backend::memory_space>;

/// Throws shape_error naming `what` unless `t` has exactly `expected` shape.
template <class T, class Space>
void require_shape(const tensor<T, Space>& t, const shape_t& expected, const std::string& what)
{
    if (t.shape() != expected)
        throw shape_error(what + ": expected shape " + to_string(expected) + ", got " + to_string(t.shape()));
}

}  // namespace dm2s2
