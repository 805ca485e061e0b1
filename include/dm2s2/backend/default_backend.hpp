#pragma once
/// \file
/// `default_backend`: the backend a model runs on when none is named, the fast CPU backend. Model
/// headers reach the CPU backend only through this header.

#include "dm2s2/backend/cpu/cpu_backend.hpp"

namespace dm2s2 {

/// The backend of `model<T>` and `bert_model<T>` when none is named.
using default_backend = cpu_backend;

}  // namespace dm2s2
