#pragma once
// The library's heaviest class templates at the types the project's programs use, as explicit
// instantiations: declared `extern` in every program that links `dm2s2_instances` (CMake includes
// this header before each of its sources) and defined once in that library (instances.cpp; the
// trainer over MPI in instances_mpi.cpp, library `dm2s2_instances_mpi`). A program then compiles its
// own code, not the model's and the trainer's again, and its source stays as a user writes it. Only
// float: the programs' few uses of double compile their own. A user's build can do the same for its
// own types.

#include <dm2s2/model/dm2s2_model.hpp>
#include <dm2s2/train/trainer.hpp>

/// Declares (`DM2S2_INSTANCES(extern, T)`) or defines (`DM2S2_INSTANCES(, T)`) the model and its
/// single-process trainer at scalar T on the CPU backend.
#define DM2S2_INSTANCES(declaration, T)                             \
    declaration template class dm2s2::model<T, dm2s2::cpu_backend>; \
    declaration template class dm2s2::trainer<T, dm2s2::cpu_backend, dm2s2::single_process>;

/// The same for the trainer over MPI.
#define DM2S2_MPI_INSTANCES(declaration, T) \
    declaration template class dm2s2::trainer<T, dm2s2::cpu_backend, dm2s2::mpi_communicator>;

#ifndef DM2S2_DEFINING_INSTANCES
DM2S2_INSTANCES(extern, float)
#if defined(DM2S2_LINKS_MPI_INSTANCES)  // defined by dm2s2_instances_mpi for its programs
#include <dm2s2/distributed/mpi_communicator.hpp>
DM2S2_MPI_INSTANCES(extern, float)
#endif
#endif
