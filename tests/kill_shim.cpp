// A preloaded library (LD_PRELOAD) that numbers a process's writes into one directory and can kill
// the process with SIGKILL at one of them: the crash-safety test of dm2s2_train uses it to kill the
// tool at chosen points of its file writes, including in the middle of one.
//
//   KILL_SHIM_DIR  the directory (an absolute path) whose writes count: write() calls on files under
//                  it and rename() calls onto paths under it, numbered from 1
//   KILL_SHIM_AT   the event at which to die: a write writes half its bytes first, a rename dies
//                  before renaming; unset or 0: never
//   KILL_SHIM_LOG  a file to which each event appends "<number> write <path> <bytes>" or
//                  "<number> rename <from> <to>"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {

std::atomic<long> events{0};

const char* setting(const char* name)
{
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' ? value : nullptr;
}

bool under_directory(const std::string& path)
{
    const char* dir = setting("KILL_SHIM_DIR");
    if (dir == nullptr) return false;
    const std::size_t n = std::strlen(dir);
    return path.compare(0, n, dir) == 0 && (path.size() == n || path[n] == '/');
}

std::string path_of(int fd)
{
    char link[64], target[4096];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    const ::ssize_t n = ::readlink(link, target, sizeof target - 1);
    return n > 0 ? std::string(target, static_cast<std::size_t>(n)) : std::string();
}

/// Writes through the system call itself, so the shim's own log does not pass through its `write`.
void raw_write(int fd, const void* data, std::size_t size)
{
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
        const long n = ::syscall(SYS_write, fd, p, size);
        if (n <= 0) return;
        p += n;
        size -= static_cast<std::size_t>(n);
    }
}

/// Numbers an event, logs it, and returns whether the process dies at it.
bool count(const std::string& description)
{
    const long number = ++events;
    if (const char* log = setting("KILL_SHIM_LOG")) {
        const int fd = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
        if (fd >= 0) {
            const std::string line = std::to_string(number) + " " + description + "\n";
            raw_write(fd, line.data(), line.size());
            ::syscall(SYS_close, fd);
        }
    }
    const char* at = setting("KILL_SHIM_AT");
    return at != nullptr && std::strtol(at, nullptr, 10) == number;
}

template <class F>
F next_symbol(const char* name)
{
    return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" ::ssize_t write(int fd, const void* data, std::size_t size)
{
    static const auto real = next_symbol<::ssize_t (*)(int, const void*, std::size_t)>("write");
    if (setting("KILL_SHIM_DIR") != nullptr) {
        const std::string path = path_of(fd);
        if (under_directory(path) && count("write " + path + " " + std::to_string(size))) {
            raw_write(fd, data, size / 2);
            ::raise(SIGKILL);
        }
    }
    return real(fd, data, size);
}

extern "C" int rename(const char* from, const char* to)
{
    static const auto real = next_symbol<int (*)(const char*, const char*)>("rename");
    if (under_directory(to) && count(std::string("rename ") + from + " " + to)) ::raise(SIGKILL);
    return real(from, to);
}
