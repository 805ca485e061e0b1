#pragma once
/// \file
/// Exception types. Every failure the library detects is reported by throwing one of these, with a
/// message that names the file, tensor, sample or field concerned.

#include <stdexcept>
#include <string>

namespace dm2s2 {

/// Base of all exceptions thrown by dm2s2.
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A file (safetensors, JSON config, checkpoint) is malformed or unreadable.
class format_error : public error {
public:
    using error::error;
};

/// A tensor has the wrong shape, or two tensors disagree on a dimension.
class shape_error : public error {
public:
    using error::error;
};

/// Input data is invalid: out-of-range ids, NaN or Inf values, a sample with no present modality.
class input_error : public error {
public:
    using error::error;
};

/// A configuration is inconsistent or unsupported.
class config_error : public error {
public:
    using error::error;
};

}  // namespace dm2s2
