// The float trainer over MPI (instances.hpp), compiled once for the programs that link dm2s2_instances_mpi.

#define DM2S2_DEFINING_INSTANCES
#include "instances.hpp"

#include <dm2s2/distributed/mpi_communicator.hpp>

DM2S2_MPI_INSTANCES(, float)
