#pragma once
// Command-line parsing shared by the tools: `--name value` options and `--name` switches, with
// errors (std::invalid_argument) that name the argument. Usage errors end a tool with status 2.
// And the tools' reaction to the file size limit.

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace dm2s2::tools {

/// Makes a write past the file size limit (`ulimit -f`, RLIMIT_FSIZE; a full disk acts alike) fail
/// with EFBIG, which the library's writers report naming the file, leaving the previous file in place,
/// instead of SIGXFSZ killing the process part-way through a temporary file.
inline void fail_writes_past_file_size_limit()
{
    std::signal(SIGXFSZ, SIG_IGN);
}

class arguments {
public:
    /// Declares `--name VALUE`; `required` ones must be given.
    arguments& option(const std::string& name, std::string& target, bool required = false)
    {
        options_[name] = {&target, required};
        return *this;
    }
    /// Declares the switch `--name`.
    arguments& flag(const std::string& name, bool& target)
    {
        flags_[name] = &target;
        return *this;
    }

    /// Parses argv; throws std::invalid_argument for an unknown or incomplete argument.
    void parse(int argc, char** argv)
    {
        std::vector<std::string> given;
        for (int i = 1; i < argc; ++i) {
            const std::string name = argv[i];
            if (const auto f = flags_.find(name); f != flags_.end()) {
                *f->second = true;
            } else if (const auto o = options_.find(name); o != options_.end()) {
                if (i + 1 >= argc) throw std::invalid_argument(name + " needs a value");
                *o->second.first = argv[++i];
                given.push_back(name);
            } else {
                throw std::invalid_argument("unknown argument '" + name + "'");
            }
        }
        for (const auto& [name, option] : options_)
            if (option.second && std::find(given.begin(), given.end(), name) == given.end())
                throw std::invalid_argument(name + " is required");
    }

private:
    std::map<std::string, std::pair<std::string*, bool>> options_;
    std::map<std::string, bool*> flags_;
};

/// `text` as an integer in [min, max]; `name` is the option in the error.
inline std::int64_t parse_integer(const std::string& name, const std::string& text, std::int64_t min, std::int64_t max)
{
    std::size_t used = 0;
    long long n = 0;
    try {
        n = std::stoll(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (text.empty() || used != text.size() || n < min || n > max)
        throw std::invalid_argument(name + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                                    "], not '" + text + "'");
    return n;
}

/// `text` as a positive finite number; `name` is the option in the error.
inline double parse_positive(const std::string& name, const std::string& text)
{
    std::size_t used = 0;
    double x = 0;
    try {
        x = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (text.empty() || used != text.size() || !(x > 0) || x > 1e300)
        throw std::invalid_argument(name + " must be a positive number, not '" + text + "'");
    return x;
}

}  // namespace dm2s2::tools
