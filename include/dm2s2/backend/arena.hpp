#pragma once
/// \file
/// Index arrays moved to a backend's memory in one transfer. The host lays out every array a pass
/// needs (slots, ids, groups, element values) in one `host_arena`; `upload_arena` moves it with one
/// `upload`, and each array is then read back through its `arena_section`, as a pointer of the
/// backend's space.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>
#include <vector>

#include "dm2s2/backend/backend.hpp"

namespace dm2s2 {

/// Where an array of `size` values of type U lies in an arena: a byte offset.
template <class U>
struct arena_section {
    std::size_t offset = 0;
    std::size_t size = 0;
};

/// Arrays gathered on the host into one buffer, each section aligned to 64 bytes.
class host_arena {
public:
    static constexpr std::size_t alignment = 64;

    /// Appends `values`; returns the section that finds them again.
    template <class U>
    arena_section<U> add(std::span<const U> values)
    {
        static_assert(std::is_trivially_copyable_v<U>, "an arena holds trivially copyable values");
        const std::size_t offset = (bytes_.size() + alignment - 1) / alignment * alignment;
        bytes_.resize(offset + values.size_bytes());
        if (!values.empty()) std::memcpy(bytes_.data() + offset, values.data(), values.size_bytes());
        return {offset, values.size()};
    }
    template <class U>
    arena_section<U> add(const std::vector<U>& values)
    {
        return add(std::span<const U>(values));
    }

    std::span<const std::uint8_t> bytes() const noexcept { return bytes_; }

private:
    std::vector<std::uint8_t> bytes_;
};

/// A `host_arena`'s bytes in memory space `Space`, read section by section.
template <memory_space Space>
class space_arena {
public:
    space_arena() = default;
    explicit space_arena(tensor<std::uint8_t, Space> bytes) : bytes_(std::move(bytes)) {}

    /// The values of `section`, in `Space`; null when the section is empty.
    template <class U>
    space_pointer<const U, Space> operator[](arena_section<U> section) const
    {
        if (section.size == 0) return nullptr;
        const std::uint8_t* base = device_address(bytes_.data());
        const U* p = reinterpret_cast<const U*>(base + section.offset);
        if constexpr (host_accessible_space<Space>) return p;
        else return device_ptr<const U, Space>(p);
    }

    std::size_t bytes() const noexcept { return bytes_.size(); }

private:
    tensor<std::uint8_t, Space> bytes_;
};

/// Moves `arena` into `backend`'s memory with one upload (none when it is empty).
template <class Backend>
std::shared_ptr<const space_arena<backend_space<Backend>>> upload_arena(const Backend& backend, const host_arena& arena)
{
    using space = backend_space<Backend>;
    const auto bytes = arena.bytes();
    tensor<std::uint8_t, space> buffer({bytes.size()}, uninitialized);
    if (!bytes.empty()) backend.upload(bytes.data(), bytes.size(), buffer.data());
    return std::make_shared<const space_arena<space>>(std::move(buffer));
}

/// Moves tensors from backend `From`'s memory to backend `To`'s: an upload, a download, or both (through
/// the host) between two device spaces; a copy between host backends. The `transfer` that the modules'
/// converting constructors take.
template <class From, class To>
struct tensor_transfer {
    const From& from;
    const To& to;

    template <class T>
    tensor<T, backend_space<To>> operator()(const tensor<T, backend_space<From>>& t) const
    {
        if constexpr (host_accessible_space<backend_space<From>>) return to.upload(t);
        else if constexpr (host_accessible_space<backend_space<To>>) return from.download(t);
        else return to.upload(from.download(t));
    }
};

/// A tensor of `shape` in `backend`'s memory with every element zero (the backend's `fill`).
template <class T, class Backend>
tensor<T, backend_space<Backend>> zeros(const Backend& backend, shape_t shape)
{
    tensor<T, backend_space<Backend>> t(std::move(shape), uninitialized);
    if (!t.empty()) backend.fill(t.data(), t.size(), T(0));
    return t;
}

}  // namespace dm2s2
