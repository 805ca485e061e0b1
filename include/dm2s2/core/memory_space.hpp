#pragma once
/// \file
/// Memory spaces: where a tensor's elements live, as a type.
///
/// `host_space` is the process's own memory, which host code reads and writes directly. Any other
/// space (a GPU's memory, the guarded `staging_space` the tests use) is reached only through the
/// backend that owns it: its tensors hand out `device_ptr`, a pointer type with arithmetic and
/// comparison but no dereference, and its elements move to and from the host only through the
/// backend's `upload` and `download`. Host code that tries to read a device element does not compile.

#include <compare>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>

namespace dm2s2 {

/// A memory space `S`: a name, whether host code may touch its memory, and how bytes are obtained,
/// released and copied within it (`copy` moves bytes from one buffer of the space to another).
template <class S>
concept memory_space = requires(std::size_t bytes, void* p, const void* q) {
    { S::name() } -> std::convertible_to<const char*>;
    { S::host_accessible } -> std::convertible_to<bool>;
    { S::allocate(bytes) } -> std::same_as<void*>;
    S::deallocate(p, bytes);
    S::copy(p, q, bytes);
};

/// A memory space whose elements host code may read and write directly.
template <class S>
concept host_accessible_space = memory_space<S> && S::host_accessible;

/// The process's own memory: 64-byte aligned blocks (one cache line, one AVX-512 register).
struct host_space {
    static constexpr const char* name() noexcept { return "host"; }
    static constexpr bool host_accessible = true;
    static constexpr std::align_val_t alignment{64};

    static void* allocate(std::size_t bytes) { return ::operator new(bytes, alignment); }
    static void deallocate(void* p, std::size_t) noexcept { ::operator delete(p, alignment); }
    static void copy(void* to, const void* from, std::size_t bytes) noexcept
    {
        if (bytes != 0) std::memcpy(to, from, bytes);
    }
};

/// The address of an element in a memory space host code may not touch. It moves like a pointer
/// (offsets, differences, comparisons, null) but cannot be dereferenced or converted to `T*`; a
/// backend's kernels take it and read the address with `device_address`.
template <class T, memory_space Space>
class device_ptr {
public:
    using element_type = T;
    using space = Space;

    device_ptr() = default;
    device_ptr(std::nullptr_t) noexcept {}
    /// The address `p` in `Space`, as a backend or a space's allocation produced it.
    explicit device_ptr(T* p) noexcept : p_(p) {}
    /// A pointer to mutable elements is also a pointer to const ones.
    template <class U>
        requires std::is_convertible_v<U*, T*>
    device_ptr(device_ptr<U, Space> other) noexcept : p_(other.device_address())
    {
    }

    /// The raw address, for the kernels of the backend that owns `Space` only: in that space, not
    /// in host memory.
    T* device_address() const noexcept { return p_; }

    explicit operator bool() const noexcept { return p_ != nullptr; }
    friend device_ptr operator+(device_ptr p, std::ptrdiff_t n) noexcept { return device_ptr(p.p_ + n); }
    friend device_ptr operator+(device_ptr p, std::size_t n) noexcept { return device_ptr(p.p_ + n); }
    friend device_ptr operator+(std::size_t n, device_ptr p) noexcept { return device_ptr(p.p_ + n); }
    friend std::ptrdiff_t operator-(device_ptr a, device_ptr b) noexcept { return a.p_ - b.p_; }
    device_ptr& operator+=(std::size_t n) noexcept
    {
        p_ += n;
        return *this;
    }
    friend bool operator==(device_ptr, device_ptr) = default;
    friend bool operator==(device_ptr p, std::nullptr_t) noexcept { return p.p_ == nullptr; }
    friend auto operator<=>(device_ptr a, device_ptr b) noexcept { return std::compare_three_way{}(a.p_, b.p_); }

private:
    T* p_ = nullptr;
};

/// How code addresses an element of type T in `Space`: `T*` on the host, `device_ptr` elsewhere.
template <class T, memory_space Space>
using space_pointer = std::conditional_t<host_accessible_space<Space>, T*, device_ptr<T, Space>>;

/// The raw address behind a pointer of either kind, for a backend's kernels.
template <class T>
constexpr T* device_address(T* p) noexcept
{
    return p;
}
template <class T, class Space>
constexpr T* device_address(device_ptr<T, Space> p) noexcept
{
    return p.device_address();
}

}  // namespace dm2s2
