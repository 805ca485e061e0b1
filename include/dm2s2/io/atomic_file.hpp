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
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dm2s2/core/error.hpp"

namespace dm2s2 {

/// Replaces `path` with `bytes` atomically; throws dm2s2::error naming the file on any failure and
/// leaves no temporary file behind.
inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes)
{
    const auto fail = [&](const std::string& what) { return error(path.string() + ": " + what + ": " + std::strerror(errno)); };
    const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    std::string temp_name = ".";  // appended piecewise: g++ 12 warns falsely on "." + std::string (-Wrestrict)
    temp_name += path.filename().string();
    temp_name += ".tmp.XXXXXX";
    std::string temp = (dir / temp_name).string();
    const int fd = ::mkstemp(temp.data());
    if (fd < 0) throw fail("cannot create a temporary file");
    const auto abandon = [&](const std::string& what) {
        const error e = fail(what);
        ::close(fd);
        ::unlink(temp.c_str());
        return e;
    };
    for (std::size_t done = 0; done < bytes.size();) {
        const ::ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) throw abandon("write failed");
        done += static_cast<std::size_t>(n);
    }
    if (::fchmod(fd, 0644) != 0) throw abandon("cannot set permissions");
    if (::fsync(fd) != 0) throw abandon("fsync failed");
    if (::close(fd) != 0) {
        const error e = fail("close failed");
        ::unlink(temp.c_str());
        throw e;
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
        const error e = fail("cannot rename the temporary file into place");
        ::unlink(temp.c_str());
        throw e;
    }
    if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); dfd >= 0) {
        ::fsync(dfd);  // makes the rename durable; failure here cannot undo the replacement
        ::close(dfd);
    }
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
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0) throw error(path.string() + ": cannot determine the size");
    in.seekg(0);
    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    if (!in.read(reinterpret_cast<char*>(bytes.data()), size)) throw error(path.string() + ": read failed");
    return bytes;
}

}  // namespace dm2s2
