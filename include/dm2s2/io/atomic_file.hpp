#pragma once
/// \file
/// Atomic file replacement: write to a temporary file in the target directory, fsync it, rename it
/// over the target, fsync the directory. A reader sees the old file or the new one, never a part.

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// Writes a file atomically in pieces: they go to a temporary file in the target's directory, which
/// `commit` fsyncs and renames over the target (then fsyncs the directory). A reader sees the old file
/// or the whole new one, never a part; a writer destroyed without `commit` (an error on the way)
/// removes its temporary file and leaves the target as it was. Errors throw dm2s2::error naming the file.
class atomic_file_writer {
public:
    explicit atomic_file_writer(std::filesystem::path path) : path_(std::move(path))
    {
        const std::filesystem::path dir = directory();
        std::string temp_name = ".";  // appended piecewise: g++ 12 warns falsely on "." + std::string (-Wrestrict)
        temp_name += path_.filename().string();
        temp_name += ".tmp.XXXXXX";
        temp_ = (dir / temp_name).string();
        fd_ = ::mkstemp(temp_.data());
        if (fd_ < 0) throw fail("cannot create a temporary file");
    }
    atomic_file_writer(const atomic_file_writer&) = delete;
    atomic_file_writer& operator=(const atomic_file_writer&) = delete;
    ~atomic_file_writer() { abandon(); }

    /// Appends `bytes`.
    void write(std::span<const std::byte> bytes)
    {
        if (fd_ < 0) throw error(path_.string() + ": write after commit or failure");
        for (std::size_t done = 0; done < bytes.size();) {
            const ::ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw fail_and_remove("write failed");
            done += static_cast<std::size_t>(n);
        }
    }
    void write(std::string_view text) { write(std::as_bytes(std::span<const char>(text.data(), text.size()))); }

    /// Puts the file in place of the target.
    void commit()
    {
        if (fd_ < 0) throw error(path_.string() + ": commit after commit or failure");
        if (::fchmod(fd_, 0644) != 0) throw fail_and_remove("cannot set permissions");
        if (::fsync(fd_) != 0) throw fail_and_remove("fsync failed");
        const int fd = std::exchange(fd_, -1);
        if (::close(fd) != 0) throw fail_and_remove("close failed");
        if (::rename(temp_.c_str(), path_.c_str()) != 0) throw fail_and_remove("cannot rename the temporary file into place");
        temp_.clear();
        if (const int dfd = ::open(directory().c_str(), O_RDONLY | O_DIRECTORY); dfd >= 0) {
            ::fsync(dfd);  // makes the rename durable; failure here cannot undo the replacement
            ::close(dfd);
        }
    }

private:
    std::filesystem::path directory() const { return path_.has_parent_path() ? path_.parent_path() : std::filesystem::path("."); }
    error fail(const std::string& what) const { return error(path_.string() + ": " + what + ": " + std::strerror(errno)); }
    error fail_and_remove(const std::string& what)
    {
        const error e = fail(what);
        abandon();
        return e;
    }
    void abandon() noexcept
    {
        if (fd_ >= 0) ::close(std::exchange(fd_, -1));
        if (!temp_.empty()) ::unlink(temp_.c_str());
        temp_.clear();
    }

    std::filesystem::path path_;
    std::string temp_;
    int fd_ = -1;
};

/// Replaces `path` with `bytes` atomically (`atomic_file_writer`); throws dm2s2::error naming the
/// file on any failure and leaves no temporary file behind.
inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes)
{
    atomic_file_writer file(path);
    file.write(bytes);
    file.commit();
}

/// Whether `name` is that of a temporary file of `write_file_atomically` (".<target>.tmp.XXXXXX").
inline bool is_atomic_write_temporary(const std::string& name)
{
    constexpr std::string_view infix = ".tmp.";
    return name.size() > 1 + infix.size() + 6 && name.front() == '.' &&
           name.compare(name.size() - 6 - infix.size(), infix.size(), infix) == 0;
}

/// Removes the temporary files that writes of `write_file_atomically` into `dir` left when their
/// process was killed, and returns how many; call it only while no other process writes into `dir`.
inline std::size_t remove_abandoned_temporaries(const std::filesystem::path& dir)
{
    std::size_t removed = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
        if (entry.is_regular_file() && is_atomic_write_temporary(entry.path().filename().string()))
            removed += std::filesystem::remove(entry.path(), ec) ? 1 : 0;
    return removed;
}

/// Replaces `path` with the text atomically.
inline void write_file_atomically(const std::filesystem::path& path, const std::string& text)
{
    write_file_atomically(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

/// Reads a whole file; throws dm2s2::error naming the file when it cannot be read.
inline std::vector<std::byte> read_file(const std::filesystem::path& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw error(path.string() + ": cannot open: " + std::strerror(errno));
    // A directory opens as a stream whose end lies at the largest offset: only a regular file is read.
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) throw error(path.string() + ": not a regular file");
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0) throw error(path.string() + ": cannot determine the size");
    in.seekg(0);
    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) throw error(path.string() + ": read failed");
    return bytes;
}

}  // namespace dm2s2
